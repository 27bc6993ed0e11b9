"""Pure mediation rules: working-day SLA clock, panel size and majority, outcomes, colours."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from mediation.domain import (
    VN_TZ,
    RuleViolation,
    Vote,
    add_working_days,
    check_outcome,
    panel_majority,
    panel_size,
    sla_colour,
)


def test_working_days_skip_weekends_and_holidays() -> None:
    friday = datetime(2026, 11, 20, 9, 0, tzinfo=VN_TZ).astimezone(UTC)
    due = add_working_days(friday, 2, holidays=())
    # Monday and Tuesday count; due at the end of Tuesday, local time.
    assert due.astimezone(VN_TZ) == datetime(2026, 11, 25, 0, 0, tzinfo=VN_TZ)
    with_holiday = add_working_days(friday, 2, holidays={date(2026, 11, 23)})
    assert with_holiday.astimezone(VN_TZ) == datetime(2026, 11, 26, 0, 0, tzinfo=VN_TZ)


def test_panel_of_three_only_above_the_threshold() -> None:
    assert panel_size(100_000_000, 100_000_000) == 1
    assert panel_size(100_000_001, 100_000_000) == 3
    assert panel_size(None, 100_000_000) == 1


def test_a_sole_arbitrators_vote_decides() -> None:
    vote = Vote("a1", "full_refund", 300_000, "the goods never arrived")
    assert panel_majority([vote], 1) == vote


def test_a_panel_decides_when_two_agree() -> None:
    a = Vote("a1", "partial_refund", 50_000_000, "r1")
    b = Vote("a2", "full_refund", 150_000_000, "r2")
    assert panel_majority([a, b], 3) is None
    c = Vote("a3", "full_refund", 150_000_000, "r3")
    assert panel_majority([a, b, c], 3) == b


def test_money_outcomes_need_an_amount() -> None:
    with pytest.raises(RuleViolation) as err:
        check_outcome("partial_refund", None)
    assert err.value.field == "amount"
    with pytest.raises(RuleViolation):
        check_outcome("make_it_go_away", None)
    check_outcome("replacement", None)


def test_sla_colours() -> None:
    now = datetime(2026, 11, 18, tzinfo=UTC)
    assert sla_colour(now + timedelta(days=2), now) == "green"
    assert sla_colour(now + timedelta(hours=5), now) == "amber"
    assert sla_colour(now - timedelta(minutes=1), now) == "red"
