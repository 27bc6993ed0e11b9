"""The portal's words in Vietnamese (the default) and English."""

from __future__ import annotations

LANGUAGES = ("vi", "en")

TEXT: dict[str, tuple[str, str]] = {
    # key: (vi, en)
    "site_title": ("Giải quyết khiếu nại trực tuyến", "Online complaint resolution"),
    "tagline": (
        "Khiếu nại về đơn hàng trên sàn thương mại điện tử, nhanh và minh bạch.",
        "Complain about a marketplace order, quickly and transparently.",
    ),
    "switch_lang": ("English", "Tiếng Việt"),
    "lookup_title": ("Tra cứu đơn hàng", "Find your order"),
    "lookup_help": (
        "Nhập mã đơn hàng và số điện thoại đặt hàng. Chúng tôi sẽ gửi mã xác thực qua SMS.",
        "Enter the order code and the phone number used for the order. We will text you a code.",
    ),
    "order_code": ("Mã đơn hàng", "Order code"),
    "phone": ("Số điện thoại", "Phone number"),
    "send_code": ("Gửi mã xác thực", "Send code"),
    "verify_title": ("Nhập mã xác thực", "Enter your code"),
    "verify_help": (
        "Nếu mã đơn hàng và số điện thoại khớp, bạn sẽ nhận được mã 6 chữ số qua SMS "
        "(hiệu lực 5 phút).",
        "If the order code and phone match, a 6-digit code is on its way by SMS (valid 5 minutes).",
    ),
    "code": ("Mã xác thực", "Code"),
    "verify": ("Xác nhận", "Verify"),
    "bad_code": ("Mã không đúng hoặc đã hết hạn.", "The code is wrong or has expired."),
    "too_many": (
        "Bạn đã thử quá nhiều lần. Vui lòng thử lại sau {n} giây.",
        "Too many attempts. Please try again in {n} seconds.",
    ),
    "logout": ("Thoát", "Sign out"),
    "not_found": ("Không tìm thấy trang này.", "This page does not exist."),
    "back_to_order": ("Về đơn hàng của bạn", "Back to your order"),
    "order": ("Đơn hàng", "Order"),
    "seller": ("Người bán", "Seller"),
    "status": ("Trạng thái", "Status"),
    "total": ("Tổng tiền", "Total"),
    "items": ("Sản phẩm", "Items"),
    "history": ("Lịch sử đơn hàng", "Order history"),
    "your_cases": ("Khiếu nại của bạn", "Your complaints"),
    "new_case": ("Gửi khiếu nại", "File a complaint"),
    "category": ("Vấn đề", "Problem"),
    "description": ("Mô tả", "Description"),
    "desired_outcome": ("Bạn mong muốn", "What you want"),
    "claimed_amount": ("Số tiền yêu cầu (đồng)", "Amount claimed (đồng)"),
    "evidence": ("Bằng chứng (ảnh, PDF, video)", "Evidence (photos, PDF, video)"),
    "submit_case": ("Gửi khiếu nại", "Submit complaint"),
    "open_case_exists": (
        "Đơn hàng này đang có khiếu nại",
        "This order already has an open complaint",
    ),
    "reference": ("Mã khiếu nại", "Reference"),
    "merchant_due": ("Hạn người bán trả lời", "Merchant must answer by"),
    "paused": (
        "Thời hạn đang tạm dừng vì chờ bạn phản hồi.",
        "The deadline is paused while waiting for your answer.",
    ),
    "offers": ("Đề nghị của người bán", "Merchant's offers"),
    "proposals": ("Đề xuất của hòa giải viên", "Mediator's proposals"),
    "accept": ("Đồng ý", "Accept"),
    "reject": ("Từ chối", "Reject"),
    "timeline": ("Diễn biến", "Timeline"),
    "message": ("Tin nhắn", "Message"),
    "send": ("Gửi", "Send"),
    "add_evidence": ("Thêm bằng chứng", "Add evidence"),
    "upload": ("Tải lên", "Upload"),
    "escalate": ("Chuyển hòa giải", "Escalate to mediation"),
    "escalate_help": (
        "Nếu không thỏa thuận được với người bán, bạn có thể chuyển vụ việc cho hòa giải viên.",
        "If you cannot agree with the merchant, you can take the case to a mediator.",
    ),
    "withdraw": ("Rút khiếu nại", "Withdraw complaint"),
    "reason": ("Lý do (không bắt buộc)", "Reason (optional)"),
    "neutral": ("Hòa giải viên", "Mediator"),
    "decision": ("Phán quyết", "Decision"),
    "you": ("Bạn", "You"),
    "role_consumer": ("Bạn", "You"),
    "role_platform": ("Sàn / người bán", "Marketplace / seller"),
    "role_mediator": ("Hòa giải viên", "Mediator"),
    "role_arbitrator": ("Trọng tài viên", "Arbitrator"),
    "role_admin": ("Quản trị", "Administrator"),
    "role_system": ("Hệ thống", "System"),
    "err_conflict": ("Không thể thực hiện lúc này.", "This cannot be done right now."),
    "err_too_large": ("Tệp quá lớn.", "The file is too large."),
    "err_type": (
        "Chỉ nhận ảnh JPEG, PNG, WebP, tệp PDF hoặc video MP4.",
        "Only JPEG, PNG, WebP images, PDF files or MP4 videos are accepted.",
    ),
    "err_invalid": ("Vui lòng kiểm tra lại thông tin.", "Please check the form."),
    "err_session": (
        "Phiên đã hết hạn, vui lòng xác thực lại.",
        "Your session expired; please sign in again.",
    ),
    "kind_status": ("Trạng thái", "Status"),
    "kind_message": ("Tin nhắn", "Message"),
    "kind_evidence": ("Bằng chứng", "Evidence"),
    "kind_consent": (
        "Đã đồng ý chia sẻ hồ sơ vụ việc với hòa giải viên/trọng tài viên",
        "Agreed to share the case file with the mediator/arbitrator",
    ),
    "kind_offer": ("Đề nghị mới", "New offer"),
    "kind_offer_accepted": ("Đã đồng ý đề nghị", "Offer accepted"),
    "kind_offer_rejected": ("Đã từ chối đề nghị", "Offer rejected"),
    "kind_proposal": ("Đề xuất hòa giải", "Mediator's proposal"),
    "kind_proposal_accepted": ("Đồng ý đề xuất", "Proposal accepted"),
    "kind_proposal_rejected": ("Từ chối đề xuất", "Proposal rejected"),
    "kind_neutral_assigned": ("Đã phân công", "Assigned"),
    "kind_neutral_reassigned": ("Đã phân công lại", "Reassigned"),
    "kind_queued": ("Đang chờ hòa giải viên", "Waiting for a mediator"),
    "kind_decision": ("Phán quyết", "Decision"),
    "kind_note": ("Ghi chú", "Note"),
    "st_awaiting_merchant": ("Chờ người bán trả lời", "Waiting for the merchant"),
    "st_negotiating": ("Đang thương lượng", "Negotiating"),
    "st_resolved": ("Đã giải quyết", "Resolved"),
    "st_escalated": ("Đã chuyển hòa giải", "Escalated"),
    "st_in_mediation": ("Đang hòa giải", "In mediation"),
    "st_in_arbitration": ("Đang trọng tài", "In arbitration"),
    "st_decided": ("Đã có phán quyết", "Decided"),
    "st_closed": ("Đã đóng", "Closed"),
    "st_withdrawn": ("Đã rút", "Withdrawn"),
    "offer_pending": ("Đang chờ bạn", "Waiting for you"),
    "offer_accepted": ("Đã đồng ý", "Accepted"),
    "offer_rejected": ("Đã từ chối", "Rejected"),
    "offer_superseded": ("Đã thay thế", "Replaced"),
    "cat_not_received": ("Không nhận được hàng", "Not received"),
    "cat_not_as_described": ("Hàng không đúng mô tả", "Not as described"),
    "cat_damaged": ("Hàng bị hư hỏng", "Damaged"),
    "cat_counterfeit": ("Hàng giả, hàng nhái", "Counterfeit"),
    "cat_wrong_item": ("Giao sai hàng", "Wrong item"),
    "cat_late_delivery": ("Giao hàng trễ", "Late delivery"),
    "cat_refund_not_received": ("Chưa nhận được tiền hoàn", "Refund not received"),
    "cat_other": ("Khác", "Other"),
    "out_refund": ("Hoàn tiền", "Refund"),
    "out_partial_refund": ("Hoàn một phần tiền", "Partial refund"),
    "out_replacement": ("Đổi hàng", "Replacement"),
    "out_return_and_refund": ("Trả hàng, hoàn tiền", "Return and refund"),
    "out_other": ("Khác", "Other"),
    # Privacy: the notice (/privacy), the data-subject requests, consent.
    "privacy_link": ("Quyền riêng tư", "Privacy"),
    "pn_title": ("Thông báo xử lý dữ liệu cá nhân", "Privacy notice"),
    "pn_intro": (
        "Thông báo này cho biết chúng tôi xử lý dữ liệu cá nhân nào của bạn, vì sao, chia sẻ "
        "với ai, lưu trong bao lâu và bạn có những quyền gì theo Luật Bảo vệ dữ liệu cá nhân "
        "số 91/2025/QH15 và Nghị định 356/2025/NĐ-CP.",
        "This notice says which of your personal data we process, why, with whom we share it, "
        "how long we keep it and what your rights are under the Law on Personal Data Protection "
        "No. 91/2025/QH15 and Decree 356/2025/ND-CP.",
    ),
    "pn_controller": ("Bên kiểm soát dữ liệu", "Data controller"),
    "pn_contact": ("Liên hệ về dữ liệu cá nhân", "Contact for personal data"),
    "pn_purposes": ("Mục đích xử lý", "Purposes of processing"),
    "pn_data": ("Dữ liệu", "Data"),
    "pn_basis": ("Căn cứ", "Basis"),
    "pn_recipients": ("Bên nhận dữ liệu", "Recipients"),
    "pn_retention": ("Thời gian lưu trữ", "Retention periods"),
    "pn_retention_help": (
        "Hết thời hạn, dữ liệu được xoá tự động. Số liệu thống kê không chứa dữ liệu cá nhân "
        "được giữ lại.",
        "When a period ends the data is deleted automatically. Statistics without personal data "
        "are kept.",
    ),
    "pn_kind": ("Loại dữ liệu", "Kind of record"),
    "pn_period": ("Thời hạn", "Kept for"),
    "pn_why": ("Lý do", "Why"),
    "pn_rights": ("Quyền của bạn", "Your rights"),
    "pn_right_access": (
        "Quyền truy cập: xem và nhận bản sao dữ liệu của bạn (“Tải dữ liệu của tôi”).",
        "Access: see and receive a copy of your data (“Download my data”).",
    ),
    "pn_right_erasure": (
        "Quyền xoá: yêu cầu xoá dữ liệu của bạn (“Xoá dữ liệu của tôi”). Nếu khiếu nại còn "
        "đang mở, hoặc pháp luật buộc lưu một số hồ sơ, việc xoá được hoãn đến khi vụ việc đóng "
        "hoặc hết thời hạn lưu, và chúng tôi nói rõ lý do và thời điểm.",
        "Erasure: ask us to delete your data (“Delete my data”). While a complaint is open, or "
        "where the law makes us keep a record, erasure is deferred until the case closes or the "
        "period ends, and we tell you why and until when.",
    ),
    "pn_right_rectify": (
        "Quyền chỉnh sửa: yêu cầu sửa dữ liệu sai qua địa chỉ liên hệ bên dưới.",
        "Rectification: ask us to correct wrong data at the contact below.",
    ),
    "pn_right_object": (
        "Quyền phản đối, hạn chế xử lý và rút lại sự đồng ý (ví dụ: chia sẻ bằng chứng với hòa "
        "giải viên), bất cứ lúc nào, không ảnh hưởng việc xử lý trước đó.",
        "Objection, restriction and withdrawal of consent (for example to sharing evidence with "
        "the mediator), at any time, without affecting what was done before.",
    ),
    "pn_right_ack": (
        "Chúng tôi xác nhận đã nhận yêu cầu của bạn ngay khi bạn gửi, và trong mọi trường hợp "
        "không quá 2 ngày làm việc; thời hạn trả lời được ghi trên giấy xác nhận.",
        "We acknowledge your request as soon as you send it, and in any case within 2 working "
        "days; the date by which we answer is on the acknowledgement.",
    ),
    "pn_right_complain": (
        "Quyền khiếu nại, tố cáo, khởi kiện và yêu cầu bồi thường: trước hết bạn có thể liên hệ "
        "chúng tôi; bạn cũng có thể khiếu nại đến cơ quan chuyên trách bảo vệ dữ liệu cá nhân "
        "(Cục An ninh mạng và phòng, chống tội phạm sử dụng công nghệ cao, Bộ Công an) qua Cổng "
        "thông tin quốc gia về bảo vệ dữ liệu cá nhân.",
        "Complaint, denunciation, legal action and compensation: you may contact us first; you "
        "may also complain to the authority for personal data protection (the Department of "
        "Cybersecurity and High-Tech Crime Prevention, Ministry of Public Security) through the "
        "National Personal Data Protection Portal.",
    ),
    "pn_how": (
        "Để tải hoặc xoá dữ liệu, hãy tra cứu đơn hàng và nhập mã SMS: trang đơn hàng có hai nút "
        "“Tải dữ liệu của tôi” và “Xoá dữ liệu của tôi”.",
        "To download or delete your data, find your order and enter the SMS code: the order page "
        "has “Download my data” and “Delete my data”.",
    ),
    "pn_after_closing": ("kể từ khi đóng vụ việc", "after the case closes"),
    "my_data": ("Dữ liệu cá nhân của bạn", "Your personal data"),
    "my_data_help": (
        "Bạn có thể tải về hoặc yêu cầu xoá mọi dữ liệu chúng tôi giữ về số điện thoại đã xác "
        "thực, trên mọi đơn hàng.",
        "You can download, or ask us to delete, everything we hold about the phone number you "
        "proved, across all its orders.",
    ),
    "download_my_data": ("Tải dữ liệu của tôi", "Download my data"),
    "delete_my_data": ("Xoá dữ liệu của tôi", "Delete my data"),
    "read_notice": ("Đọc thông báo quyền riêng tư", "Read the privacy notice"),
    "erase_title": ("Xoá dữ liệu của tôi", "Delete my data"),
    "erase_what": (
        "Chúng tôi và các dịch vụ của nền tảng sẽ xoá hoặc ẩn danh không thể khôi phục họ tên, "
        "số điện thoại, email, tin nhắn, bằng chứng và nội dung khiếu nại của bạn, và huỷ khoá "
        "mã hoá riêng của bạn, để các bản sao đã mã hoá bằng khoá đó không còn đọc được. Chỉ số "
        "liệu thống kê không gắn với bạn được giữ lại.",
        "We and the platform's services will delete or irreversibly anonymise your name, phone "
        "number, email, messages, evidence and complaint texts, and destroy your own encryption "
        "keys, so the copies encrypted under them can no longer be read. Only statistics that no "
        "longer point to you are kept.",
    ),
    "erase_deferral": (
        "Nếu bạn còn khiếu nại đang mở, dữ liệu của vụ việc đó được giữ đến khi vụ việc đóng rồi "
        "mới xoá; hồ sơ mà pháp luật buộc lưu được giữ đến hết thời hạn. Trang trạng thái sẽ "
        "cho biết lý do và thời điểm.",
        "If you have an open complaint, its data is kept until the case closes and is erased "
        "then; records the law makes us keep stay until their period ends. The status page "
        "tells you why and until when.",
    ),
    "erase_open_case": (
        "Đơn hàng này đang có khiếu nại mở ({ref}): việc xoá dữ liệu của vụ việc sẽ được hoãn "
        "đến khi vụ việc đóng.",
        "This order has an open complaint ({ref}): erasing its data will be deferred until the "
        "case closes.",
    ),
    "erase_irreversible": (
        "Việc xoá không thể hoàn tác. Nếu cần, hãy tải dữ liệu của bạn trước.",
        "Erasure cannot be undone. Download your data first if you need it.",
    ),
    "erase_confirm": (
        "Tôi hiểu và muốn xoá dữ liệu cá nhân của tôi.",
        "I understand, and I want my personal data deleted.",
    ),
    "erase_submit": ("Xác nhận xoá dữ liệu", "Confirm: delete my data"),
    "cancel": ("Huỷ", "Cancel"),
    "err_confirm": (
        "Vui lòng đánh dấu ô xác nhận để tiếp tục.",
        "Please tick the confirmation box to continue.",
    ),
    "err_privacy_unavailable": (
        "Chưa thể gửi yêu cầu về dữ liệu lúc này, vui lòng thử lại sau.",
        "Data requests cannot be sent right now; please try again later.",
    ),
    "err_privacy_too_many": (
        "Bạn đã gửi nhiều yêu cầu về dữ liệu trong hôm nay. Vui lòng thử lại sau 24 giờ.",
        "You have made several data requests today. Please try again in 24 hours.",
    ),
    "req_access": ("Yêu cầu tải dữ liệu", "Request to download your data"),
    "req_erasure": ("Yêu cầu xoá dữ liệu", "Request to delete your data"),
    "req_received_notice": (
        "Chúng tôi đã tiếp nhận yêu cầu của bạn. Hãy lưu mã yêu cầu để tra cứu.",
        "We have received your request. Keep the request id to follow it.",
    ),
    "req_id": ("Mã yêu cầu", "Request id"),
    "req_acknowledged": ("Tiếp nhận lúc", "Acknowledged at"),
    "req_due": ("Hạn trả lời", "We answer by"),
    "req_until": ("Hoãn đến", "Deferred until"),
    "req_until_unknown": (
        "khi lý do trên không còn (ví dụ: khi vụ việc đóng)",
        "the reason above ends (for example when the case closes)",
    ),
    "my_requests": ("Yêu cầu về dữ liệu của bạn", "Your data requests"),
    "req_reason": ("Lý do", "Reason"),
    "req_polling": (
        "Trang này tự cập nhật vài giây một lần.",
        "This page refreshes itself every few seconds.",
    ),
    "req_download": ("Tải tệp dữ liệu (JSON)", "Download the data file (JSON)"),
    "req_download_expires": ("Liên kết có hiệu lực đến", "The link works until"),
    "req_erased": (
        "Dữ liệu cá nhân của bạn đã được xoá khỏi mọi dịch vụ của nền tảng.",
        "Your personal data has been erased from every service of the platform.",
    ),
    "req_services": ("Tiến độ ở từng dịch vụ", "Progress in each service"),
    "req_export_gone": (
        "Liên kết tải đã hết hạn. Bạn có thể gửi yêu cầu mới.",
        "The download link has expired. You can make a new request.",
    ),
    "svc_complaints": ("Khiếu nại", "Complaints"),
    "svc_gateway": ("Kết nối với sàn", "Marketplace connection"),
    "svc_mediation": ("Hòa giải và trọng tài", "Mediation and arbitration"),
    "svc_notifications": ("Thông báo SMS và email", "SMS and email notifications"),
    "rs_received": ("Đã tiếp nhận", "Received"),
    "rs_in_progress": ("Đang xử lý", "In progress"),
    "rs_completed": ("Đã hoàn tất", "Completed"),
    "rs_deferred": ("Tạm hoãn", "Deferred"),
    "rs_rejected": ("Bị từ chối", "Refused"),
    "consent_neutral": (
        "Tôi đồng ý để bằng chứng của tôi được chia sẻ với hòa giải viên / trọng tài viên "
        "trung lập.",
        "I agree that my evidence is shared with the neutral mediator/arbitrator.",
    ),
    "consent_neutral_escalate_help": (
        "Hòa giải viên / trọng tài viên cần xem hồ sơ và bằng chứng để giải quyết vụ việc. Nếu "
        "không đồng ý, bạn vẫn có thể tiếp tục thương lượng với người bán hoặc rút khiếu nại.",
        "The mediator/arbitrator needs the case file and evidence to decide. If you do not agree, "
        "you can keep negotiating with the merchant or withdraw the complaint.",
    ),
    "err_consent": (
        "Cần sự đồng ý của bạn để chia sẻ bằng chứng với hòa giải viên / trọng tài viên.",
        "Your consent is needed to share the evidence with the mediator/arbitrator.",
    ),
}


def translate(key: str, lang: str) -> str:
    pair = TEXT.get(key)
    if pair is None:
        return key
    return pair[1] if lang == "en" else pair[0]


# The lifecycle's own reasons (domain.py), so the timeline speaks the reader's language;
# reasons a person typed are shown as written.
REASONS: dict[str, tuple[str, str]] = {
    "case opened": ("Đã mở khiếu nại", "case opened"),
    "the platform answered": ("Sàn đã trả lời", "the platform answered"),
    "the consumer accepted the offer": ("Bạn đã đồng ý đề nghị", "you accepted the offer"),
    "escalated": ("Đã chuyển hòa giải", "escalated"),
    "withdrawn by the consumer": ("Bạn đã rút khiếu nại", "withdrawn by you"),
    "a mediator was assigned": ("Đã có hòa giải viên", "a mediator was assigned"),
    "referred to arbitration": ("Chuyển trọng tài", "referred to arbitration"),
    "both parties accepted the mediator's proposal": (
        "Hai bên đồng ý đề xuất hòa giải",
        "both parties accepted the mediator's proposal",
    ),
    "the arbitrator decided": ("Trọng tài đã ra phán quyết", "the arbitrator decided"),
    "closed after the decision": ("Đóng sau phán quyết", "closed after the decision"),
    "the merchant's deadline of 7 working days passed (Law 19/2023 Art. 57(2))": (
        "Người bán không trả lời trong 7 ngày làm việc (Luật 19/2023, Điều 57 khoản 2)",
        "the merchant did not answer within 7 working days (Law 19/2023 Art. 57(2))",
    ),
}


def translate_reason(reason: str, lang: str) -> str:
    pair = REASONS.get(reason)
    if pair is None:
        return reason
    return pair[1] if lang == "en" else pair[0]


# Why a data request waits (complaints.privacy and the other services' reports).
PRIVACY_REASONS: dict[str, tuple[str, str]] = {
    "open case": (
        "Khiếu nại của bạn còn đang mở: dữ liệu được giữ đến khi vụ việc đóng rồi mới xoá.",
        "Your complaint is still open: the data is kept until the case closes, then erased.",
    ),
}


def translate_privacy_reason(reason: str, lang: str) -> str:
    parts = [p.strip() for p in reason.split(";") if p.strip()]
    out = []
    for part in parts:
        pair = PRIVACY_REASONS.get(part)
        out.append(part if pair is None else (pair[1] if lang == "en" else pair[0]))
    return " ".join(out)
