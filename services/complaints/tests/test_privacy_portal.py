"""The portal's privacy pages over HTTP: the notice (vi and en), consent to share evidence with a
neutral, and "Download my data" / "Delete my data" after the SMS code.

The data requests go through `POST /v1/privacy/requests` (complaints.privacy); the tests that need
it say so with `need_privacy_api` and skip, naming what is missing, while that API is not mounted.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from fastapi.testclient import TestClient

from complaints.app import create_app
from complaints.portal.notice import RETENTION, retention_rows
from complaints.settings import ComplaintsSettings

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
PHONE = "0912 345 678"


@pytest.fixture
def settings(settings: ComplaintsSettings) -> ComplaintsSettings:
    # Complaints alone: an access export gathers no other service here, so it can complete.
    return settings.model_copy(update={"privacy_services": ""})


def _csrf(html: str) -> str:
    m = re.search(r'name="csrf" value="([0-9a-f]+)"', html)
    assert m, "no csrf field"
    return m.group(1)


def sign_in(
    client: TestClient, outbox: Callable[..., list[dict[str, Any]]], order_code: str
) -> str:
    """The SMS code flow of the portal; returns the order page's CSRF token."""
    client.post("/portal/otp", data={"order_code": order_code, "phone": PHONE})
    code = outbox("notification.send")[-1]["data"]["params"]["code"]
    r = client.post(
        "/portal/verify",
        data={"order_code": order_code, "phone": PHONE, "code": code},
        follow_redirects=False,
    )
    assert r.status_code == 303, r.text
    return _csrf(client.get("/order").text)


def need_privacy_api(client: TestClient) -> None:
    if "/v1/privacy/requests" not in client.app.openapi()["paths"]:  # type: ignore[attr-defined]
        pytest.skip("needs the backend: POST /v1/privacy/requests is not mounted yet")


def run_privacy_desk() -> Callable[[Any], int]:
    """The backend worker's step that carries requests out (complaints.privacy.desk)."""
    desk = pytest.importorskip("complaints.privacy.desk", reason="needs the backend's desk")
    work_once: Callable[[Any], int] = desk.work_once
    return work_once


VI_NOTICE = [
    # purposes
    "Tiếp nhận và giải quyết khiếu nại",
    "Gửi thông báo qua SMS và email",
    "Hòa giải và trọng tài",
    "Thống kê cho cơ quan quản lý",
    "Nhật ký an ninh và chống gian lận",
    # recipients
    "Sàn thương mại điện tử của đơn hàng",
    "Hòa giải viên hoặc trọng tài viên trung lập",
    "Nhà cung cấp dịch vụ SMS và email",
    # retention
    "30 ngày",
    "90 ngày",
    "1 năm kể từ khi đóng vụ việc",
    "5 năm kể từ khi đóng vụ việc",
    "1 ngày",
    "7 ngày",
    "14 ngày",
    # rights, the law, the authority, the controller
    "91/2025/QH15",
    "356/2025/NĐ-CP",
    "Quyền truy cập",
    "Quyền xoá",
    "Quyền phản đối",
    "không quá 2 ngày làm việc",
    "Cục An ninh mạng và phòng, chống tội phạm sử dụng công nghệ cao",
    "Bên kiểm soát dữ liệu",
]
EN_NOTICE = [
    "Handling your complaint",
    "Notifications by SMS and email",
    "Mediation and arbitration",
    "Statistics for the regulator",
    "Security and fraud logs",
    "The marketplace of the order",
    "The neutral mediator or arbitrator assigned to the case",
    "The SMS and email providers",
    "30 days",
    "90 days",
    "1 year after the case closes",
    "5 years after the case closes",
    "1 day",
    "7 days",
    "14 days",
    "91/2025/QH15",
    "Decree 356/2025",
    "Access:",
    "Erasure:",
    "Objection",
    "within 2 working days",
    "Ministry of Public Security",
    "Data controller",
]
DEFAULT_DAYS = {
    "webhook_bodies": 30,
    "notification_bodies": 90,
    "evidence": 365,
    "cases": 1825,
    "otp": 1,
    "exports": 7,
    "outbox_sent": 7,
    "rate_limits": 2,
    "dead_letters": 14,
}


def test_privacy_notice_in_vietnamese_and_english(client: TestClient) -> None:
    home = client.get("/")
    assert 'href="/privacy"' in home.text  # the footer links the notice on every page
    assert "Quyền riêng tư" in home.text

    vi = client.get("/privacy")
    assert vi.status_code == 200
    assert '<html lang="vi">' in vi.text
    assert "frame-ancestors" in vi.headers["content-security-policy"]
    for text in VI_NOTICE:
        assert text in vi.text, text
    for key, days in DEFAULT_DAYS.items():
        assert f'id="retention-{key}" data-days="{days}"' in vi.text, key
    assert re.search(r'href="mailto:[^"@]+@[^"]+"', vi.text), "the controller's contact"

    en = client.get("/privacy?lang=en")
    assert '<html lang="en">' in en.text
    for text in EN_NOTICE:
        assert text in en.text, text
    assert "Thống kê cho cơ quan quản lý" not in en.text
    assert "Statistics for the regulator" in client.get("/privacy").text  # the choice sticks
    assert "Thống kê cho cơ quan quản lý" in client.get("/privacy?lang=vi").text


def test_retention_periods_follow_the_settings() -> None:
    rows = {r["key"]: r for r in retention_rows(SimpleNamespace(), "en")}
    assert {k: float(r["days"]) for k, r in rows.items()} == DEFAULT_DAYS
    assert len(RETENTION) == len(DEFAULT_DAYS)
    configured = SimpleNamespace(
        retention_evidence_days=400, retention_otp_days=2, retention_rate_limit_days=0.5
    )
    rows = {r["key"]: r for r in retention_rows(configured, "en")}
    assert rows["evidence"]["period"] == "400 days after the case closes"
    assert rows["otp"]["period"] == "2 days"
    assert rows["rate_limits"]["period"] == "0.5 days"
    assert rows["cases"]["period"] == "5 years after the case closes"
    rows = {r["key"]: r for r in retention_rows(configured, "vi")}
    assert rows["evidence"]["period"] == "400 ngày kể từ khi đóng vụ việc"


def test_the_notice_reads_the_service_retention_settings(settings: ComplaintsSettings) -> None:
    tuned = settings.model_copy(
        update={
            "retention_evidence_days": 400,
            "retention_case_records_days": 3650,
            "retention_otp_days": 2,
            "privacy_export_ttl_days": 3,
            "privacy_controller_name": "Công ty Trọng Tài Số",
            "privacy_contact_email": "dpo@trongtaiso.vn",
        }
    )
    app = create_app(tuned)
    with TestClient(app) as c:
        page = c.get("/privacy?lang=en").text
    app.state.engine.dispose()
    assert 'id="retention-evidence" data-days="400"' in page
    assert "400 days after the case closes" in page
    assert "10 years after the case closes" in page
    assert 'id="retention-otp" data-days="2"' in page
    assert 'id="retention-exports" data-days="3"' in page
    # The controller the operator configured, not the placeholder.
    assert "Công ty Trọng Tài Số" in page
    assert "mailto:dpo@trongtaiso.vn" in page
    assert "privacy@odr.example" not in page


def test_consent_before_evidence_reaches_a_neutral(
    client: TestClient,
    seed_order: Callable[..., str],
    outbox: Callable[..., list[dict[str, Any]]],
    bearer: Callable[..., dict[str, str]],
) -> None:
    seed_order("DHPV1")
    csrf = sign_in(client, outbox, "DHPV1")
    order = client.get("/order").text
    assert 'name="consent_share_with_neutral"' in order
    assert "Tôi đồng ý để bằng chứng của tôi được chia sẻ với hòa giải viên" in order
    r = client.post(
        "/portal/cases",
        data={
            "csrf": csrf,
            "category": "damaged",
            "description": "Hàng bị vỡ khi nhận.",
            "desired_outcome": "refund",
            "consent_share_with_neutral": "yes",
        },
        files={"evidence": ("anh.png", PNG, "image/png")},
    )
    assert "anh.png" in r.text
    case_url = str(r.url)
    case_id = case_url.rsplit("/", 1)[1]
    offer = client.post(
        f"/v1/cases/{case_id}/offers",
        json={"kind": "partial_refund", "amount": 10000},
        headers=bearer("platform", platform_id="plat-a"),
    ).json()
    page = client.post(f"/cases/{case_id}/offers/{offer['offer_id']}/reject", data={"csrf": csrf})
    # Escalating hands the file to a neutral: the form asks for consent, and so does the server.
    assert re.search(r'name="consent_share_with_neutral" value="yes" required', page.text)
    page = client.post(f"/cases/{case_id}/escalate", data={"csrf": csrf, "reason": "Thấp quá"})
    assert "Cần sự đồng ý của bạn" in page.text
    assert 'data-status="negotiating"' in page.text
    page = client.post(
        f"/cases/{case_id}/escalate",
        data={"csrf": csrf, "reason": "Thấp quá", "consent_share_with_neutral": "yes"},
    )
    assert 'data-status="escalated"' in page.text
    # A neutral holds the case now: new evidence needs the consent too.
    assert 'id="evidence-consent" required' in page.text
    page = client.post(
        f"/cases/{case_id}/evidence",
        data={"csrf": csrf},
        files={"evidence": ("them.png", PNG, "image/png")},
    )
    assert "Cần sự đồng ý của bạn" in page.text
    assert "them.png" not in page.text
    page = client.post(
        f"/cases/{case_id}/evidence",
        data={"csrf": csrf, "consent_share_with_neutral": "yes"},
        files={"evidence": ("them.png", PNG, "image/png")},
    )
    assert "them.png" in page.text
    # Each consent given is on the case's record: what for, how, by whom, when.
    case = client.get(f"/v1/cases/{case_id}", headers=bearer("admin")).json()
    consents = [e for e in case["timeline"] if e["kind"] == "consent"]
    assert [(c["purpose"], c["actor"]["role"]) for c in consents] == [
        ("share_with_neutral", "consumer")
    ] * len(consents)
    assert {c["via"] for c in consents} >= {"escalation", "evidence"}
    assert "Đã đồng ý chia sẻ hồ sơ" in page.text


def test_data_requests_need_a_session_csrf_and_an_explicit_confirmation(
    client: TestClient,
    seed_order: Callable[..., str],
    outbox: Callable[..., list[dict[str, Any]]],
) -> None:
    seed_order("DHPV2")
    r = client.get("/privacy/erase", follow_redirects=False)
    assert r.status_code == 303
    assert r.headers["location"].startswith("/?e=err_session")
    r = client.get("/privacy/requests/abc", follow_redirects=False)
    assert r.status_code == 303

    csrf = sign_in(client, outbox, "DHPV2")
    order = client.get("/order").text
    assert "Tải dữ liệu của tôi" in order
    assert "Xoá dữ liệu của tôi" in order
    assert 'action="/portal/privacy/requests"' in order
    en = client.get("/order?lang=en").text
    assert "Download my data" in en
    assert "Delete my data" in en
    client.get("/order?lang=vi")

    refused = client.post("/portal/privacy/requests", data={"kind": "access"})
    assert refused.status_code == 403  # no CSRF token
    r = client.post(
        "/portal/privacy/requests",
        data={"csrf": csrf, "kind": "erasure"},
        follow_redirects=False,
    )
    assert r.status_code == 303
    assert r.headers["location"] == "/privacy/erase?e=err_confirm"
    page = client.get(r.headers["location"]).text
    assert "Vui lòng đánh dấu ô xác nhận" in page
    assert 'name="confirm" value="yes" required' in page
    assert "không thể hoàn tác" in page
    assert "giữ đến khi vụ việc đóng" in page  # deferral explained before the buyer confirms
    r = client.post(
        "/portal/privacy/requests",
        data={"csrf": csrf, "kind": "everything"},
        follow_redirects=False,
    )
    assert r.status_code == 303
    assert "err_invalid" in r.headers["location"]


def test_download_my_data_through_the_portal(
    client: TestClient,
    deps: Any,
    seed_order: Callable[..., str],
    outbox: Callable[..., list[dict[str, Any]]],
) -> None:
    need_privacy_api(client)
    work_once = run_privacy_desk()
    seed_order("DHPV3")
    seed_order("DHPV4")  # the same buyer's other order
    seed_order("DHPV9", phone="0987 654 321")  # another buyer
    csrf = sign_in(client, outbox, "DHPV3")
    r = client.post(
        "/portal/privacy/requests", data={"csrf": csrf, "kind": "access"}, follow_redirects=False
    )
    assert r.status_code == 303, r.text
    status_url = r.headers["location"]
    assert re.fullmatch(r"/privacy/requests/[^/?]+\?new=1", status_url)
    page = client.get(status_url)
    assert "Chúng tôi đã tiếp nhận yêu cầu của bạn" in page.text
    request_id = re.search(r'id="request-id">([^<]+)<', page.text)
    assert request_id
    assert re.search(r'id="request-due">\d\d/\d\d/\d{4}', page.text)
    assert 'data-status="received"' in page.text
    assert '<meta http-equiv="refresh"' in page.text  # polls until done
    assert 'id="export-link"' not in page.text
    # The order page lists it, for a buyer who signs in again later.
    order = client.get("/order").text
    assert f'href="/privacy/requests/{request_id.group(1)}"' in order

    assert work_once(deps) >= 1
    page = client.get(status_url.split("?")[0])
    assert 'data-status="completed"' in page.text
    assert '<meta http-equiv="refresh"' not in page.text
    link = re.search(r'id="export-link" href="([^"]+)"', page.text)
    assert link
    export = client.get(link.group(1))
    assert export.status_code == 200
    assert "attachment" in export.headers["content-disposition"]
    text = export.content.decode()
    document = json.loads(text)
    assert document["request_id"] == request_id.group(1)
    assert "DHPV3" in text
    assert "DHPV4" in text
    assert "DHPV9" not in text
    assert "0987654321" not in text

    # Once the export expires, the page says so and the file is gone.
    from complaints.models import PrivacyRequest  # the backend's model (needs_privacy_api)

    with deps.sessions.begin() as session:
        req = session.get(PrivacyRequest, request_id.group(1))
        req.export_expires_at = req.export_expires_at - timedelta(days=30)
    page = client.get(status_url.split("?")[0])
    assert "Liên kết tải đã hết hạn" in page.text
    assert 'id="export-link"' not in page.text
    assert client.get(link.group(1)).status_code == 404

    # Another session (another buyer) cannot see that request.
    client.cookies.clear()
    sign_in_other = client.post(
        "/portal/otp", data={"order_code": "DHPV9", "phone": "0987 654 321"}
    )
    assert sign_in_other.status_code == 200
    code = outbox("notification.send")[-1]["data"]["params"]["code"]
    client.post(
        "/portal/verify", data={"order_code": "DHPV9", "phone": "0987 654 321", "code": code}
    )
    assert client.get(status_url).status_code == 404
    assert client.get(link.group(1)).status_code == 404


def test_delete_my_data_is_deferred_while_a_case_is_open(
    client: TestClient,
    deps: Any,
    seed_order: Callable[..., str],
    outbox: Callable[..., list[dict[str, Any]]],
) -> None:
    need_privacy_api(client)
    work_once = run_privacy_desk()
    seed_order("DHPV5")
    csrf = sign_in(client, outbox, "DHPV5")
    r = client.post(
        "/portal/cases",
        data={
            "csrf": csrf,
            "category": "late_delivery",
            "description": "Giao hàng trễ hai tuần.",
            "desired_outcome": "partial_refund",
        },
    )
    reference = re.search(r'id="case-reference">([^<]+)<', r.text)
    assert reference
    erase = client.get("/privacy/erase").text
    assert reference.group(1) in erase  # the open case is named before the buyer confirms
    r = client.post(
        "/portal/privacy/requests",
        data={"csrf": csrf, "kind": "erasure", "confirm": "yes"},
        follow_redirects=False,
    )
    assert r.status_code == 303, r.text
    page = client.get(r.headers["location"])
    assert "Yêu cầu xoá dữ liệu" in page.text
    assert "Chúng tôi đã tiếp nhận yêu cầu của bạn" in page.text
    work_once(deps)
    page = client.get(r.headers["location"].split("?")[0])
    assert 'data-status="deferred"' in page.text
    assert "Khiếu nại của bạn còn đang mở" in page.text
    assert 'id="request-until"' in page.text
    assert 'data-service="complaints" data-status="deferred">Khiếu nại: Tạm hoãn' in page.text


def test_the_order_page_still_opens_after_an_erasure(
    client: TestClient,
    deps: Any,
    seed_order: Callable[..., str],
    outbox: Callable[..., list[dict[str, Any]]],
) -> None:
    need_privacy_api(client)
    work_once = run_privacy_desk()
    seed_order("DHPV6")
    csrf = sign_in(client, outbox, "DHPV6")
    r = client.post(
        "/portal/privacy/requests",
        data={"csrf": csrf, "kind": "erasure", "confirm": "yes"},
        follow_redirects=False,
    )
    work_once(deps)
    page = client.get(r.headers["location"].split("?")[0])
    assert 'data-status="completed"' in page.text
    assert "đã được xoá khỏi mọi dịch vụ" in page.text
    # The order stays, without the buyer (the marketplace's record): its page still opens.
    order = client.get("/order")
    assert order.status_code == 200
    assert "DHPV6" in order.text


def test_too_many_data_requests_are_refused_kindly(
    client: TestClient,
    settings: ComplaintsSettings,
    seed_order: Callable[..., str],
    outbox: Callable[..., list[dict[str, Any]]],
) -> None:
    need_privacy_api(client)
    seed_order("DHPV7")
    csrf = sign_in(client, outbox, "DHPV7")
    seen = set()
    per_day = settings.privacy_requests_per_subject_per_day
    for _ in range(per_day):  # the same pending request again: the one already on its way
        r = client.post(
            "/portal/privacy/requests",
            data={"csrf": csrf, "kind": "access"},
            follow_redirects=False,
        )
        assert r.headers["location"].startswith("/privacy/requests/")
        seen.add(r.headers["location"].split("?")[0])
    assert len(seen) == 1
    r = client.post("/portal/privacy/requests", data={"csrf": csrf, "kind": "access"})
    assert "Vui lòng thử lại sau 24 giờ" in r.text
