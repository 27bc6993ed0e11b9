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
