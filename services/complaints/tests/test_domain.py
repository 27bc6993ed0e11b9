"""Unit tests of the Case aggregate, its state machine and the working-day calendar (no I/O)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from itertools import product

import pytest

from complaints.domain import (
    ALLOWED_TRANSITIONS,
    SYSTEM,
    Actor,
    Case,
    DomainError,
    HolidayCalendar,
    TransitionNotAllowed,
    check_transition,
)
from odr_shared.events import CaseStatus as S

CAL = HolidayCalendar.vietnam()
NO_HOLIDAYS = HolidayCalendar(frozenset())
CONSUMER = Actor("consumer", "c-1")
PLATFORM = Actor("platform", "plat-a")
MEDIATOR = Actor("mediator", "n-1")
ARBITRATOR = Actor("arbitrator", "n-2")


def vn(y: int, m: int, d: int, h: int = 10, minute: int = 0) -> datetime:
    """A Vietnam local wall-clock time as UTC (UTC+7, no DST)."""
    return datetime(y, m, d, h, minute, tzinfo=UTC) - timedelta(hours=7)


def vn_end_of_day(y: int, m: int, d: int) -> datetime:
    return vn(y, m, d, 23, 59) + timedelta(seconds=59)


EXPECTED = {
    (S.AWAITING_MERCHANT, S.NEGOTIATING),
    (S.AWAITING_MERCHANT, S.ESCALATED),
    (S.AWAITING_MERCHANT, S.WITHDRAWN),
    (S.NEGOTIATING, S.RESOLVED),
    (S.NEGOTIATING, S.ESCALATED),
    (S.NEGOTIATING, S.WITHDRAWN),
    (S.ESCALATED, S.IN_MEDIATION),
    (S.ESCALATED, S.WITHDRAWN),
    (S.IN_MEDIATION, S.RESOLVED),
    (S.IN_MEDIATION, S.IN_ARBITRATION),
    (S.IN_MEDIATION, S.WITHDRAWN),
    (S.IN_ARBITRATION, S.DECIDED),
    (S.IN_ARBITRATION, S.WITHDRAWN),
    (S.DECIDED, S.CLOSED),
}


@pytest.mark.parametrize(("current", "target"), list(product(S, S)))
def test_state_machine_allows_exactly_the_lifecycle(current: S, target: S) -> None:
    if (current, target) in EXPECTED:
        check_transition(current, target)
    else:
        with pytest.raises(TransitionNotAllowed):
            check_transition(current, target)


def test_table_has_every_status() -> None:
    assert set(ALLOWED_TRANSITIONS) == set(S)


def opened(at: datetime | None = None) -> Case:
    case = Case.open("case-1", CONSUMER, at or vn(2026, 11, 2), CAL)
    case.pop_events()
    return case


def test_opening_records_the_first_audit_entry_and_event() -> None:
    case = Case.open("case-1", CONSUMER, vn(2026, 11, 2), CAL)
    assert case.status == S.AWAITING_MERCHANT
    assert [e.type for e in case.events] == ["case.opened"]
    (t,) = case.history
    assert (t.from_status, t.to_status, t.actor) == (None, S.AWAITING_MERCHANT, CONSUMER)


def test_first_platform_answer_starts_negotiation_with_audit_trail() -> None:
    case = opened()
    at = vn(2026, 11, 3)
    case.platform_answered(PLATFORM, at, waits_on_consumer=False)
    assert case.status == S.NEGOTIATING
    assert case.first_response_at == at
    t = case.history[-1]
    assert (t.from_status, t.to_status, t.actor, t.at) == (
        S.AWAITING_MERCHANT,
        S.NEGOTIATING,
        PLATFORM,
        at,
    )
    assert t.reason
    assert [e.type for e in case.pop_events()] == ["case.merchant_responded"]
    # A second answer changes neither the first answer time nor the status.
    case.platform_answered(PLATFORM, at + timedelta(hours=1), waits_on_consumer=False)
    assert case.first_response_at == at
    assert case.pop_events() == []


def test_accepting_an_offer_resolves_the_case() -> None:
    case = opened()
    case.offer_made(PLATFORM, vn(2026, 11, 3), {"offer_id": "o1"})
    case.offer_accepted(CONSUMER, vn(2026, 11, 4), CAL, {"offer_id": "o1"})
    assert case.status == S.RESOLVED
    assert case.settled_by == "offer"
    assert not case.is_open
    types = [e.type for e in case.pop_events()]
    assert types == [
        "case.merchant_responded",
        "case.offer_made",
        "case.offer_accepted",
        "case.resolved",
    ]
    assert [(t.from_status, t.to_status) for t in case.history[1:]] == [
        (S.AWAITING_MERCHANT, S.NEGOTIATING),
        (S.NEGOTIATING, S.RESOLVED),
    ]


def test_consumer_cannot_escalate_before_a_rejected_offer_or_the_deadline() -> None:
    case = opened()
    with pytest.raises(DomainError):
        case.escalate(CONSUMER, vn(2026, 11, 3), CAL, "too slow")
    assert case.status == S.AWAITING_MERCHANT


def test_consumer_may_escalate_after_rejecting_an_offer() -> None:
    case = opened()
    case.offer_made(PLATFORM, vn(2026, 11, 3), {"offer_id": "o1"})
    case.offer_rejected_by_consumer(CONSUMER, vn(2026, 11, 3, 12), CAL, {"offer_id": "o1"}, "low")
    assert case.status == S.NEGOTIATING
    case.escalate(CONSUMER, vn(2026, 11, 3, 13), CAL, "no deal")
    assert case.status == S.ESCALATED
    assert case.history[-1].actor == CONSUMER
    assert case.history[-1].reason == "no deal"


def test_consumer_may_escalate_once_the_deadline_passed() -> None:
    case = opened(vn(2026, 11, 2))  # due 11 Nov 2026
    assert not case.may_escalate(CONSUMER, vn_end_of_day(2026, 11, 11), CAL)
    case.escalate(CONSUMER, vn(2026, 11, 12, 0, 1), CAL, None)
    assert case.status == S.ESCALATED


def test_terminal_cases_refuse_every_action() -> None:
    case = opened()
    case.withdraw(CONSUMER, vn(2026, 11, 3), "sorted out")
    assert case.status == S.WITHDRAWN
    with pytest.raises(TransitionNotAllowed):
        case.withdraw(CONSUMER, vn(2026, 11, 3), None)
    with pytest.raises(TransitionNotAllowed):
        case.escalate(PLATFORM, vn(2026, 11, 3), CAL, None)
    with pytest.raises(DomainError):
        case.platform_answered(PLATFORM, vn(2026, 11, 3), waits_on_consumer=True)
    with pytest.raises(DomainError):
        case.offer_made(PLATFORM, vn(2026, 11, 3), {})


def _to(status: S) -> Case:
    case = opened()
    if status == S.AWAITING_MERCHANT:
        return case
    case.escalate(PLATFORM, vn(2026, 11, 3), CAL, None)
    if status == S.ESCALATED:
        return case
    case.mediation_started(MEDIATOR, vn(2026, 11, 4), "n-1")
    if status == S.IN_MEDIATION:
        return case
    case.arbitration_started(MEDIATOR, vn(2026, 11, 5), None)
    return case


@pytest.mark.parametrize(
    "status", [S.AWAITING_MERCHANT, S.ESCALATED, S.IN_MEDIATION, S.IN_ARBITRATION]
)
def test_withdraw_from_any_open_state(status: S) -> None:
    case = _to(status)
    assert case.status == status
    case.withdraw(CONSUMER, vn(2026, 11, 6), None)
    assert case.status == S.WITHDRAWN
    assert case.history[-1].from_status == status


def test_full_mediation_and_arbitration_path_keeps_the_audit_trail() -> None:
    case = _to(S.IN_ARBITRATION)
    case.decided(ARBITRATOR, vn(2026, 11, 9), {"outcome": "refund", "amount": 100000})
    assert case.status == S.CLOSED
    assert [t.to_status for t in case.history] == [
        S.AWAITING_MERCHANT,
        S.ESCALATED,
        S.IN_MEDIATION,
        S.IN_ARBITRATION,
        S.DECIDED,
        S.CLOSED,
    ]
    assert case.history[-2].actor == ARBITRATOR
    assert case.history[-1].actor == SYSTEM
    types = [e.type for e in case.pop_events()]
    assert types[-2:] == ["case.decided", "case.closed"]


def test_mediation_cannot_start_before_escalation_and_proposals_only_settle_in_mediation() -> None:
    case = opened()
    with pytest.raises(TransitionNotAllowed):
        case.mediation_started(MEDIATOR, vn(2026, 11, 3), "n-1")
    with pytest.raises(TransitionNotAllowed):
        case.proposal_settled(CONSUMER, vn(2026, 11, 3), "p1")
    case = _to(S.IN_MEDIATION)
    case.proposal_settled(PLATFORM, vn(2026, 11, 6), "p1")
    assert case.status == S.RESOLVED
    assert case.settled_by == "proposal"
    with pytest.raises(TransitionNotAllowed):
        _to(S.ESCALATED).decided(ARBITRATOR, vn(2026, 11, 9), {})


# --------------------------------------------------------------------------- the calendar


def test_holidays_include_tet_and_national_days() -> None:
    for d in [
        "2026-02-16",
        "2026-02-20",
        "2026-04-27",
        "2026-04-30",
        "2026-05-01",
        "2026-09-02",
        "2027-02-08",
        "2027-02-11",
        "2025-01-29",
    ]:
        assert not CAL.is_working_day(date.fromisoformat(d)), d
    assert CAL.is_working_day(date(2026, 2, 23))
    assert not CAL.is_working_day(date(2026, 11, 7))  # a Saturday


def test_deadline_skips_weekends() -> None:
    case = opened(vn(2026, 11, 2))  # Monday
    assert case.merchant_response_due_at == vn_end_of_day(2026, 11, 11)


def test_deadline_across_tet_2026() -> None:
    # Opened on Friday 13 Feb 2026; Tết closes 16-20 Feb, so 7 working days end on 3 Mar.
    case = opened(vn(2026, 2, 13))
    assert case.merchant_response_due_at == vn_end_of_day(2026, 3, 3)
    assert NO_HOLIDAYS.deadline(vn(2026, 2, 13), 7) == vn_end_of_day(2026, 2, 24)


def test_deadline_across_tet_2027() -> None:
    case = opened(vn(2027, 2, 4))  # Thursday before Tết (5, 8-11 Feb off)
    assert case.merchant_response_due_at == vn_end_of_day(2027, 2, 22)


def test_deadline_counts_from_the_local_date_not_the_utc_date() -> None:
    # 17:30 UTC on Thursday is already Friday 00:30 in Hanoi.
    at = datetime(2026, 11, 5, 17, 30, tzinfo=UTC)
    assert CAL.deadline(at, 7) == vn_end_of_day(2026, 11, 17)


def test_a_configured_year_replaces_the_shipped_one(tmp_path) -> None:
    f = tmp_path / "h.json"
    f.write_text('{"2026": ["2026-11-03"]}')
    cal = HolidayCalendar.vietnam(f)
    assert not cal.is_working_day(date(2026, 11, 3))
    assert cal.is_working_day(date(2026, 2, 16))  # 2026 list replaced
    assert not cal.is_working_day(date(2027, 2, 8))  # other years kept


def test_waiting_on_the_consumer_pauses_the_merchant_clock() -> None:
    case = opened(vn(2026, 11, 2))  # due Wed 11 Nov
    case.offer_made(PLATFORM, vn(2026, 11, 3), {"offer_id": "o1"})
    assert case.is_paused
    # Paused: no escalation however late it is.
    assert not case.check_deadline(vn(2026, 12, 1), CAL)
    case.offer_rejected_by_consumer(CONSUMER, vn(2026, 11, 5), CAL, {"offer_id": "o1"}, None)
    # 4 and 5 Nov were spent waiting on the consumer: two more working days, to Fri 13 Nov.
    assert not case.is_paused
    assert case.merchant_response_due_at == vn_end_of_day(2026, 11, 13)


def test_pause_over_a_weekend_costs_only_working_days() -> None:
    case = opened(vn(2026, 11, 2))
    case.platform_answered(PLATFORM, vn(2026, 11, 6), waits_on_consumer=True)  # Friday
    case.consumer_acted(vn(2026, 11, 9), CAL)  # Monday
    assert case.merchant_response_due_at == vn_end_of_day(2026, 11, 12)


def test_pause_over_tet_extends_past_the_holiday() -> None:
    case = opened(vn(2026, 2, 9))  # Monday; due 25 Feb (Tết 16-20 skipped)
    assert case.merchant_response_due_at == vn_end_of_day(2026, 2, 25)
    case.platform_answered(PLATFORM, vn(2026, 2, 12), waits_on_consumer=True)  # Thursday
    case.consumer_acted(vn(2026, 2, 23), CAL)  # Monday after Tết: only 13 and 23 Feb count
    assert case.merchant_response_due_at == vn_end_of_day(2026, 2, 27)


def test_missed_deadline_escalates_by_itself_with_events_and_audit() -> None:
    case = opened(vn(2026, 11, 2))
    assert not case.check_deadline(vn_end_of_day(2026, 11, 11), CAL)
    assert case.check_deadline(vn(2026, 11, 12, 0, 1), CAL)
    assert case.status == S.ESCALATED
    assert case.history[-1].actor == SYSTEM
    assert "7 working days" in (case.history[-1].reason or "")
    assert [e.type for e in case.pop_events()] == ["case.deadline_missed", "case.escalated"]
    assert not case.check_deadline(vn(2026, 11, 20), CAL)  # only once


def test_deadline_clock_stops_outside_the_merchant_phase() -> None:
    case = _to(S.IN_MEDIATION)
    assert not case.check_deadline(vn(2027, 1, 1), CAL)
    assert case.status == S.IN_MEDIATION
