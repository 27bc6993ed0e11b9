"""Use cases against SQLite and PostgreSQL: concurrency, the deadline clock, mediation's moves."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

from sqlalchemy import select

from complaints import service
from complaints.consumer import apply_mediation_event
from complaints.models import CaseRecord, CaseTransition
from complaints.service import Deps
from odr_shared.auth import Party
from odr_shared.db import utcnow
from odr_shared.events import Actor, MediationEventV1, build_event
from odr_shared.problems import Problem

FIELDS: dict[str, Any] = {
    "category": "damaged",
    "description": "Hàng bị vỡ khi nhận.",
    "desired_outcome": "refund",
    "claimed_amount": 250000,
    "language": "vi",
}


def consumer(order_id: str) -> Party:
    return Party("consumer", f"c-{order_id}", platform_id=order_id.split(":")[0], order_id=order_id)


PLATFORM = Party("platform", "p", platform_id="plat-a")


def open_for(deps: Deps, order_id: str) -> CaseRecord:
    return service.open_case(deps, consumer(order_id), order_code=order_id.split(":")[1], **FIELDS)


def mediation_event(deps: Deps, event_type: str, case_id: str, **fields: Any) -> None:
    data = MediationEventV1(
        case_id=case_id, platform_id="plat-a", actor=Actor(role="system"), **fields
    )
    event = build_event(source="test", event_type=event_type, subject=case_id, data=data)
    with deps.sessions.begin() as session:
        apply_mediation_event(session, event, deps)


def test_references_are_unique_and_sequential_under_concurrency(
    deps: Deps, seed_order: Callable[..., str]
) -> None:
    orders = [seed_order(f"DHC{i}") for i in range(12)]
    with ThreadPoolExecutor(max_workers=6) as pool:
        refs = list(pool.map(lambda o: open_for(deps, o).reference, orders))
    numbers = sorted(int(r.rsplit("-", 1)[1]) for r in refs)
    assert numbers == list(range(1, 13))
    assert all(
        r.startswith(f"KN-{utcnow().year}-") or r.startswith(f"KN-{utcnow().year + 1}-")
        for r in refs
    )


def test_one_open_case_per_order_under_concurrency(
    deps: Deps, seed_order: Callable[..., str]
) -> None:
    order = seed_order("DHRACE")

    def attempt(_: int) -> str:
        try:
            return open_for(deps, order).reference
        except Problem as exc:
            return f"{exc.status}:{exc.extensions['reference']}"

    with ThreadPoolExecutor(max_workers=5) as pool:
        results = list(pool.map(attempt, range(5)))
    created = [r for r in results if not r.startswith("409")]
    assert len(created) == 1
    assert all(r == f"409:{created[0]}" for r in results if r.startswith("409"))
    with deps.sessions() as s:
        assert len(list(s.execute(select(CaseRecord)).scalars())) == 1


def test_missed_merchant_deadline_escalates_by_itself(
    deps: Deps, seed_order: Callable[..., str], outbox: Callable[..., list[dict[str, Any]]]
) -> None:
    quiet = open_for(deps, seed_order("DHD1"))
    waiting = open_for(deps, seed_order("DHD2"))
    service.make_offer(deps, PLATFORM, waiting.id, "replacement", None, None)
    assert service.check_deadlines(deps, quiet.merchant_response_due_at) == []
    later = quiet.merchant_response_due_at + timedelta(minutes=1)
    # The case waiting on the consumer is paused; only the silent merchant's case escalates.
    assert service.check_deadlines(deps, later) == [quiet.id]
    assert service.check_deadlines(deps, later) == []
    with deps.sessions() as s:
        rec = s.get(CaseRecord, quiet.id)
        assert rec is not None
        assert rec.status == "escalated"
        last = (
            s.execute(
                select(CaseTransition)
                .where(CaseTransition.case_id == quiet.id)
                .order_by(CaseTransition.id.desc())
            )
            .scalars()
            .first()
        )
        assert last is not None
        assert last.actor_role == "system"
    types = [e["type"] for e in outbox() if e["subject"] == quiet.id]
    assert types[-2:] == ["case.deadline_missed", "case.escalated"]
    records = {r["platform_id"]: r for r in service.platform_records(deps)}
    assert records["plat-a"]["cases_received"] == 2


def test_mediation_moves_the_case_and_both_parties_settle_on_a_proposal(
    deps: Deps, seed_order: Callable[..., str], outbox: Callable[..., list[dict[str, Any]]]
) -> None:
    order = seed_order("DHM1")
    rec = open_for(deps, order)
    service.escalate(deps, PLATFORM, rec.id, "cannot agree")
    mediation_event(deps, "case.queued", rec.id, reason="no mediator free")
    mediation_event(deps, "case.assigned", rec.id, neutral_id="med-1", neutral_role="mediator")
    view = service.get_case(deps, consumer(order), rec.id)
    assert view["status"] == "in_mediation"
    assert view["neutral_id"] == "med-1"
    assert "case.mediation_started" in [e["type"] for e in outbox()]
    mediation_event(
        deps,
        "mediation.proposal_made",
        rec.id,
        neutral_id="med-1",
        proposal={
            "proposal_id": "prop-1",
            "outcome": "partial_refund",
            "amount": 120000,
            "terms": "Hoàn 120.000 đ",
        },
    )
    service.answer_proposal(deps, consumer(order), rec.id, "prop-1", True, None)
    assert service.get_case(deps, PLATFORM, rec.id)["status"] == "in_mediation"
    service.answer_proposal(deps, PLATFORM, rec.id, "prop-1", True, None)
    view = service.get_case(deps, PLATFORM, rec.id)
    assert view["status"] == "resolved"
    assert view["proposals"][0]["status"] == "accepted"
    accepted = outbox("case.proposal_accepted")
    assert [e["data"]["details"]["party"] for e in accepted] == ["consumer", "platform"]
    assert outbox("case.resolved")[-1]["data"]["details"]["proposal_id"] == "prop-1"


def test_arbitration_decides_then_closes_and_replays_change_nothing(
    deps: Deps, seed_order: Callable[..., str], outbox: Callable[..., list[dict[str, Any]]]
) -> None:
    rec = open_for(deps, seed_order("DHM2"))
    service.escalate(deps, PLATFORM, rec.id, None)
    mediation_event(deps, "case.assigned", rec.id, neutral_id="med-1", neutral_role="mediator")
    mediation_event(deps, "case.referred_to_arbitration", rec.id, reason="no agreement")
    mediation_event(
        deps, "case.assigned", rec.id, neutral_role="arbitrator", neutral_ids=["arb-1", "arb-2"]
    )
    arbitrator = Party("arbitrator", "a", neutral_id="arb-2", roles=("arbitrator",))
    assert service.get_case(deps, arbitrator, rec.id)["status"] == "in_arbitration"
    decision = {
        "outcome": "refund",
        "amount": 250000,
        "reasons": "Hàng lỗi",
        "decided_by": ["arb-1"],
    }
    mediation_event(deps, "arbitration.decided", rec.id, neutral_id="arb-1", decision=decision)
    mediation_event(deps, "arbitration.decided", rec.id, neutral_id="arb-1", decision=decision)
    view = service.get_case(deps, arbitrator, rec.id)
    assert view["status"] == "closed"
    assert view["decision"]["outcome"] == "refund"
    assert [e["to_status"] for e in view["timeline"] if e["kind"] == "status"] == [
        "awaiting_merchant",
        "escalated",
        "in_mediation",
        "in_arbitration",
        "decided",
        "closed",
    ]
    assert len(outbox("case.decided")) == 1
    assert len(outbox("case.closed")) == 1
    assert outbox("case.arbitration_started")
    rec_ = {r["platform_id"]: r for r in service.platform_records(deps)}["plat-a"]
    assert rec_["decided_against_merchant_pct"] == 100.0


def test_mediation_event_for_a_withdrawn_case_leaves_a_note_instead_of_failing(
    deps: Deps, seed_order: Callable[..., str]
) -> None:
    order = seed_order("DHM3")
    rec = open_for(deps, order)
    service.withdraw(deps, consumer(order), rec.id, "đã thỏa thuận")
    mediation_event(deps, "case.referred_to_arbitration", rec.id)
    view = service.get_case(deps, consumer(order), rec.id)
    assert view["status"] == "withdrawn"
    assert any(e["kind"] == "note" for e in view["timeline"])


def test_the_worker_deadline_clock_escalates_an_overdue_case(
    deps: Deps, seed_order: Callable[..., str]
) -> None:
    import threading
    import time

    from complaints.worker import DeadlineClock

    rec = open_for(deps, seed_order("DHCLOCK"))
    with deps.sessions.begin() as s:
        row = s.get(CaseRecord, rec.id)
        assert row is not None
        row.merchant_response_due_at = utcnow() - timedelta(minutes=1)
    clock = DeadlineClock(deps, interval_s=0.05)
    thread = threading.Thread(target=clock.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with deps.sessions() as s:
                row = s.get(CaseRecord, rec.id)
                if row is not None and row.status == "escalated":
                    break
            time.sleep(0.05)
    finally:
        clock.stop()
        thread.join(timeout=10)
    with deps.sessions() as s:
        row = s.get(CaseRecord, rec.id)
        assert row is not None
        assert row.status == "escalated"
        assert row.deadline_missed_at is not None


def test_platform_record_counts_late_and_timely_answers(
    deps: Deps, seed_order: Callable[..., str]
) -> None:
    answered = open_for(deps, seed_order("DHR1"))
    silent = open_for(deps, seed_order("DHR2"))
    service.post_message(deps, PLATFORM, answered.id, "Chúng tôi đang kiểm tra")
    with deps.sessions.begin() as s:
        row = s.get(CaseRecord, silent.id)
        assert row is not None
        row.merchant_response_due_at = utcnow() - timedelta(hours=1)
    other = Party("platform", "p", platform_id="plat-b")
    seed_order("DHR3", platform_id="plat-b")
    assert service.list_cases(deps, other, None, None) == []
    (record,) = [r for r in service.platform_records(deps) if r["platform_id"] == "plat-a"]
    assert record["cases_received"] == 2
    assert record["cases_open"] == 2
    assert record["answered_in_time_pct"] == 50.0
    assert record["median_first_response_hours"] is not None
    assert record["median_first_response_hours"] < 1
    assert record["settled_by_agreement_pct"] is None
