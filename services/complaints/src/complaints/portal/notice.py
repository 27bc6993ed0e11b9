"""The privacy notice's content (`/privacy`): purposes, recipients, retention, rights, controller.

Each text is a (vi, en) pair like the rest of the portal. Retention periods and the controller's
contact come from settings when the service defines them (names below), so the notice cannot
drift from what the purge jobs do; otherwise the documented defaults are shown.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

Pair = tuple[str, str]


def pick(pair: Pair, lang: str) -> str:
    return pair[1] if lang == "en" else pair[0]


# Purposes of processing: (id, title, what data, legal basis).
PURPOSES: list[tuple[str, Pair, Pair, Pair]] = [
    (
        "complaints",
        ("Tiếp nhận và giải quyết khiếu nại", "Handling your complaint"),
        (
            "Mã đơn hàng, họ tên, số điện thoại, email, sản phẩm và trạng thái đơn do sàn "
            "thương mại điện tử gửi sang; nội dung khiếu nại, tin nhắn và bằng chứng bạn gửi.",
            "The order code, your name, phone number, email, the items and status of the order "
            "as sent by the marketplace; what you write in the complaint, your messages and the "
            "evidence you upload.",
        ),
        (
            "Thực hiện yêu cầu giải quyết tranh chấp của bạn và nghĩa vụ bảo vệ người tiêu dùng "
            "(Luật Bảo vệ quyền lợi người tiêu dùng 19/2023/QH15).",
            "Carrying out the dispute resolution you ask for, and the consumer protection duties "
            "of Law 19/2023/QH15.",
        ),
    ),
    (
        "notifications",
        ("Gửi thông báo qua SMS và email", "Notifications by SMS and email"),
        (
            "Số điện thoại, email, ngôn ngữ; mã xác thực một lần và nội dung thông báo về "
            "khiếu nại của bạn.",
            "Your phone number, email and language; one-time codes and the messages about your "
            "complaint.",
        ),
        (
            "Cần thiết để xác thực bạn là người đặt hàng và báo cho bạn các thời hạn.",
            "Needed to prove you placed the order and to tell you about deadlines.",
        ),
    ),
    (
        "mediation",
        ("Hòa giải và trọng tài", "Mediation and arbitration"),
        (
            "Hồ sơ vụ việc: nội dung khiếu nại, tin nhắn, đề nghị, bằng chứng và phán quyết.",
            "The case file: the complaint, messages, offers, evidence and the decision.",
        ),
        (
            "Khi bạn chuyển vụ việc cho hòa giải viên hoặc trọng tài viên; bằng chứng chỉ được "
            "chia sẻ với họ khi bạn đồng ý.",
            "When you take the case to a mediator or arbitrator; your evidence is shared with them "
            "only with your consent.",
        ),
    ),
    (
        "statistics",
        ("Thống kê cho cơ quan quản lý", "Statistics for the regulator"),
        (
            "Số liệu tổng hợp (số vụ việc, thời gian xử lý, kết quả, danh mục) — không chứa dữ "
            "liệu cá nhân của bạn.",
            "Aggregate figures (number of cases, durations, outcomes, categories) — never your "
            "personal data.",
        ),
        (
            "Nghĩa vụ báo cáo và công khai kết quả giải quyết khiếu nại của các sàn.",
            "Reporting duties and the public record of how marketplaces answer complaints.",
        ),
    ),
    (
        "security",
        ("Nhật ký an ninh và chống gian lận", "Security and fraud logs"),
        (
            "Địa chỉ IP, số lần yêu cầu và nhập mã xác thực, thời điểm truy cập.",
            "IP addresses, how many codes were requested and tried, when pages were used.",
        ),
        (
            "Bảo vệ hệ thống và tài khoản của bạn khỏi truy cập trái phép, dò mã và lạm dụng.",
            "Protecting the service and your data from unauthorised access, code guessing and "
            "abuse.",
        ),
    ),
]

# Recipients: (id, who, what they receive and why).
RECIPIENTS: list[tuple[str, Pair, Pair]] = [
    (
        "marketplace",
        ("Sàn thương mại điện tử của đơn hàng", "The marketplace of the order"),
        (
            "Nhận nội dung khiếu nại, tin nhắn, bằng chứng và trạng thái để người bán trả lời; "
            "không nhận số điện thoại hay email của bạn từ chúng tôi.",
            "Receives the complaint, messages, evidence and status so the seller can answer; it "
            "does not receive your phone number or email from us.",
        ),
    ),
    (
        "neutral",
        (
            "Hòa giải viên hoặc trọng tài viên trung lập được phân công",
            "The neutral mediator or arbitrator assigned to the case",
        ),
        (
            "Nhận hồ sơ vụ việc khi bạn chuyển hòa giải; bằng chứng chỉ khi bạn đồng ý. Họ cam "
            "kết bảo mật và không có xung đột lợi ích với sàn hay người bán.",
            "Receives the case file once you escalate; your evidence only with your consent. They "
            "are bound to confidentiality and have no conflict of interest with the marketplace "
            "or seller.",
        ),
    ),
    (
        "messaging",
        ("Nhà cung cấp dịch vụ SMS và email", "The SMS and email providers"),
        (
            "Nhận số điện thoại hoặc email và nội dung tin nhắn, chỉ để chuyển tin cho bạn.",
            "Receive your phone number or email and the text of the message, only to deliver it.",
        ),
    ),
    (
        "regulator",
        ("Cơ quan quản lý nhà nước", "The regulator"),
        (
            "Chỉ nhận số liệu thống kê tổng hợp, không có dữ liệu cá nhân; hoặc hồ sơ khi pháp "
            "luật yêu cầu.",
            "Receives aggregate statistics only, no personal data; or records when the law "
            "requires it.",
        ),
    ),
]


@dataclass(frozen=True)
class Retention:
    key: str
    what: Pair
    days: int
    after_closing: bool
    why: Pair
    settings: tuple[str, ...]  # setting names that override the default, first found wins


RETENTION: list[Retention] = [
    Retention(
        "webhook_bodies",
        ("Dữ liệu đơn hàng nhận từ sàn (bản gốc)", "Order messages received from marketplaces"),
        30,
        False,
        ("Đối chiếu khi có sai sót khi nhận.", "To check a delivery that went wrong."),
        ("retention_webhook_bodies_days", "retention_inbound_days", "retention_webhooks_days"),
    ),
    Retention(
        "notification_bodies",
        ("Nội dung SMS và email đã gửi", "Texts of the SMS and emails sent"),
        90,
        False,
        ("Trả lời thắc mắc về thông báo đã gửi.", "To answer questions about what was sent."),
        ("retention_notification_bodies_days", "retention_notifications_days"),
    ),
    Retention(
        "evidence",
        ("Tệp bằng chứng", "Evidence files"),
        365,
        True,
        ("Để xử lý khiếu nại lại hoặc kháng nghị.", "For a reopened case or an appeal."),
        ("retention_evidence_days",),
    ),
    Retention(
        "cases",
        ("Hồ sơ vụ việc", "Case records"),
        5 * 365,
        True,
        (
            "Thời hiệu khởi kiện và quy định về lưu trữ chứng từ kế toán.",
            "Limitation periods for claims and accounting record-keeping rules.",
        ),
        ("retention_case_records_days", "retention_cases_days", "retention_case_days"),
    ),
    Retention(
        "otp",
        ("Mã xác thực một lần", "One-time codes"),
        1,
        False,
        ("Chống dò mã.", "To stop code guessing."),
        ("retention_otp_days", "retention_otp_challenges_days"),
    ),
    Retention(
        "exports",
        ("Tệp “Tải dữ liệu của tôi”", "“Download my data” files"),
        7,
        False,
        ("Thời gian để bạn tải về.", "Time for you to download it."),
        ("retention_exports_days", "retention_export_days", "privacy_export_ttl_days"),
    ),
    Retention(
        "outbox_sent",
        ("Bản sao sự kiện nội bộ, sau khi đã chuyển", "Internal copies of events, once delivered"),
        7,
        False,
        ("Gửi lại khi một dịch vụ bị lỗi.", "To send again when a service failed."),
        ("retention_outbox_sent_days",),
    ),
    Retention(
        "rate_limits",
        ("Bộ đếm chống lạm dụng (IP, số điện thoại)", "Anti-abuse counters (IP address, phone)"),
        2,
        False,
        ("Giới hạn số lần gửi mã và truy cập.", "To limit how often codes are sent and tried."),
        ("retention_rate_limit_days",),
    ),
    Retention(
        "dead_letters",
        ("Tin nhắn nội bộ xử lý lỗi", "Internal messages that failed processing"),
        14,
        False,
        ("Khắc phục sự cố.", "To repair a failure."),
        ("retention_dead_letters_days", "retention_dead_letter_days"),
    ),
]


def retention_days(settings: Any, rule: Retention) -> float:
    for name in rule.settings:
        value = getattr(settings, name, None)
        if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
            return int(value) if float(value).is_integer() else float(value)
    return rule.days


def _period(days: float, lang: str) -> str:
    if days >= 365 and days % 365 == 0:
        n = int(days // 365)
        return f"{n} năm" if lang != "en" else f"{n} year" + ("s" if n > 1 else "")
    shown = f"{days:g}"
    return f"{shown} ngày" if lang != "en" else f"{shown} day" + ("s" if days != 1 else "")


def retention_rows(settings: Any, lang: str) -> list[dict[str, str]]:
    rows = []
    for rule in RETENTION:
        days = retention_days(settings, rule)
        period = _period(days, lang)
        if rule.after_closing:
            period += " kể từ khi đóng vụ việc" if lang != "en" else " after the case closes"
        rows.append(
            {"key": rule.key, "what": pick(rule.what, lang), "period": period, "days": f"{days:g}"}
        )
    return rows


# The controller: COMPLAINTS_PRIVACY_CONTROLLER_NAME / _EMAIL / _ADDRESS when the service
# defines them. The defaults are placeholders an operator replaces before going live.
CONTROLLER_DEFAULTS = {
    "privacy_controller_name": (
        "Đơn vị vận hành nền tảng giải quyết tranh chấp trực tuyến",
        "The operator of this online dispute resolution platform",
    ),
    "privacy_contact_email": ("privacy@odr.example", "privacy@odr.example"),
    "privacy_contact_address": ("", ""),
}


def controller(settings: Any, lang: str) -> dict[str, str]:
    out = {}
    for name, default in CONTROLLER_DEFAULTS.items():
        value = getattr(settings, name, None)
        out[name.removeprefix("privacy_")] = (
            value if isinstance(value, str) and value else pick(default, lang)
        )
    return out


def notice_context(settings: Any, lang: str) -> dict[str, Any]:
    return {
        "purposes": [
            {"key": k, "title": pick(t, lang), "data": pick(d, lang), "basis": pick(b, lang)}
            for k, t, d, b in PURPOSES
        ],
        "recipients": [
            {"key": k, "who": pick(w, lang), "what": pick(x, lang)} for k, w, x in RECIPIENTS
        ],
        "retention": retention_rows(settings, lang),
        "controller": controller(settings, lang),
    }
