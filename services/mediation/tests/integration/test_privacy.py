"""Mediation's personal data: sealed events, erasure, deferral, access export, neutrals who left."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from mediation_testkit import (
    admin_headers,
    case_event,
    local_opener,
    login,
    make_settings,
    neutral_body,
    outbox,
    outbox_rows,
)
from sqlalchemy import select, text
from sqlalchemy.orm import Session, sessionmaker

from mediation import privacy, service
from mediation.consumer import handlers
from mediation.models import Base, Decision, MediationCase, Neutral, PendingErasure, Proposal
from mediation.settings import MediationSettings
from odr_shared.auth import TokenService
from odr_shared.db import make_engine, utcnow
from odr_shared.events import (
    MEDIATION_TOPIC,
    PRIVACY_TOPIC,
    CaseStatus,
    Contact,
    ErasureRequestedV1,
    build_event,
    parse_event,
)
from odr_shared.logs import mask_email, mask_name, mask_phone
from odr_shared.privacy import subject_for_phone

BUYER_A = {"name": "Nguyen Van An", "phone": "+84912345678", "email": "an.nguyen@example.vn"}
BUYER_B = {"name": "Le Thi Binh", "phone": "+84933444555", "email": "binh.le@example.vn"}


def _texts(tag: str) -> dict[str, str]:
    """The free text one buyer's case accumulates (tag makes each buyer's unmistakable)."""
    return {
        "reason": f"Shop {tag} never shipped the parcel to 12 Hang Bac",
        "terms": f"Refund {tag} 300000 by bank transfer",
        "message": f"Please send the receipt, {tag}",
        "order_code": f"DH-{tag}",
    }


def _take_case(
    sessions: sessionmaker[Session],
    settings: MediationSettings,
    buyer: dict[str, str] | None,
    tag: str,
    **kw: Any,
) -> str:
    t = _texts(tag)
    consumer = Contact(**buyer) if buyer else Contact()
    data = case_event(
        consumer=consumer,
        reason=t["reason"],
        order_code=t["order_code"],
        order_id=f"plt_1:{t['order_code']}",
        **kw,
    )
    with sessions() as session, session.begin():
        service.take_escalated_case(session, data, utcnow(), settings)
    return data.case_id


def _mediate(client: TestClient, headers: dict[str, str], case_id: str, tag: str) -> None:
    t = _texts(tag)
    r = client.post(
        f"/v1/cases/{case_id}/proposals",
        headers=headers,
        json={"outcome": "full_refund", "amount": 300_000, "terms": t["terms"]},
    )
    assert r.status_code == 201, r.text
    r = client.post(f"/v1/cases/{case_id}/messages", headers=headers, json={"body": t["message"]})
    assert r.status_code == 201, r.text


def _close(sessions: sessionmaker[Session], settings: MediationSettings, case_id: str) -> None:
    data = case_event(case_id=case_id, status=CaseStatus.CLOSED, consumer=Contact())
    with sessions() as session, session.begin():
        service.case_left(session, data, "case.closed", settings)


def _reports(sessions: sessionmaker[Session], request_id: str) -> list[dict[str, Any]]:
    """The privacy.erasure_reported mediation queued for one request, oldest first."""
    out = []
    for payload in outbox_rows(sessions, PRIVACY_TOPIC):
        event = parse_event(payload)
        data = event.data.model_dump(mode="json")
        if event.type == "privacy.erasure_reported" and data["request_id"] == request_id:
            out.append(data)
    return out


def _request_erasure(
    sessions: sessionmaker[Session],
    settings: MediationSettings,
    subject_id: str,
    case_ids: list[str] | None = None,
    request_id: str | None = None,
) -> dict[str, Any]:
    """privacy.erasure_requested through mediation's handler, as the worker applies it;
    returns the privacy.erasure_reported it queued."""
    request = ErasureRequestedV1(
        request_id=request_id or f"pr_{uuid.uuid4().hex[:10]}",
        subject_id=subject_id,
        case_ids=case_ids or [],
        requested_at=utcnow(),
    )
    raw = build_event(
        source="odr/complaints",
        event_type="privacy.erasure_requested",
        subject=subject_id,
        data=request,
    ).to_json_bytes()
    with sessions() as session, session.begin():
        handlers(settings)["privacy.erasure_requested"](session, parse_event(raw))
    return _reports(sessions, request.request_id)[-1]


def _scan(sessions: sessionmaker[Session], needles: list[str]) -> list[str]:
    """Every (table.column) of mediation's database where one of the strings is found in clear."""
    found = []
    with sessions() as session:
        for table in Base.metadata.sorted_tables:
            for row in session.execute(select(table)).mappings():
                for column, value in row.items():
                    if value is None:
                        continue
                    blob = (
                        bytes(value).decode("utf-8", "replace")
                        if isinstance(value, bytes | bytearray | memoryview)
                        else str(value)
                    )
                    for needle in needles:
                        if needle in blob or json.dumps(needle)[1:-1] in blob:
                            found.append(f"{table.name}.{column}: {needle}")
    return found


def _needles(buyer: dict[str, str], tag: str) -> list[str]:
    return [
        *_texts(tag).values(),
        buyer["name"],
        buyer["phone"],
        buyer["email"],
        mask_name(buyer["name"]),
        mask_phone(buyer["phone"]),
        mask_email(buyer["email"]),
    ]


def _service_headers(settings: MediationSettings) -> dict[str, str]:
    token = TokenService(settings).issue(
        role="service", subject="complaints", ttl=timedelta(minutes=5)
    )
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def mediator(client: TestClient, settings: MediationSettings) -> dict[str, Any]:
    body = neutral_body(phone="0981112233", max_active_cases=10)
    r = client.post("/v1/neutrals", json=body, headers=admin_headers(settings))
    assert r.status_code == 201, r.text
    return {**body, "neutral_id": r.json()["neutral_id"], "headers": login(client, body["email"])}


def test_mediation_events_carry_no_personal_data_in_clear_and_open_with_the_key(
    client: TestClient, settings: MediationSettings, sessions, mediator: dict[str, Any]
) -> None:
    case_id = _take_case(sessions, settings, BUYER_A, "alpha")
    _mediate(client, mediator["headers"], case_id, "alpha")
    r = client.post(
        f"/v1/cases/{case_id}/escalate", headers=mediator["headers"], json={"reason": "No deal"}
    )
    assert r.status_code == 200

    raw = outbox_rows(sessions, MEDIATION_TOPIC)
    assert len(raw) >= 4
    clear = b"\n".join(raw).decode()
    for needle in (
        *_texts("alpha").values(),
        "No deal",
        mediator["name"],
        mediator["email"],
        mediator["phone"],
        "0981112233",
    ):
        assert needle not in clear, needle
        assert json.dumps(needle)[1:-1] not in clear, needle
    for payload in raw:
        event = parse_event(payload)
        assert event.dataschema is not None
        assert event.dataschema.endswith(":v2")

    buyer = subject_for_phone(BUYER_A["phone"], settings)
    neutral = subject_for_phone(mediator["phone"], settings)
    subjects = {parse_event(p).type: parse_event(p).data.model_dump()["subject_id"] for p in raw}
    # The neutral's contact travels under the neutral's key; the case's texts under the buyer's.
    assert subjects["case.assigned"] == neutral
    assert subjects["mediation.proposal_made"] == buyer
    assert subjects["mediation.message_posted"] == buyer
    assert subjects["case.referred_to_arbitration"] == buyer

    opened = dict(outbox(sessions))
    assert opened["case.assigned"]["neutral_contact"]["email"] == mediator["email"]
    assert opened["case.assigned"]["neutral_contact"]["phone"] == mediator["phone"]
    assert opened["mediation.proposal_made"]["proposal"]["terms"] == _texts("alpha")["terms"]
    assert opened["mediation.message_posted"]["details"]["text"] == _texts("alpha")["message"]
    assert opened["case.referred_to_arbitration"]["reason"] == "No deal"
    with sessions() as session:
        assert session.get(MediationCase, case_id).subject_id == buyer  # type: ignore[union-attr]
    # Mediation sends no notifications.commands of its own: nothing else left its outbox.
    assert outbox_rows(sessions, "notifications.commands") == []


def test_erasure_of_a_closed_case_anonymises_it_destroys_the_keys_and_spares_another_buyer(
    client: TestClient, settings: MediationSettings, sessions, mediator: dict[str, Any]
) -> None:
    a = _take_case(sessions, settings, BUYER_A, "alpha")
    b = _take_case(sessions, settings, BUYER_B, "bravo")
    for case_id, tag in ((a, "alpha"), (b, "bravo")):
        _mediate(client, mediator["headers"], case_id, tag)
        _close(sessions, settings, case_id)
    subject_a = subject_for_phone(BUYER_A["phone"], settings)
    kids_a = {
        parse_event(p).data.model_dump()["sealed"]["kid"]
        for p in outbox_rows(sessions, MEDIATION_TOPIC)
        if parse_event(p).data.model_dump()["subject_id"] == subject_a
    }
    assert kids_a
    # Before: both buyers' masked contact and texts are in mediation's database.
    assert _scan(sessions, _needles(BUYER_A, "alpha"))
    assert _scan(sessions, _needles(BUYER_B, "bravo"))

    report = _request_erasure(sessions, settings, subject_a)

    assert report["service"] == "mediation"
    assert report["status"] == "completed", report
    assert report["subject_id"] == subject_a
    assert report["counts"]["cases"] == 1
    assert report["counts"]["proposals"] == 1
    assert report["counts"]["subject_keys"] >= 1
    assert _scan(sessions, _needles(BUYER_A, "alpha")) == []
    # Buyer B's case is untouched.
    assert len(_scan(sessions, _needles(BUYER_B, "bravo"))) >= 6
    with sessions() as session:
        kept = session.get(MediationCase, a)
        assert kept is not None
        # Statistics stay: stage, amounts, category, platform, who handled it.
        assert (kept.stage, kept.claimed_amount, kept.category) == (
            "closed",
            300_000,
            "not_delivered",
        )
        assert kept.mediator_id == mediator["neutral_id"]
        assert kept.subject_id is None
        proposal = session.execute(select(Proposal).where(Proposal.case_id == a)).scalar_one()
        assert (proposal.outcome, proposal.amount) == ("full_refund", 300_000)
        assert privacy.sealer_of(session).store.keys_by_id(session, kids_a) == {}
        assert not privacy.sealer_of(session).store.holds(session, subject_a)
    # The sealed copies that already left (outbox rows, Kafka) open no more.
    opened = [(t, d) for t, d in outbox(sessions) if t == "mediation.proposal_made"]
    by_case = {d["case_id"]: d for _t, d in opened}
    assert by_case[a]["proposal"] is None
    assert by_case[b]["proposal"]["terms"] == _texts("bravo")["terms"]

    # Asked again (a re-delivery, a second request): nothing left to do, still completed.
    again = _request_erasure(sessions, settings, subject_a, case_ids=[a])
    assert again["status"] == "completed"
    assert again["counts"]["proposals"] == 0


def test_erasure_of_an_open_case_is_deferred_with_reason_and_until(
    client: TestClient, settings: MediationSettings, sessions, mediator: dict[str, Any]
) -> None:
    open_case = _take_case(sessions, settings, BUYER_A, "alpha")
    _mediate(client, mediator["headers"], open_case, "alpha")
    closed = _take_case(sessions, settings, BUYER_A, "closedone")
    _close(sessions, settings, closed)
    subject_a = subject_for_phone(BUYER_A["phone"], settings)

    before = utcnow()
    report = _request_erasure(sessions, settings, subject_a)

    assert report["status"] == "deferred"
    assert open_case in report["reason"]
    assert "still in mediation" in report["reason"]
    until = _report(report).until
    assert until is not None
    assert before + timedelta(days=29) < until < before + timedelta(days=31)
    assert report["counts"]["deferred_cases"] == 1
    # The closed case is erased now; the open one keeps everything its neutral works with.
    assert report["counts"]["cases"] == 1
    assert _scan(sessions, [_texts("closedone")["reason"]]) == []
    assert len(_scan(sessions, _needles(BUYER_A, "alpha"))) >= 5
    with sessions() as session:
        # The open case's events must still open for complaints and notifications.
        assert privacy.sealer_of(session).store.holds(session, subject_a)
    assert (
        client.get(f"/v1/cases/{open_case}", headers=mediator["headers"]).json()["proposals"][0][
            "terms"
        ]
        == _texts("alpha")["terms"]
    )

    # When complaints closes the case, the deferred request completes without being asked again.
    _close(sessions, settings, open_case)
    reports = _reports(sessions, report["request_id"])
    assert [r["status"] for r in reports] == ["deferred", "completed"]
    assert reports[1]["counts"]["cases"] == 1  # the other was erased at once
    assert reports[1]["counts"]["proposals"] == 1
    assert _scan(sessions, _needles(BUYER_A, "alpha")) == []
    with sessions() as session:
        assert not privacy.sealer_of(session).store.holds(session, subject_a)
        assert session.execute(select(PendingErasure)).first() is None
    # A request sent again after the close finds nothing left to do.
    again = _request_erasure(sessions, settings, subject_a, request_id=report["request_id"])
    assert again["status"] == "completed"
    assert again["counts"]["proposals"] == 0


def test_a_deferred_erasure_waits_for_every_open_case_of_the_subject(
    client: TestClient, settings: MediationSettings, sessions, mediator: dict[str, Any]
) -> None:
    first = _take_case(sessions, settings, BUYER_A, "first")
    second = _take_case(sessions, settings, BUYER_A, "second")
    report = _request_erasure(sessions, settings, subject_for_phone(BUYER_A["phone"], settings))
    assert report["counts"]["deferred_cases"] == 2
    _close(sessions, settings, first)
    # One case is still open: the first one is erased, nothing more is reported yet.
    assert [r["status"] for r in _reports(sessions, report["request_id"])] == ["deferred"]
    assert _scan(sessions, [_texts("first")["reason"]]) == []
    assert _scan(sessions, [_texts("second")["reason"]]) != []
    _close(sessions, settings, second)
    assert [r["status"] for r in _reports(sessions, report["request_id"])] == [
        "deferred",
        "completed",
    ]
    assert _scan(sessions, [_texts("second")["reason"]]) == []


def _report(data: dict[str, Any]) -> Any:
    from odr_shared.events import ErasureReportedV1

    return ErasureReportedV1.model_validate(data)


def _decide(
    client: TestClient, settings: MediationSettings, sessions, case_id: str, reasons: str
) -> None:
    arb = neutral_body(roles=["arbitrator"], phone="0977000111")
    assert client.post("/v1/neutrals", json=arb, headers=admin_headers(settings)).status_code == 201
    with sessions() as session:
        mediator_id = session.get(MediationCase, case_id).mediator_id  # type: ignore[union-attr]
        email = session.get(Neutral, mediator_id).email  # type: ignore[union-attr]
    m = login(client, email)
    assert (
        client.post(
            f"/v1/cases/{case_id}/escalate", headers=m, json={"reason": "no agreement"}
        ).status_code
        == 200
    )
    d = client.post(
        f"/v1/cases/{case_id}/decision",
        headers=login(client, arb["email"]),
        json={"outcome": "full_refund", "amount": 300_000, "reasons": reasons},
    )
    assert d.status_code == 201, d.text


def test_an_arbitral_award_is_kept_until_its_enforcement_period_ends(
    client: TestClient, settings: MediationSettings, sessions, mediator: dict[str, Any]
) -> None:
    case_id = _take_case(sessions, settings, BUYER_A, "alpha")
    _mediate(client, mediator["headers"], case_id, "alpha")
    _decide(client, settings, sessions, case_id, "Parcel of An never arrived; refund in full")
    subject_a = subject_for_phone(BUYER_A["phone"], settings)

    report = _request_erasure(sessions, settings, subject_a)

    assert report["status"] == "deferred"
    assert "arbitral award kept" in report["reason"]
    assert report["counts"]["awards_kept"] == 1
    with sessions() as session:
        decision = session.get(Decision, case_id)
        assert decision is not None
        assert decision.reasons == "Parcel of An never arrived; refund in full"
        until = _report(report).until
        assert until is not None
        assert abs((until - decision.decided_at) - timedelta(days=1825)) < timedelta(seconds=1)
        # Everything else of the case is gone, and every sealed copy with the keys.
        assert not privacy.sealer_of(session).store.holds(session, subject_a)
    assert _scan(sessions, _needles(BUYER_A, "alpha")) == []
    decided = [d for t, d in outbox(sessions) if t == "arbitration.decided"]
    assert decided[0]["decision"] is None

    # Past the award's retention a later request erases its reasons too.
    later = make_settings(settings.database_url, retention_arbitration_award_days=0)
    report = _request_erasure(sessions, later, subject_a, case_ids=[case_id])
    assert report["status"] == "completed", report
    assert report["counts"]["decisions"] == 1
    assert _scan(sessions, ["Parcel of An never arrived"]) == []
    with sessions() as session:
        decision = session.get(Decision, case_id)
        assert decision is not None
        assert decision.outcome == "full_refund"


def test_the_export_holds_the_subjects_cases_and_nothing_of_anyone_else(
    client: TestClient, settings: MediationSettings, sessions, mediator: dict[str, Any]
) -> None:
    a1 = _take_case(sessions, settings, BUYER_A, "alpha")
    _mediate(client, mediator["headers"], a1, "alpha")
    a2 = _take_case(sessions, settings, BUYER_A, "alpha2")
    _close(sessions, settings, a2)
    # An old case whose event named no phone: complaints lists it by its id.
    a3 = _take_case(sessions, settings, None, "alpha3")
    b = _take_case(sessions, settings, BUYER_B, "bravo")
    _mediate(client, mediator["headers"], b, "bravo")
    subject_a = subject_for_phone(BUYER_A["phone"], settings)
    body = {"subject_id": subject_a, "order_ids": [], "case_ids": [a3, "case_unknown"]}

    assert client.post("/internal/v1/privacy/export", json=body).status_code == 401
    assert (
        client.post(
            "/internal/v1/privacy/export", json=body, headers=admin_headers(settings)
        ).status_code
        == 403
    )
    r = client.post("/internal/v1/privacy/export", json=body, headers=_service_headers(settings))
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["service"] == "mediation"
    assert out["subject_id"] == subject_a
    records = out["records"]
    assert sorted(c["case_id"] for c in records["cases"]) == sorted([a1, a2, a3])
    a1_case = next(c for c in records["cases"] if c["case_id"] == a1)
    assert a1_case["consumer"]["phone"] == mask_phone(BUYER_A["phone"])
    assert [p["terms"] for p in records["proposals"]] == [_texts("alpha")["terms"]]
    summaries = " ".join(t["summary"] for t in records["timeline"])
    assert _texts("alpha")["message"] in summaries
    assert _texts("alpha3")["reason"] in summaries
    dump = json.dumps(out, ensure_ascii=False)
    for needle in [*_needles(BUYER_B, "bravo"), b, mediator["name"], mediator["email"]]:
        assert needle not in dump, needle
    # A case listed by id but recorded for another buyer is not theirs to see.
    body["case_ids"] = [b]
    r = client.post("/internal/v1/privacy/export", json=body, headers=_service_headers(settings))
    assert b not in r.text
    assert records["neutral_profiles"] == []

    # A neutral is a subject too, by their phone: they get their profile, and no case's data.
    as_neutral = {"subject_id": subject_for_phone(mediator["phone"], settings)}
    r = client.post(
        "/internal/v1/privacy/export", json=as_neutral, headers=_service_headers(settings)
    )
    assert r.status_code == 200, r.text
    profiles = r.json()["records"]["neutral_profiles"]
    assert [(p["neutral_id"], p["email"], p["assignments"]) for p in profiles] == [
        (mediator["neutral_id"], mediator["email"], 4)
    ]
    assert r.json()["records"]["cases"] == []
    assert "password" not in r.text


def test_a_neutral_who_left_is_erased_and_keeps_their_statistics(
    client: TestClient, settings: MediationSettings, sessions, mediator: dict[str, Any]
) -> None:
    case_id = _take_case(sessions, settings, BUYER_A, "alpha")
    url = f"/v1/neutrals/{mediator['neutral_id']}/personal-data"
    assert client.delete(url, headers=mediator["headers"]).status_code == 403
    busy = client.delete(url, headers=admin_headers(settings))
    assert busy.status_code == 409
    _close(sessions, settings, case_id)

    r = client.delete(url, headers=admin_headers(settings))

    assert r.status_code == 200, r.text
    assert r.json()["counts"]["subject_keys"] >= 1
    assert _scan(sessions, [mediator["name"], mediator["email"], mediator["phone"]]) == []
    # Their contact in case.assigned no longer opens; the assignment itself stays.
    assigned = [d for t, d in outbox(sessions) if t == "case.assigned"]
    assert assigned[0]["neutral_contact"] is None
    assert assigned[0]["neutral_id"] == mediator["neutral_id"]
    with sessions() as session:
        assert session.get(MediationCase, case_id).mediator_id == mediator["neutral_id"]  # type: ignore[union-attr]
    loads = client.get("/v1/neutrals", headers=admin_headers(settings)).json()
    erased = next(n for n in loads if n["neutral_id"] == mediator["neutral_id"])
    assert erased["on_leave"] is True


def test_handlers_work_on_sealed_events_whose_personal_fields_cannot_be_opened(
    client: TestClient, settings: MediationSettings, sessions, mediator: dict[str, Any]
) -> None:
    """A cases.events v2 whose key is gone (the buyer was erased) still takes the case in."""
    subject = subject_for_phone(BUYER_A["phone"], settings)
    data = case_event(consumer=Contact(**BUYER_A), reason="secret reason", subject_id=subject)
    event = build_event(
        source="odr/complaints", event_type="case.escalated", subject=data.case_id, data=data
    )
    opener = local_opener(sessions)
    with sessions() as session, session.begin():
        sealer = privacy.sealer_of(session)
        sealed = sealer.seal(session, event, subject)
    with sessions() as session, session.begin():
        sealer.store.destroy(session, subject)
    opened = opener.open(parse_event(sealed.to_json_bytes()))
    assert opened is not None
    table = handlers(settings)
    with sessions() as session, session.begin():
        table["case.escalated"](session, opened)
    with sessions() as session:
        case = session.get(MediationCase, data.case_id)
        assert case is not None
        assert case.consumer_name is None
        assert case.consumer_phone is None
        assert case.subject_id == subject  # in clear beside the sealed block
        assert case.mediator_id == mediator["neutral_id"]
    assert _scan(sessions, ["secret reason", BUYER_A["name"]]) == []
    # An answer whose details cannot be opened names no proposal: it changes nothing.
    answer = build_event(
        source="odr/complaints",
        event_type="case.proposal_accepted",
        subject=data.case_id,
        data=case_event(case_id=data.case_id, consumer=Contact(), details={}),
    )
    with sessions() as session, session.begin():
        table["case.proposal_accepted"](session, answer)


PURGED_TABLES = (
    "routing_decisions",
    "routing_reasons",
    "case_timeline",
    "proposals",
    "arbitration_votes",
    "decisions",
    "mediation_cases",
)


def _snapshot(sessions: sessionmaker[Session]) -> dict[str, list[tuple[Any, ...]]]:
    with sessions() as session:
        return {
            t: sorted(
                (
                    tuple(str(v) for v in row)
                    for row in session.execute(select(Base.metadata.tables[t]))
                ),
            )
            for t in PURGED_TABLES
        }


def _of_case(rows: list[tuple[Any, ...]], case_id: str) -> list[tuple[Any, ...]]:
    return [r for r in rows if case_id in r]


def test_retention_purges_only_what_is_past_its_period_and_dry_run_touches_nothing(
    client: TestClient, settings: MediationSettings, sessions, mediator: dict[str, Any]
) -> None:
    from mediation.retention import rules
    from odr_shared.retention import Purger

    old_closed = _take_case(sessions, settings, BUYER_A, "oldclosed")
    _mediate(client, mediator["headers"], old_closed, "oldclosed")
    _decide(client, settings, sessions, old_closed, "old award reasons")
    _close(sessions, settings, old_closed)
    new_closed = _take_case(sessions, settings, BUYER_A, "newclosed")
    _mediate(client, mediator["headers"], new_closed, "newclosed")
    _close(sessions, settings, new_closed)
    old_open = _take_case(sessions, settings, BUYER_B, "oldopen")
    _mediate(client, mediator["headers"], old_open, "oldopen")
    long_ago = utcnow() - timedelta(days=5000)
    with sessions() as session, session.begin():
        for table, column in (
            ("routing_decisions", "decided_at"),
            ("case_timeline", "at"),
            ("proposals", "created_at"),
            ("arbitration_votes", "voted_at"),
            ("decisions", "decided_at"),
            ("mediation_cases", "updated_at"),
        ):
            session.execute(
                text(f"UPDATE {table} SET {column} = :t WHERE case_id IN (:a, :b)"),  # noqa: S608
                {"t": long_ago, "a": old_closed, "b": old_open},
            )
    before = _snapshot(sessions)
    routed = len(_of_case(before["routing_decisions"], old_closed))
    entries = len(_of_case(before["case_timeline"], old_closed))
    assert routed == 2  # the mediator, then the arbitrator
    assert entries >= 6
    engine = make_engine(settings.database_url)
    purger = Purger(engine, rules(settings), batch_size=1)

    dry = purger.purge(dry_run=True)

    assert _snapshot(sessions) == before
    expected = {
        "mediation.routing_decisions": routed,
        "mediation.case_timeline": entries,
        "mediation.proposal_terms": 1,
        "mediation.vote_reasons": 1,
        "mediation.case_contacts": 1,
        "mediation.award_reasons": 1,
    }
    assert {k: v for k, v in dry.items() if k.startswith("mediation.")} == expected

    done = purger.purge()

    assert {k: v for k, v in done.items() if k.startswith("mediation.")} == expected
    after = _snapshot(sessions)
    for table in ("routing_decisions", "case_timeline"):
        assert _of_case(after[table], old_closed) == []
    # routing_reasons went with their decisions (the cascade).
    assert len(after["routing_reasons"]) < len(before["routing_reasons"])
    for case_id in (new_closed, old_open):
        for table in PURGED_TABLES:
            assert _of_case(after[table], case_id) == _of_case(before[table], case_id), table
    with sessions() as session:
        case = session.get(MediationCase, old_closed)
        assert case is not None  # the statistics stay
        assert case.consumer_name is None
        assert case.consumer_phone is None
        assert case.claimed_amount == 300_000
        proposal = session.execute(
            select(Proposal).where(Proposal.case_id == old_closed)
        ).scalar_one()
        assert proposal.terms == privacy.ERASED
        assert proposal.outcome == "full_refund"
        decision = session.get(Decision, old_closed)
        assert decision is not None
        assert decision.reasons == privacy.ERASED
        assert decision.amount == 300_000
    assert _scan(sessions, [_texts("oldclosed")["terms"], "old award reasons"]) == []
    again = purger.purge(dry_run=True)
    assert {k: v for k, v in again.items() if k.startswith("mediation.")} == dict.fromkeys(
        expected, 0
    )
    engine.dispose()


def test_the_key_endpoint_gives_services_the_keys_until_the_subject_is_erased(
    client: TestClient, settings: MediationSettings, sessions, mediator: dict[str, Any]
) -> None:
    case_id = _take_case(sessions, settings, BUYER_A, "alpha")
    _mediate(client, mediator["headers"], case_id, "alpha")
    made = next(
        parse_event(p)
        for p in outbox_rows(sessions, MEDIATION_TOPIC)
        if parse_event(p).type == "mediation.proposal_made"
    )
    kid = made.data.model_dump()["sealed"]["kid"]
    url = "/internal/v1/subject-keys"
    assert client.post(url, json={"kids": [kid]}).status_code == 401
    assert (
        client.post(url, json={"kids": [kid]}, headers=admin_headers(settings)).status_code == 403
    )
    r = client.post(url, json={"kids": [kid, "k_unknown"]}, headers=_service_headers(settings))
    assert r.status_code == 200, r.text
    assert set(r.json()["keys"]) == {kid}
    _close(sessions, settings, case_id)
    _request_erasure(sessions, settings, subject_for_phone(BUYER_A["phone"], settings))
    r = client.post(url, json={"kids": [kid]}, headers=_service_headers(settings))
    assert r.json()["keys"] == {}


def test_a_marketplace_redaction_erases_only_that_platforms_cases(
    client: TestClient, settings: MediationSettings, sessions, mediator: dict[str, Any]
) -> None:
    on_1 = _take_case(sessions, settings, BUYER_A, "alpha")
    on_2 = _take_case(sessions, settings, BUYER_A, "other", platform_id="plt_2")
    _mediate(client, mediator["headers"], on_2, "other")
    for case_id in (on_1, on_2):
        _close(sessions, settings, case_id)
    subject_a = subject_for_phone(BUYER_A["phone"], settings)
    request = ErasureRequestedV1(
        request_id="pr_platform",
        subject_id=subject_a,
        platform_id="plt_1",
        requested_at=utcnow(),
    )
    with sessions() as session, session.begin():
        report = privacy.erase(session, request, settings, privacy.sealer_of(session).store)
    assert report.counts["cases"] == 1
    assert _scan(sessions, [_texts("alpha")["reason"]]) == []
    assert _scan(sessions, [_texts("other")["reason"]]) != []
    with sessions() as session:
        # The key also opens plt_2's case's events: a platform's redaction keeps it.
        assert privacy.sealer_of(session).store.holds(session, subject_a)


def test_a_subject_mediation_never_saw_is_reported_completed_with_nothing_done(
    settings: MediationSettings, sessions
) -> None:
    report = _request_erasure(sessions, settings, subject_for_phone("+84977888999", settings))
    assert report["status"] == "completed"
    assert report["reason"] is None
    assert set(report["counts"].values()) == {0}
