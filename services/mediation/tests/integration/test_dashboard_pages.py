"""Dashboard pages over HTTP: cookie login, degraded view without complaints, CSRF, 404s."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient
from mediation_testkit import PASSWORD, admin_headers, case_event, neutral_body, outbox

from mediation import service
from odr_shared.db import utcnow


def _form_login(client: TestClient, email: str) -> None:
    r = client.post(
        "/dashboard/login", data={"email": email, "password": PASSWORD}, follow_redirects=False
    )
    assert r.status_code == 303
    assert "httponly" in r.headers["set-cookie"].lower()
    assert "samesite=strict" in r.headers["set-cookie"].lower()


def test_case_page_degrades_when_complaints_is_unreachable(
    client: TestClient, settings, sessions
) -> None:
    mine, other = neutral_body(), neutral_body(categories=["counterfeit"])
    for b in (mine, other):
        client.post("/v1/neutrals", json=b, headers=admin_headers(settings))
    data = case_event()
    with sessions() as session, session.begin():
        service.take_escalated_case(session, data, utcnow(), settings)

    assert client.get("/dashboard", follow_redirects=False).headers["location"] == (
        "/dashboard/login"
    )
    _form_login(client, mine["email"])
    page = client.get(f"/dashboard/cases/{data.case_id}")
    assert page.status_code == 200
    assert "Không tải được hồ sơ từ dịch vụ khiếu nại" in page.text
    assert data.reference in page.text
    assert "case.assigned" in page.text  # mediation's own timeline still shows
    assert page.headers["x-frame-options"] == "DENY"
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]

    # A form without the session's CSRF token is refused.
    r = client.post(
        f"/dashboard/cases/{data.case_id}/propose",
        data={"outcome": "replacement", "terms": "x"},
        follow_redirects=False,
    )
    assert r.status_code == 403
    csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', page.text).group(1)  # type: ignore[union-attr]
    r = client.post(
        f"/dashboard/cases/{data.case_id}/propose",
        data={"outcome": "replacement", "terms": "đổi hàng mới", "csrf": csrf},
        follow_redirects=False,
    )
    assert r.status_code == 303
    assert r.headers["location"].endswith("?done=1")
    # Complaints is down: the message still leaves, through the outbox, for complaints to add.
    r = client.post(
        f"/dashboard/cases/{data.case_id}/message",
        data={"body": "xin chào các bên", "csrf": csrf},
        follow_redirects=False,
    )
    assert r.headers["location"].endswith("?done=1")
    posted = [d for t, d in outbox(sessions) if t == "mediation.message_posted"]
    assert posted[0]["details"]["text"] == "xin chào các bên"
    # The consumer's contact shows masked only.
    page = client.get(f"/dashboard/cases/{data.case_id}")
    assert "+84912345678" not in page.text
    assert "678" in page.text

    client.cookies.clear()
    _form_login(client, other["email"])
    assert client.get(f"/dashboard/cases/{data.case_id}").status_code == 404
    english = client.get("/dashboard?lang=en")
    assert "My queue" in english.text

    # The operator sees the routing decision and why (candidates each rule excluded).
    client.cookies.clear()
    token = admin_headers(settings)["Authorization"].split()[1]
    r = client.post("/dashboard/operator-login", data={"token": token}, follow_redirects=False)
    assert r.status_code == 303
    page = client.get(f"/dashboard/cases/{data.case_id}?lang=en")
    assert "Routing decisions" in page.text
    assert "category: 1" in page.text
