"""The dashboard's words in Vietnamese (default) and English."""

from __future__ import annotations

LANGUAGES = ("vi", "en")

TEXT: dict[str, dict[str, str]] = {
    "title": {"vi": "Bảng điều khiển hòa giải viên", "en": "Neutrals' dashboard"},
    "login": {"vi": "Đăng nhập", "en": "Log in"},
    "logout": {"vi": "Đăng xuất", "en": "Log out"},
    "email": {"vi": "Thư điện tử", "en": "Email"},
    "password": {"vi": "Mật khẩu", "en": "Password"},
    "operator_login": {
        "vi": "Người vận hành: dán mã quản trị",
        "en": "Operator: paste an admin token",
    },
    "token": {"vi": "Mã (JWT)", "en": "Token (JWT)"},
    "bad_login": {"vi": "Sai thư điện tử hoặc mật khẩu.", "en": "Wrong email or password."},
    "too_many": {
        "vi": "Quá nhiều lần thử. Thử lại sau {s} giây.",
        "en": "Too many attempts. Try again in {s} seconds.",
    },
    "my_queue": {"vi": "Hồ sơ của tôi", "en": "My queue"},
    "empty_queue": {"vi": "Không có hồ sơ nào.", "en": "No cases."},
    "reference": {"vi": "Mã hồ sơ", "en": "Reference"},
    "role": {"vi": "Vai trò", "en": "Role"},
    "stage": {"vi": "Giai đoạn", "en": "Stage"},
    "category": {"vi": "Loại khiếu nại", "en": "Category"},
    "language": {"vi": "Ngôn ngữ", "en": "Language"},
    "claimed": {"vi": "Số tiền yêu cầu", "en": "Amount claimed"},
    "due": {"vi": "Hạn xử lý", "en": "Act by"},
    "sla_green": {"vi": "Còn hạn", "en": "On time"},
    "sla_amber": {"vi": "Sắp đến hạn", "en": "Due soon"},
    "sla_red": {"vi": "Quá hạn", "en": "Overdue"},
    "mediator": {"vi": "Hòa giải viên", "en": "Mediator"},
    "arbitrator": {"vi": "Trọng tài viên", "en": "Arbitrator"},
    "waiting": {"vi": "Đang chờ phân công", "en": "Waiting for a neutral"},
    "mediation": {"vi": "Đang hòa giải", "en": "In mediation"},
    "arbitration": {"vi": "Đang trọng tài", "en": "In arbitration"},
    "decided": {"vi": "Đã có phán quyết", "en": "Decided"},
    "closed": {"vi": "Đã đóng", "en": "Closed"},
    "case": {"vi": "Hồ sơ", "en": "Case"},
    "order": {"vi": "Đơn hàng", "en": "Order"},
    "parties": {"vi": "Các bên", "en": "Parties"},
    "consumer": {"vi": "Người tiêu dùng", "en": "Consumer"},
    "platform": {"vi": "Sàn thương mại", "en": "Platform"},
    "seller": {"vi": "Người bán", "en": "Seller"},
    "timeline": {"vi": "Diễn biến", "en": "Timeline"},
    "messages": {"vi": "Tin nhắn", "en": "Messages"},
    "evidence": {"vi": "Chứng cứ", "en": "Evidence"},
    "offers": {"vi": "Đề nghị", "en": "Offers"},
    "proposals": {"vi": "Phương án hòa giải", "en": "Settlement proposals"},
    "decision": {"vi": "Phán quyết", "en": "Decision"},
    "none": {"vi": "Chưa có.", "en": "None yet."},
    "complaints_down": {
        "vi": "Không tải được hồ sơ từ dịch vụ khiếu nại; "
        "chỉ hiển thị dữ liệu của bộ phận hòa giải.",
        "en": "Could not load the case from the complaints service; showing mediation's own data.",
    },
    "send_message": {"vi": "Gửi tin nhắn", "en": "Send message"},
    "message": {"vi": "Nội dung", "en": "Message"},
    "propose": {"vi": "Đề xuất phương án", "en": "Propose a settlement"},
    "outcome": {"vi": "Kết quả", "en": "Outcome"},
    "amount": {"vi": "Số tiền (đồng)", "en": "Amount (đồng)"},
    "terms": {"vi": "Điều khoản", "en": "Terms"},
    "escalate": {"vi": "Chuyển sang trọng tài", "en": "Refer to arbitration"},
    "reason": {"vi": "Lý do", "en": "Reason"},
    "decide": {"vi": "Ra phán quyết", "en": "Decide"},
    "reasons": {"vi": "Lập luận", "en": "Reasons"},
    "done": {"vi": "Đã thực hiện.", "en": "Done."},
    "operator": {"vi": "Điều phối", "en": "Operator"},
    "waiting_queue": {"vi": "Hàng chờ phân công", "en": "Waiting queue"},
    "loads": {"vi": "Khối lượng của từng người", "en": "Each neutral's load"},
    "name": {"vi": "Họ tên", "en": "Name"},
    "active": {"vi": "Đang xử lý", "en": "Active"},
    "on_leave": {"vi": "Nghỉ phép", "en": "On leave"},
    "queued_since": {"vi": "Chờ từ", "en": "Waiting since"},
    "routing": {"vi": "Quyết định phân công", "en": "Routing decisions"},
    "excluded_by": {"vi": "Bị loại theo tiêu chí", "en": "Excluded by rule"},
    "back": {"vi": "Quay lại", "en": "Back"},
    "status": {"vi": "Trạng thái", "en": "Status"},
    "yes": {"vi": "Có", "en": "Yes"},
    "no": {"vi": "Không", "en": "No"},
    "full_refund": {"vi": "Hoàn tiền toàn bộ", "en": "Full refund"},
    "partial_refund": {"vi": "Hoàn tiền một phần", "en": "Partial refund"},
    "replacement": {"vi": "Đổi hàng", "en": "Replacement"},
    "repair": {"vi": "Sửa chữa", "en": "Repair"},
    "compensation": {"vi": "Bồi thường", "en": "Compensation"},
    "claim_rejected": {"vi": "Bác yêu cầu", "en": "Claim rejected"},
}


def translate(lang: str, key: str, **params: object) -> str:
    entry = TEXT.get(key)
    if entry is None:
        return key
    text = entry.get(lang) or entry["vi"]
    return text.format(**params) if params else text
