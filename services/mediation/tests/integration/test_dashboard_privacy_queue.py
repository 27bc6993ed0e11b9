"""The operator's dashboard shows complaints' data-subject request queue (issue 16).

Complaints is the real complaints app on its own SQLite database, served on a free port; the
dashboard reads its queue over HTTP with the operator's own admin token.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from fastapi.testclient import TestClient
from mediation_testkit import admin_headers, make_settings, neutral_body

import complaints
from complaints.app import create_app as create_complaints_app
from complaints.models import Order, PrivacyRequest
from complaints.orders import apply_order_event
from complaints.service import Deps
from complaints.settings import ComplaintsSettings
from mediation import SERVICE_ROOT
from mediation.app import create_app
from mediation.domain import VN_TZ
from mediation.settings import MediationSettings
from odr_shared.auth import TokenService
from odr_shared.db import utcnow
from odr_shared.events import OrderStatusChangedV1, build_event, order_id
from odr_shared.migrate import upgrade
from odr_shared.testing import sample_order, serve_app

BUYERS = {
    "DSR1": ("0912000111", "Tran Thi Overduebuyer"),
    "DSR2": ("0912000222", "Le Van Deferredbuyer"),
    "DSR3": ("0912000333", "Pham Thi Donebuyer"),
}


@dataclass
class Complaints:
    url: str
    deps: Deps


@pytest.fixture
def complaints_service(tmp_path: Path) -> Iterator[Complaints]:
    """The real complaints app on a migrated SQLite file, served over HTTP on a free port."""
    url = f"sqlite:///{tmp_path}/complaints.db"
    upgrade(complaints.SERVICE_ROOT, url)
    settings = ComplaintsSettings(
        database_url=url, storage_dir=str(tmp_path / "evidence"), environment="test"
    )
    app = create_complaints_app(settings)
    try:
        with serve_app(app) as base:
            yield Complaints(base, app.state.deps)
    finally:
        app.state.engine.dispose()


@contextmanager
def _mediation(database_url: str, **overrides: Any) -> Iterator[tuple[TestClient, Any]]:
    upgrade(SERVICE_ROOT, database_url)
    settings = make_settings(database_url, **overrides)
    app = create_app(settings)
    with TestClient(app) as c:
        yield c, settings
    app.state.engine.dispose()


@pytest.fixture
def dashboard(database_url: str, complaints_service: Complaints) -> Iterator[TestClient]:
    """Mediation pointed at the served complaints, signed in as the operator."""
    with _mediation(database_url, complaints_url=complaints_service.url) as (c, settings):
        _operator_login(c, settings)
        yield c


def _operator_login(client: TestClient, settings: MediationSettings) -> None:
    token = admin_headers(settings)["Authorization"].split()[1]
    r = client.post("/dashboard/operator-login", data={"token": token}, follow_redirects=False)
    assert r.status_code == 303


def _seed_order(deps: Deps, code: str) -> str:
    phone, name = BUYERS[code]
    order = sample_order(code)
    order["buyer"] = {"name": name, "phone": phone, "email": f"{code.lower()}@example.vn"}
    data = OrderStatusChangedV1.model_validate(
        {**order, "order_id": order_id("plat-a", code), "platform_id": "plat-a"}
    )
    event = build_event(
        source="test", event_type="order.status_changed", subject=data.order_id, data=data
    )
    with deps.sessions.begin() as session:
        apply_order_event(session, event, deps.cipher, subject_of=deps.subject_of)
    return data.order_id


def _ask(c: Complaints, admin: dict[str, str], kind: str, order: str) -> dict[str, Any]:
    """An admin files a request for the order's buyer, over complaints' real API."""
    r = httpx.post(
        f"{c.url}/v1/privacy/requests",
        json={"kind": kind, "order_id": order},
        headers=admin,
        timeout=10,
    )
    assert r.status_code == 202, r.text
    return dict(r.json())


def _local(iso: str | datetime) -> str:
    when = datetime.fromisoformat(iso) if isinstance(iso, str) else iso
    return when.astimezone(VN_TZ).strftime("%d/%m/%Y %H:%M")


def _section(page: str) -> str:
    found = re.search(r'<section id="privacy-requests">(.*?)</section>', page, re.S)
    assert found, "the data-subject request section is missing"
    return found.group(1)


def _row(section: str, request_id: str) -> str:
    found = re.search(rf'<tr data-request-id="{request_id}".*?</tr>', section, re.S)
    assert found, f"request {request_id} is not listed"
    return found.group(0)


def test_the_operator_sees_the_data_subject_request_queue_from_complaints(
    dashboard: TestClient, complaints_service: Complaints
) -> None:
    c = complaints_service
    token = TokenService(c.deps.settings).issue(
        role="admin", subject="test-admin", ttl=timedelta(minutes=10)
    )
    admin = {"Authorization": f"Bearer {token}"}
    orders = {code: _seed_order(c.deps, code) for code in BUYERS}
    late = _ask(c, admin, "access", orders["DSR1"])
    waiting = _ask(c, admin, "erasure", orders["DSR2"])
    done = _ask(c, admin, "access", orders["DSR3"])

    # One answer is overdue (asked long ago), one is deferred while a service keeps a record,
    # one is completed.
    now = utcnow()
    past_due = now - timedelta(days=3)
    until = now + timedelta(days=30)
    with c.deps.sessions.begin() as session:
        row = session.get(PrivacyRequest, late["request_id"])
        assert row is not None
        row.due_at = past_due
        row = session.get(PrivacyRequest, waiting["request_id"])
        assert row is not None
        row.status = "deferred"
        row.reason = "open case"
        row.until = until
        row.reports = {
            "gateway": {"status": "completed", "at": now.isoformat()},
            "mediation": {
                "status": "deferred",
                "reason": "arbitration award kept",
                "until": until.isoformat(),
            },
        }
        row = session.get(PrivacyRequest, done["request_id"])
        assert row is not None
        row.status = "completed"
        row.completed_at = now
        subjects = [session.get(Order, o).subject_id for o in orders.values()]  # type: ignore[union-attr]
    assert all(subjects)

    page = dashboard.get("/dashboard")
    assert page.status_code == 200
    text = page.text
    section = _section(text)
    assert "Yêu cầu về dữ liệu cá nhân" in section
    # Open requests by default, the earliest due first: the overdue one, then the deferred one.
    assert section.index(late["request_id"]) < section.index(waiting["request_id"])
    assert done["request_id"] not in section

    overdue = _row(section, late["request_id"])
    assert "Truy cập dữ liệu" in overdue
    assert "Đã tiếp nhận" in overdue
    assert "Quá hạn" in overdue
    assert "sla-red" in overdue
    assert _local(past_due) in overdue
    assert "Quản trị viên" in overdue  # filed by an admin

    deferred = _row(section, waiting["request_id"])
    assert "Xóa dữ liệu" in deferred
    assert "Tạm hoãn" in deferred
    assert "Quá hạn" not in deferred
    assert _local(waiting["due_at"]) in deferred
    assert "open case" in deferred
    assert _local(until) in deferred
    assert "gateway: Đã hoàn thành" in deferred
    assert "mediation: Tạm hoãn (arbitration award kept" in deferred

    # No subject id, no personal data anywhere on the page.
    for subject in subjects:
        assert subject not in text
    for phone, name in BUYERS.values():
        assert phone not in text
        assert phone[-6:] not in text
        assert name not in text
        assert name.split()[-1] not in text

    # The filter: completed only, then everything (complaints' order, earliest due first).
    section = _section(dashboard.get("/dashboard?dsr=completed").text)
    assert done["request_id"] in section
    assert "Đã hoàn thành" in _row(section, done["request_id"])
    assert late["request_id"] not in section
    assert waiting["request_id"] not in section
    section = _section(dashboard.get("/dashboard?dsr=all").text)
    listed = re.findall(r'<tr data-request-id="([^"]+)"', section)
    queue = httpx.get(f"{c.url}/v1/privacy/requests", headers=admin, timeout=10).json()
    assert listed == [q["request_id"] for q in queue]
    assert set(listed) == {late["request_id"], waiting["request_id"], done["request_id"]}
    section = _section(dashboard.get("/dashboard?dsr=deferred").text)
    assert re.findall(r'<tr data-request-id="([^"]+)"', section) == [waiting["request_id"]]
    # An unknown filter shows the open ones.
    section = _section(dashboard.get("/dashboard?dsr=nope").text)
    assert re.findall(r'<tr data-request-id="([^"]+)"', section) == [
        late["request_id"],
        waiting["request_id"],
    ]

    # In English when asked.
    english = dashboard.get("/dashboard?lang=en")
    section = _section(english.text)
    assert "Data-subject requests" in section
    overdue = _row(section, late["request_id"])
    assert "Overdue" in overdue
    assert "Received" in overdue
    assert "Access" in overdue
    deferred = _row(section, waiting["request_id"])
    assert "Deferred" in deferred
    assert "Erasure" in deferred
    assert "gateway: Completed" in deferred


def test_the_operator_page_still_shows_when_complaints_is_unreachable(
    database_url: str,
) -> None:
    # make_settings points complaints at a port nothing listens on.
    with _mediation(database_url) as (client, settings):
        r = client.post(
            "/v1/neutrals", json=neutral_body(name="Võ Thị Hòa"), headers=admin_headers(settings)
        )
        assert r.status_code == 201, r.text
        _operator_login(client, settings)
        page = client.get("/dashboard")
        assert page.status_code == 200
        section = _section(page.text)
        assert "Không tải được hàng đợi yêu cầu dữ liệu" in section
        assert "privacy-queue" not in section
        # The rest of the operator's page is there.
        assert "Hàng chờ phân công" in page.text
        assert "Võ Thị Hòa" in page.text
        english = client.get("/dashboard?lang=en")
        assert "The data-request queue could not be loaded" in _section(english.text)
        assert "Waiting queue" in english.text


def _stand_in(answer: str, asked: list[tuple[str, dict[str, str]]]) -> FastAPI:
    app = FastAPI()

    @app.get("/v1/privacy/requests")
    def queue(request: Request) -> JSONResponse:
        asked.append((request.headers.get("authorization", ""), dict(request.query_params)))
        if answer == "error":
            return JSONResponse({"detail": "boom"}, status_code=503)
        return JSONResponse({"items": []})

    return app


@pytest.mark.parametrize("answer", ["error", "not-a-list"])
def test_a_failing_complaints_answer_shows_the_notice_and_the_operator_token_goes_through(
    database_url: str, answer: str
) -> None:
    """A stand-in complaints that fails (5xx) or answers an odd document: the notice, not a 500.

    It also records what the dashboard asked: the operator's own token, the open statuses."""
    asked: list[tuple[str, dict[str, str]]] = []
    stand_in = _stand_in(answer, asked)
    with serve_app(stand_in) as url, _mediation(database_url, complaints_url=url) as (c, s):
        _operator_login(c, s)
        page = c.get("/dashboard")
        assert page.status_code == 200
        assert "Không tải được hàng đợi yêu cầu dữ liệu" in _section(page.text)
        assert "Hàng chờ phân công" in page.text
        token = c.cookies.get("odr_dashboard")
        assert token
        assert asked[0] == (f"Bearer {token}", {"status": "received", "limit": "200"})
