"""Data-subject requests in complaints: the API, erasure, deferral, access export, sealing.

On SQLite and PostgreSQL. Other services appear only as what they send (privacy.events handled
as the consumer would) and, for an access export, as a small real HTTP server.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Callable, Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import inspect, select, text

from complaints import service
from complaints.models import CaseRecord, Order, PrivacyExport, PrivacyRequest
from complaints.privacy import desk
from complaints.privacy.handlers import on_erasure_reported, on_redaction_requested
from complaints.privacy.state import new_request
from complaints.service import Deps
from odr_shared.auth import Party, ServiceTokens
from odr_shared.db import utcnow
from odr_shared.events import ErasureReportedV1, RedactionRequestedV1, build_event

PHONE_A = "0912345678"
PHONE_B = "0987654321"
BUYER_A = {"name": "Tran Thi Secretname", "email": "secret.buyer@example.vn"}
BUYER_B = {"name": "Le Van Otherbuyer", "email": "other.buyer@example.vn"}
DESCRIPTION_A = "The parcel arrived crushed, marker DESCRIPTION-A-7731 inside."
MESSAGE_A = "Please call me back, marker MESSAGE-A-4410."
DESCRIPTION_B = "Wrong colour sent, marker DESCRIPTION-B-9902 inside."
SERVICES = ("gateway", "mediation", "notifications")
Outbox = Callable[..., list[dict[str, Any]]]
SignIn = Callable[[str, str], dict[str, str]]

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


def consumer_of(order_id: str) -> Party:
    return Party("consumer", f"c-{order_id}", platform_id=order_id.split(":")[0], order_id=order_id)


def open_case(deps: Deps, order_id: str, description: str) -> CaseRecord:
    return service.open_case(
        deps,
        consumer_of(order_id),
        order_code=order_id.split(":")[1],
        category="damaged",
        description=description,
        desired_outcome="refund",
        claimed_amount=100000,
        language="en",
    )


def ask(client: TestClient, headers: dict[str, str], kind: str) -> dict[str, Any]:
    r = client.post("/v1/privacy/requests", json={"kind": kind}, headers=headers)
    assert r.status_code == 202, r.text
    return dict(r.json())


def report(
    deps: Deps, request_id: str, subject_id: str, svc: str, status: str = "completed", **kw: Any
) -> None:
    data = ErasureReportedV1(
        request_id=request_id,
        service=svc,
        subject_id=subject_id,
        status=status,
        reason=kw.get("reason"),
        until=kw.get("until"),
        counts=kw.get("counts", {"rows": 1}),
    )
    event = build_event(
        source="test", event_type="privacy.erasure_reported", subject=subject_id, data=data
    )
    with deps.sessions.begin() as session:
        on_erasure_reported(session, event, deps)


def request_row(deps: Deps, request_id: str) -> PrivacyRequest:
    with deps.sessions() as session:
        req = session.get(PrivacyRequest, request_id)
        assert req is not None
        session.expunge(req)
        return req


def subject_of_order(deps: Deps, order_id: str) -> str:
    with deps.sessions() as session:
        order = session.get(Order, order_id)
        assert order is not None
        assert order.subject_id
        return order.subject_id


# --------------------------------------------------------------------------- the API


def test_a_request_is_acknowledged_at_once_with_its_due_date_and_only_its_buyer_sees_it(
    sign_in: SignIn,
    client: TestClient,
    deps: Deps,
    seed_order: Callable[..., str],
    outbox: Outbox,
    bearer: Callable[..., dict[str, str]],
) -> None:
    seed_order("PR1", phone=PHONE_A)
    seed_order("PR2", platform_id="plat-b", phone="+84 912 345 678")  # the same buyer elsewhere
    seed_order("PR3", phone=PHONE_B)
    buyer = sign_in("PR1", PHONE_A)
    ack = ask(client, buyer, "access")
    assert set(ack) == {"request_id", "kind", "status", "acknowledged_at", "due_at"}
    assert ack["kind"] == "access"
    assert ack["status"] == "received"
    acknowledged = utcnow().fromisoformat(ack["acknowledged_at"])
    assert abs((utcnow() - acknowledged).total_seconds()) < 60
    expected_due = deps.calendar.deadline(acknowledged, deps.settings.privacy_answer_working_days)
    assert utcnow().fromisoformat(ack["due_at"]) == expected_due
    # The request covers every order with the proven phone.
    req = request_row(deps, ack["request_id"])
    assert set(req.order_ids) == {"plat-a:PR1", "plat-b:PR2"}

    url = f"/v1/privacy/requests/{ack['request_id']}"
    mine = client.get(url, headers=buyer)
    assert mine.status_code == 200
    assert mine.json()["status"] == "received"
    assert mine.json()["export_url"] is None
    # The same buyer signed in through the other order sees it too; nobody else does.
    same_buyer = sign_in("PR2", PHONE_A)
    assert client.get(url, headers=same_buyer).status_code == 200
    other = sign_in("PR3", PHONE_B)
    for headers in (other, bearer("platform", platform_id="plat-a")):
        r = client.get(url, headers=headers)
        assert r.status_code == 404
        assert r.headers["content-type"].startswith("application/problem+json")
    assert client.get(url, headers=bearer("admin")).status_code == 200
    assert (
        client.get(f"/v1/privacy/requests/{ack['request_id']}/export", headers=other).status_code
        == 404
    )
    # A buyer asks for themselves; an admin for a buyer, naming the order; a platform never.
    admin = bearer("admin")
    r = client.post("/v1/privacy/requests", json={"kind": "erasure"}, headers=admin)
    assert r.status_code == 400
    assert r.json()["errors"][0]["field"] == "order_id"
    r = client.post(
        "/v1/privacy/requests", json={"kind": "erasure", "order_id": "plat-a:PR3"}, headers=admin
    )
    assert r.status_code == 202
    assert request_row(deps, r.json()["request_id"]).source == "admin"
    assert (
        client.get(f"/v1/privacy/requests/{r.json()['request_id']}", headers=other).status_code
        == 200
    )
    assert (
        client.get(f"/v1/privacy/requests/{r.json()['request_id']}", headers=buyer).status_code
        == 404
    )
    platform = bearer("platform", platform_id="plat-a")
    r = client.post("/v1/privacy/requests", json={"kind": "access"}, headers=platform)
    assert r.status_code == 403
    r = client.post(
        "/v1/privacy/requests", json={"kind": "access", "order_id": "plat-a:PR3"}, headers=buyer
    )
    assert r.status_code == 404  # a buyer cannot ask about another's order
    bad = client.post("/v1/privacy/requests", json={"kind": "everything"}, headers=buyer)
    assert bad.status_code == 422
    assert bad.headers["content-type"].startswith("application/problem+json")
    assert client.post("/v1/privacy/requests", json={"kind": "access"}).status_code == 401


def test_the_admin_queue_lists_the_earliest_due_first_and_filters_by_status(
    client: TestClient, deps: Deps, bearer: Callable[..., dict[str, str]]
) -> None:
    now = utcnow()
    made = []
    with deps.sessions.begin() as session:
        for days_ago, kind in ((2, "access"), (30, "erasure"), (9, "access")):
            req = new_request(
                session,
                kind=kind,
                subject_id=f"sp_{days_ago:032x}",
                source="consumer",
                order_ids=[],
                case_ids=[],
                calendar=deps.calendar,
                answer_working_days=15,
                now=now - timedelta(days=days_ago),
            )
            made.append((req.due_at, req.id))
        req.status = "deferred"
        req.reason = "open case"
    r = client.get("/v1/privacy/requests", headers=bearer("admin"))
    assert r.status_code == 200
    queue = r.json()
    assert [q["request_id"] for q in queue] == [rid for _, rid in sorted(made)]
    assert queue[0]["overdue"] is True  # asked 30 days ago: more than 15 working days
    assert queue[-1]["overdue"] is False
    assert all({"due_at", "status", "kind", "acknowledged_at"} <= set(q) for q in queue)
    deferred = client.get("/v1/privacy/requests?status=deferred", headers=bearer("admin")).json()
    assert [q["request_id"] for q in deferred] == [req.id]
    assert deferred[0]["reason"] == "open case"
    assert (
        client.get("/v1/privacy/requests?status=nope", headers=bearer("admin")).status_code == 400
    )
    assert (
        client.get(
            "/v1/privacy/requests", headers=bearer("platform", platform_id="plat-a")
        ).status_code
        == 403
    )


def test_creating_requests_is_rate_limited_per_buyer_with_retry_after(
    sign_in: SignIn, client: TestClient, deps: Deps, seed_order: Callable[..., str], outbox: Outbox
) -> None:
    seed_order("PR10", phone=PHONE_A)
    buyer = sign_in("PR10", PHONE_A)
    limit = deps.settings.privacy_requests_per_subject_per_day
    statuses = [
        client.post("/v1/privacy/requests", json={"kind": "access"}, headers=buyer).status_code
        for _ in range(limit + 1)
    ]
    assert statuses == [202] * limit + [429]
    r = client.post("/v1/privacy/requests", json={"kind": "erasure"}, headers=buyer)
    assert r.status_code == 429
    assert int(r.headers["Retry-After"]) > 0
    assert r.headers["content-type"].startswith("application/problem+json")
    # Asking again while the first is on its way gives that same request.
    with deps.sessions() as session:
        assert len(list(session.execute(select(PrivacyRequest)).scalars())) == 1


# --------------------------------------------------------------------------- sealing


def test_what_complaints_publishes_carries_no_personal_data_in_clear(
    client: TestClient,
    deps: Deps,
    seed_order: Callable[..., str],
    outbox: Outbox,
    raw_outbox: Outbox,
) -> None:
    order = seed_order("PR20", phone=PHONE_A, buyer=BUYER_A)
    rec = open_case(deps, order, DESCRIPTION_A)
    service.post_message(deps, consumer_of(order), rec.id, MESSAGE_A)
    client.post("/v1/otp", json={"order_code": "PR20", "phone": PHONE_A})
    raw = raw_outbox()
    assert {e["type"] for e in raw} >= {"case.opened", "case.message_posted", "notification.send"}
    text_of_rows = json.dumps(raw, ensure_ascii=False)
    for secret in (
        "0912345678",
        "+84912345678",
        BUYER_A["name"],
        BUYER_A["email"],
        DESCRIPTION_A,
        MESSAGE_A,
    ):
        assert secret not in text_of_rows
    subject = subject_of_order(deps, order)
    for e in raw:
        assert e["dataschema"].endswith(":v2")
        assert e["data"]["subject_id"] == subject
        assert e["data"]["sealed"]["owner"] == "complaints"
    # Opened with complaints' keys, the same events carry what consumers need.
    opened = {e["type"]: e["data"] for e in outbox()}
    assert opened["case.opened"]["consumer"]["phone"] == "+84912345678"
    assert opened["case.opened"]["consumer"]["name"] == BUYER_A["name"]
    assert opened["notification.send"]["recipient"]["phone"] == "+84912345678"
    assert len(opened["notification.send"]["params"]["code"]) == 6


# --------------------------------------------------------------------------- erasure


def _scan_rows(deps: Deps) -> str:
    """Every row of every table, as text (bytes decoded as Latin-1)."""
    engine = deps.sessions.kw["bind"]
    chunks: list[str] = []
    with engine.connect() as conn:
        for table in inspect(conn).get_table_names():
            for row in conn.execute(text(f'SELECT * FROM "{table}"')):  # noqa: S608 - table names from the inspector
                for value in row:
                    if isinstance(value, bytes | memoryview):
                        chunks.append(bytes(value).decode("latin-1"))
                    else:
                        chunks.append(str(value))
    return "\n".join(chunks)


def _sqlite_file_bytes(deps: Deps) -> bytes:
    url = deps.settings.database_url
    path = Path(url.removeprefix("sqlite:///"))
    deps.sessions.kw["bind"].dispose()
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    content = path.read_bytes()
    wal = path.with_name(path.name + "-wal")
    if wal.exists():
        content += wal.read_bytes()
    return content


def test_erasure_erases_complaints_data_destroys_the_keys_and_completes_on_every_report(
    sign_in: SignIn,
    client: TestClient,
    deps: Deps,
    seed_order: Callable[..., str],
    outbox: Outbox,
    raw_outbox: Outbox,
    bearer: Callable[..., dict[str, str]],
) -> None:
    order_a = seed_order("PR30", phone=PHONE_A, buyer=BUYER_A)
    order_b = seed_order("PR31", phone=PHONE_B, buyer=BUYER_B)
    rec = open_case(deps, order_a, DESCRIPTION_A)
    service.post_message(deps, consumer_of(order_a), rec.id, MESSAGE_A)
    evidence = service.add_evidence(deps, consumer_of(order_a), rec.id, "photo-of-me.png", PNG)
    evidence_path = (
        Path(deps.settings.storage_dir) / evidence.storage_key[:2] / evidence.storage_key
    )
    assert evidence_path.exists()
    service.withdraw(deps, consumer_of(order_a), rec.id, "solved it with the shop myself")
    rec_b = open_case(deps, order_b, DESCRIPTION_B)
    records_before = service.platform_records(deps)
    subject = subject_of_order(deps, order_a)

    buyer = sign_in("PR30", PHONE_A)
    ack = ask(client, buyer, "erasure")
    assert desk.work_once(deps) == 1
    req = request_row(deps, ack["request_id"])
    assert req.status == "in_progress"
    assert req.reports["complaints"]["status"] == "completed"
    assert req.reports["complaints"]["counts"]["keys"] >= 1

    # Nothing of buyer A is left in clear, anywhere in the database; buyer B is untouched.
    dump = _scan_rows(deps)
    for secret in (
        "0912345678",
        "+84912345678",
        BUYER_A["name"],
        BUYER_A["email"],
        DESCRIPTION_A,
        MESSAGE_A,
        "photo-of-me",
        "solved it with the shop",
    ):
        assert secret not in dump, secret
    assert DESCRIPTION_B in dump
    assert not evidence_path.exists()
    with deps.sessions() as session:
        assert (
            session.execute(
                text(
                    "SELECT count(*) FROM subject_keys WHERE subject_id = :s AND substr(kid, 1, 2) <> 't_'"
                ),
                {"s": subject},
            ).scalar_one()
            == 0
        )
        assert session.execute(text("SELECT count(*) FROM otp_challenges")).scalar_one() == 0
        a = session.get(Order, order_a)
        assert a is not None
        assert a.subject_id is None
        assert a.buyer_phone_hash == ""
        assert a.status == "delivered"
        assert a.total_amount == 300000
        b = session.get(Order, order_b)
        assert b is not None
        assert deps.cipher.decrypt(b.buyer_name_enc) == BUYER_B["name"]
        case_a = session.get(CaseRecord, rec.id)
        assert case_a is not None
        assert case_a.status == "withdrawn"
        assert case_a.category == "damaged"
        assert session.get(CaseRecord, rec_b.id) is not None
    # Case statistics stay, without the person.
    assert service.platform_records(deps) == records_before
    # What complaints sealed for A can no longer be opened: the key is gone.
    opened = [
        e for e in outbox() if e["type"].startswith("case.") and e["data"].get("case_id") == rec.id
    ]
    assert opened
    assert all(not e["data"]["consumer"].get("phone") for e in opened)
    # The other services are told, keyed by the subject.
    (asked,) = [e for e in raw_outbox() if e["type"] == "privacy.erasure_requested"]
    assert asked["data"]["request_id"] == ack["request_id"]
    assert asked["data"]["subject_id"] == subject
    assert order_a in asked["data"]["order_ids"]
    assert rec.id in asked["data"]["case_ids"]
    assert order_b not in asked["data"]["order_ids"]

    # Complete only once gateway, mediation and notifications reported too.
    report(deps, ack["request_id"], subject, "gateway")
    report(deps, ack["request_id"], subject, "mediation")
    assert request_row(deps, ack["request_id"]).status == "in_progress"
    report(deps, ack["request_id"], subject, "notifications")
    done = request_row(deps, ack["request_id"])
    assert done.status == "completed"
    assert done.completed_at is not None
    view = client.get(f"/v1/privacy/requests/{ack['request_id']}", headers=bearer("admin")).json()
    assert view["status"] == "completed"
    assert set(view["services"]) == {"complaints", *SERVICES}
    # The order and its case still show, without the buyer.
    r = client.get("/v1/orders/PR30", params={"platform_id": "plat-a"}, headers=bearer("admin"))
    assert r.status_code == 200
    assert r.json()["buyer"] == {"name": None, "phone": None, "email": None}
    assert client.get("/v1/orders/PR30", headers=buyer).status_code == 200
    r = client.get(f"/v1/cases/{rec.id}", headers=bearer("admin"))
    assert r.status_code == 200
    assert r.json()["description"] == ""
    # The buyer's old token still reaches the answer.
    assert client.get(f"/v1/privacy/requests/{ack['request_id']}", headers=buyer).status_code == 200
    # Nor can the buyer sign in with that phone any more: no code is sent.
    sent = len(raw_outbox("notification.send"))
    assert client.post("/v1/otp", json={"order_code": "PR30", "phone": PHONE_A}).status_code == 202
    assert len(raw_outbox("notification.send")) == sent

    if deps.settings.database_url.startswith("sqlite"):
        content = _sqlite_file_bytes(deps)
        for secret in (BUYER_A["name"], BUYER_A["email"], DESCRIPTION_A, MESSAGE_A, "0912345678"):
            assert secret.encode() not in content, secret
        assert DESCRIPTION_B.encode() in content


def test_an_erasure_waits_for_an_open_case_and_goes_ahead_when_it_closes(
    sign_in: SignIn,
    client: TestClient,
    deps: Deps,
    seed_order: Callable[..., str],
    outbox: Outbox,
) -> None:
    order = seed_order("PR40", phone=PHONE_A, buyer=BUYER_A)
    rec = open_case(deps, order, DESCRIPTION_A)
    buyer = sign_in("PR40", PHONE_A)
    ack = ask(client, buyer, "erasure")
    desk.work_once(deps)
    view = client.get(f"/v1/privacy/requests/{ack['request_id']}", headers=buyer).json()
    assert view["status"] == "deferred"
    assert view["reason"] == "open case"
    assert utcnow().fromisoformat(view["until"]) == rec.merchant_response_due_at
    assert DESCRIPTION_A in _scan_rows(deps)  # nothing erased while the case runs
    assert ask(client, buyer, "erasure")["request_id"] == ack["request_id"]  # already waiting
    assert not [e for e in outbox() if e["type"] == "privacy.erasure_requested"]
    desk.work_once(deps)
    assert request_row(deps, ack["request_id"]).status == "deferred"

    service.withdraw(deps, consumer_of(order), rec.id, None)  # the last open case closes
    assert request_row(deps, ack["request_id"]).status == "in_progress"
    assert desk.work_once(deps) == 1
    assert DESCRIPTION_A not in _scan_rows(deps)
    subject = request_row(deps, ack["request_id"]).subject_id
    assert subject
    for svc in SERVICES:
        report(deps, ack["request_id"], subject, svc)
    assert request_row(deps, ack["request_id"]).status == "completed"


def test_a_service_that_must_keep_a_record_defers_the_erasure_with_its_reason(
    sign_in: SignIn, client: TestClient, deps: Deps, seed_order: Callable[..., str], outbox: Outbox
) -> None:
    seed_order("PR45", phone=PHONE_A)
    ack = ask(client, sign_in("PR45", PHONE_A), "erasure")
    desk.work_once(deps)
    subject = request_row(deps, ack["request_id"]).subject_id
    until = utcnow() + timedelta(days=365)
    report(deps, ack["request_id"], subject, "gateway")
    report(
        deps,
        ack["request_id"],
        subject,
        "mediation",
        "deferred",
        reason="settlement record",
        until=until,
    )
    report(deps, ack["request_id"], subject, "notifications")
    req = request_row(deps, ack["request_id"])
    assert (req.status, req.reason, req.until) == ("deferred", "settlement record", until)


def test_a_marketplace_redaction_erases_only_that_platforms_copies(
    deps: Deps, seed_order: Callable[..., str]
) -> None:
    here = seed_order("PR50", phone=PHONE_A, buyer=BUYER_A)
    elsewhere = seed_order("PR51", platform_id="plat-b", phone=PHONE_A, buyer=BUYER_A)
    # A case elsewhere (closed) gave the buyer a data key.
    rec = open_case(deps, elsewhere, DESCRIPTION_A)
    service.withdraw(deps, consumer_of(elsewhere), rec.id, None)
    asked = RedactionRequestedV1(
        platform_id="plat-a",
        kind="erasure",
        subject_id=None,
        order_ids=["PR50"],
        source_delivery_id="dlv-1",
    )
    event = build_event(
        source="test", event_type="privacy.redaction_requested", subject="plat-a", data=asked
    )
    for _ in range(2):  # the same delivery twice makes one request
        with deps.sessions.begin() as session:
            on_redaction_requested(session, event, deps)
    subject = subject_of_order(deps, elsewhere)
    with deps.sessions() as session:
        (req,) = session.execute(select(PrivacyRequest)).scalars()
        assert (req.source, req.platform_id, req.kind) == ("platform", "plat-a", "erasure")
        assert req.subject_id == subject
    desk.work_once(deps)
    with deps.sessions() as session:
        a, b = session.get(Order, here), session.get(Order, elsewhere)
        assert a is not None
        assert a.subject_id is None
        assert b is not None
        assert deps.cipher.decrypt(b.buyer_name_enc) == BUYER_A["name"]
        # The buyer still has orders elsewhere: the key stays, the case there too.
        assert (
            session.execute(
                text("SELECT count(*) FROM subject_keys WHERE substr(kid, 1, 2) <> 't_'")
            ).scalar_one()
            >= 1
        )
        kept = session.get(CaseRecord, rec.id)
        assert kept is not None
        assert kept.description == DESCRIPTION_A
    req = request_row(deps, req.id)
    assert req.reports["complaints"]["counts"]["keys"] == 0
    assert req.reports["complaints"]["counts"]["orders"] == 1
    assert req.order_ids == [here]


# --------------------------------------------------------------------------- access


class _FakeGateway(BaseHTTPRequestHandler):
    seen: ClassVar[list[tuple[str, dict[str, Any]]]] = []

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["content-length"])))
        self.seen.append((self.headers.get("authorization", ""), body))
        doc = json.dumps(
            {
                "service": "gateway",
                "subject_id": body["subject_id"],
                "generated_at": utcnow().isoformat(),
                "records": {"inbound_deliveries": [{"order_id": o} for o in body["order_ids"]]},
            }
        ).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(doc)))
        self.end_headers()
        self.wfile.write(doc)

    def log_message(self, *args: Any) -> None:
        return


@pytest.fixture
def gateway(deps: Deps) -> Iterator[type[_FakeGateway]]:
    """A real HTTP server standing in for the gateway's export endpoint."""
    handler = type("Gateway", (_FakeGateway,), {"seen": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    deps.settings.privacy_services = "gateway"
    deps.settings.service_urls = f"gateway=http://127.0.0.1:{server.server_address[1]}"
    yield handler
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def test_an_access_export_holds_every_order_and_case_of_the_buyer_and_nothing_of_another(
    sign_in: SignIn,
    client: TestClient,
    deps: Deps,
    seed_order: Callable[..., str],
    outbox: Outbox,
    gateway: type[_FakeGateway],
    bearer: Callable[..., dict[str, str]],
) -> None:
    mine = [
        seed_order("PR60", phone=PHONE_A, buyer=BUYER_A),
        seed_order("PR61", platform_id="plat-b", phone=PHONE_A, buyer=BUYER_A),
    ]
    theirs = seed_order("PR62", phone=PHONE_B, buyer=BUYER_B)
    cases = [open_case(deps, o, DESCRIPTION_A).id for o in mine]
    open_case(deps, theirs, DESCRIPTION_B)
    buyer = sign_in("PR60", PHONE_A)
    ack = ask(client, buyer, "access")
    assert desk.work_once(deps) == 1
    view = client.get(f"/v1/privacy/requests/{ack['request_id']}", headers=buyer).json()
    assert view["status"] == "completed"
    assert view["export_url"] == f"/v1/privacy/requests/{ack['request_id']}/export"
    r = client.get(view["export_url"], headers=buyer)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/json")
    assert "attachment" in r.headers["content-disposition"]
    doc = r.json()
    own = doc["services"]["complaints"]["records"]
    assert sorted(o["order_id"] for o in own["orders"]) == sorted(mine)
    assert sorted(c["case_id"] for c in own["cases"]) == sorted(cases)
    assert {o["buyer"]["name"] for o in own["orders"]} == {BUYER_A["name"]}
    assert all(c["description"] == DESCRIPTION_A for c in own["cases"])
    assert doc["services"]["gateway"]["records"]["inbound_deliveries"]
    whole = r.text
    for other in (theirs, BUYER_B["name"], BUYER_B["email"], DESCRIPTION_B, "0987654321"):
        assert other not in whole
    # The gateway was asked with a service token, for this subject and its orders only.
    ((auth, body),) = gateway.seen
    assert auth.startswith("Bearer ")
    assert sorted(body["order_ids"]) == sorted(mine)
    # Stored encrypted; for this buyer only; gone once expired.
    with deps.sessions() as session:
        stored = session.get(PrivacyExport, ack["request_id"])
        assert stored is not None
        assert BUYER_A["name"].encode() not in stored.export_enc
    other = sign_in("PR62", PHONE_B)
    assert client.get(view["export_url"], headers=other).status_code == 404
    assert client.get(view["export_url"], headers=bearer("admin")).status_code == 404
    with deps.sessions.begin() as session:
        stored = session.get(PrivacyExport, ack["request_id"])
        assert stored is not None
        stored.expires_at = utcnow() - timedelta(seconds=1)
    assert client.get(view["export_url"], headers=buyer).status_code == 410


def test_an_access_request_waits_for_a_service_that_does_not_answer(
    sign_in: SignIn, client: TestClient, deps: Deps, seed_order: Callable[..., str], outbox: Outbox
) -> None:
    seed_order("PR70", phone=PHONE_A)
    deps.settings.privacy_services = "gateway"
    deps.settings.service_urls = "gateway=http://127.0.0.1:9"  # nothing listens there
    buyer = sign_in("PR70", PHONE_A)
    ack = ask(client, buyer, "access")
    desk.work_once(deps)
    r = client.get(f"/v1/privacy/requests/{ack['request_id']}/export", headers=buyer)
    assert r.status_code == 409
    assert r.json()["request_status"] == "in_progress"
    req = request_row(deps, ack["request_id"])
    assert req.status == "in_progress"
    assert req.attempts == 1
    assert req.last_error
    assert "gateway" in req.last_error
    assert req.next_attempt_at is not None
    assert req.next_attempt_at > utcnow()
    assert desk.work_once(deps) == 0  # not before its next attempt
    with deps.sessions() as session:
        assert session.get(PrivacyExport, ack["request_id"]) is None


# --------------------------------------------------------------------------- service endpoints


def test_other_services_get_complaints_part_of_an_export_and_its_keys_with_a_service_token(
    client: TestClient,
    deps: Deps,
    seed_order: Callable[..., str],
    bearer: Callable[..., dict[str, str]],
    raw_outbox: Outbox,
) -> None:
    mine = seed_order("PR80", phone=PHONE_A, buyer=BUYER_A)
    theirs = seed_order("PR81", phone=PHONE_B, buyer=BUYER_B)
    rec = open_case(deps, mine, DESCRIPTION_A)
    open_case(deps, theirs, DESCRIPTION_B)
    subject = subject_of_order(deps, mine)
    svc = {"Authorization": f"Bearer {ServiceTokens(deps.settings, 'mediation').token()}"}
    body = {"subject_id": subject, "order_ids": [mine], "case_ids": [rec.id]}
    r = client.post("/internal/v1/privacy/export", json=body, headers=svc)
    assert r.status_code == 200
    part = r.json()
    assert (part["service"], part["subject_id"]) == ("complaints", subject)
    assert [o["order_id"] for o in part["records"]["orders"]] == [mine]
    assert [c["case_id"] for c in part["records"]["cases"]] == [rec.id]
    assert BUYER_B["name"] not in r.text
    assert DESCRIPTION_B not in r.text
    assert (
        client.post("/internal/v1/privacy/export", json=body, headers=bearer("admin")).status_code
        == 403
    )
    assert client.post("/internal/v1/privacy/export", json=body).status_code == 401
    # The key of what complaints sealed for the buyer, for the services that consume it.
    (opened,) = [e for e in raw_outbox() if e["type"] == "case.opened" and e["subject"] == rec.id]
    kid = opened["data"]["sealed"]["kid"]
    r = client.post("/internal/v1/subject-keys", json={"kids": [kid]}, headers=svc)
    assert r.status_code == 200
    assert set(r.json()["keys"]) == {kid}
    assert (
        client.post(
            "/internal/v1/subject-keys", json={"kids": [kid]}, headers=bearer("admin")
        ).status_code
        == 403
    )


def test_a_marketplace_redaction_for_a_buyer_nobody_knows_completes_at_once(deps: Deps) -> None:
    asked = RedactionRequestedV1(platform_id="plat-a", kind="erasure", order_ids=[])
    event = build_event(
        source="test", event_type="privacy.redaction_requested", subject="plat-a", data=asked
    )
    with deps.sessions.begin() as session:
        on_redaction_requested(session, event, deps)
    assert desk.work_once(deps) == 1
    with deps.sessions() as session:
        (req,) = session.execute(select(PrivacyRequest)).scalars()
        assert req.status == "completed"
        assert set(req.reports) == {"complaints", *SERVICES}
    assert desk.work_once(deps) == 0


def test_an_access_request_another_worker_holds_is_left_alone(
    client: TestClient, deps: Deps, seed_order: Callable[..., str], sign_in: SignIn
) -> None:
    seed_order("PR90", phone=PHONE_A)
    deps.settings.privacy_services = ""
    ack = ask(client, sign_in("PR90", PHONE_A), "access")
    with deps.sessions.begin() as session:
        req = session.get(PrivacyRequest, ack["request_id"])
        assert req is not None
        req.next_attempt_at = utcnow() + timedelta(minutes=1)  # another replica's lease
    desk.process(deps, ack["request_id"])
    with deps.sessions() as session:
        assert session.get(PrivacyExport, ack["request_id"]) is None
    with deps.sessions.begin() as session:
        req = session.get(PrivacyRequest, ack["request_id"])
        assert req is not None
        req.next_attempt_at = None  # the lease lapsed
    assert desk.work_once(deps) == 1
    assert request_row(deps, ack["request_id"]).status == "completed"
    assert request_row(deps, ack["request_id"]).next_attempt_at is None


def test_a_marketplace_data_request_exports_only_that_platforms_orders(
    deps: Deps, seed_order: Callable[..., str]
) -> None:
    here = seed_order("PR95", phone=PHONE_A, buyer=BUYER_A)
    elsewhere = seed_order("PR96", platform_id="plat-b", phone=PHONE_A, buyer=BUYER_A)
    deps.settings.privacy_services = ""
    asked = RedactionRequestedV1(
        platform_id="plat-a",
        kind="access",
        subject_id=subject_of_order(deps, here),
        source_delivery_id="dlv-9",
    )
    event = build_event(
        source="test", event_type="privacy.redaction_requested", subject="plat-a", data=asked
    )
    with deps.sessions.begin() as session:
        on_redaction_requested(session, event, deps)
    assert desk.work_once(deps) == 1
    with deps.sessions() as session:
        (req,) = session.execute(select(PrivacyRequest)).scalars()
        assert (req.status, req.source, req.platform_id) == ("completed", "platform", "plat-a")
        stored = session.get(PrivacyExport, req.id)
        assert stored is not None
        doc = json.loads(deps.cipher.decrypt_bytes(stored.export_enc))
    orders = doc["services"]["complaints"]["records"]["orders"]
    assert [o["order_id"] for o in orders] == [here]
    assert elsewhere not in json.dumps(doc)


def test_metrics_show_requests_by_status_and_the_overdue_ones(
    client: TestClient, deps: Deps
) -> None:
    with deps.sessions.begin() as session:
        for days_ago in (1, 40):
            new_request(
                session,
                kind="access",
                subject_id=f"sp_{days_ago:032x}",
                source="consumer",
                order_ids=[],
                case_ids=[],
                calendar=deps.calendar,
                answer_working_days=15,
                now=utcnow() - timedelta(days=days_ago),
            )
    text_ = client.get("/metrics").text
    assert 'odr_privacy_requests{status="received"} 2.0' in text_
    assert 'odr_privacy_requests{status="completed"} 0.0' in text_
    assert "odr_privacy_requests_overdue 1.0" in text_
