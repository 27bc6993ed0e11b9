"""The portal's pages over HTTP: Vietnamese by default, English on request, session and CSRF."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from fastapi.testclient import TestClient

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


def _csrf(html: str) -> str:
    m = re.search(r'name="csrf" value="([0-9a-f]+)"', html)
    assert m, "no csrf field"
    return m.group(1)


def test_portal_journey_over_http(
    client: TestClient,
    seed_order: Callable[..., str],
    outbox: Callable[..., list[dict[str, Any]]],
    bearer: Callable[..., dict[str, str]],
) -> None:
    seed_order("DHP1")
    home = client.get("/")
    assert home.status_code == 200
    assert "Tra cứu đơn hàng" in home.text
    assert "Find your order" in client.get("/?lang=en").text
    assert "Find your order" in client.get("/").text  # the choice sticks (cookie)
    client.get("/?lang=vi")
    assert client.get("/order", follow_redirects=False).status_code == 303

    page = client.post("/portal/otp", data={"order_code": "DHP1", "phone": "0912 345 678"})
    assert "Nhập mã xác thực" in page.text
    code = outbox("notification.send")[-1]["data"]["params"]["code"]
    bad = client.post(
        "/portal/verify",
        data={
            "order_code": "DHP1",
            "phone": "0912 345 678",
            "code": "000000" if code != "000000" else "111111",
        },
    )
    assert bad.status_code == 400
    r = client.post(
        "/portal/verify",
        data={"order_code": "DHP1", "phone": "0912 345 678", "code": code},
        follow_redirects=False,
    )
    assert r.status_code == 303
    assert "httponly" in r.headers["set-cookie"].lower()
    order = client.get("/order")
    assert "DHP1" in order.text
    csrf = _csrf(order.text)

    # A form without the CSRF token is refused.
    assert client.post("/portal/cases", data={"category": "damaged"}).status_code == 403
    r = client.post(
        "/portal/cases",
        data={
            "csrf": csrf,
            "category": "damaged",
            "description": "Hàng bị vỡ hoàn toàn.",
            "desired_outcome": "refund",
            "claimed_amount": "300.000",
        },
        files={"evidence": ("anh.png", PNG, "image/png")},
    )
    assert r.status_code == 200
    assert "KN-" in r.text
    assert "anh.png" in r.text
    assert "Đã mở khiếu nại" in r.text  # the lifecycle's reasons speak Vietnamese
    link = re.search(r'href="(/cases/[^"]+/evidence/[^"]+)"', r.text)
    assert link
    assert client.get(link.group(1)).content == PNG
    case_url = str(r.url)
    case_id = case_url.rsplit("/", 1)[1]

    client.post(f"/cases/{case_id}/messages", data={"csrf": csrf, "text": "Mong sớm phản hồi"})
    platform = bearer("platform", platform_id="plat-a")
    offer = client.post(
        f"/v1/cases/{case_id}/offers",
        json={"kind": "partial_refund", "amount": 50000},
        headers=platform,
    ).json()
    page = client.get(case_url)
    assert "50.000 ₫" in page.text
    assert "Mong sớm phản hồi" in page.text
    client.post(f"/cases/{case_id}/offers/{offer['offer_id']}/reject", data={"csrf": csrf})
    page = client.get(case_url)
    assert 'id="escalate"' in page.text
    page = client.post(
        f"/cases/{case_id}/escalate",
        data={"csrf": csrf, "reason": "Không đồng ý", "consent_share_with_neutral": "yes"},
    )
    assert 'data-status="escalated"' in page.text
    # Another consumer's case is not reachable from this session.
    missing = client.get("/cases/00000000-0000-0000-0000-000000000000")
    assert missing.status_code == 404
    assert "Không tìm thấy" in missing.text
    assert "frame-ancestors" in missing.headers["content-security-policy"]
