"""Mediation's pure rules: working-day SLA clock, panel size, outcomes, case stages."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo

VN_TZ = ZoneInfo("Asia/Ho_Chi_Minh")

MEDIATOR = "mediator"
ARBITRATOR = "arbitrator"
NEUTRAL_ROLES = (MEDIATOR, ARBITRATOR)

# Languages every neutral pool is expected to cover; any other case language is an ethnic-minority
# (or foreign) language for which only a neutral speaking it qualifies (Law 19/2023 Art. 64(3)).
MAJORITY_LANGUAGES = frozenset({"vi", "en"})

# What a proposal or a decision may order. Money outcomes need an amount in đồng.
OUTCOMES = (
    "full_refund",
    "partial_refund",
    "replacement",
    "repair",
    "compensation",
    "claim_rejected",
)
MONEY_OUTCOMES = frozenset({"full_refund", "partial_refund", "compensation"})


class Stage(StrEnum):
    """Where a case stands inside mediation (complaints owns the public lifecycle)."""

    WAITING = "waiting"  # no eligible neutral yet: in the visible queue
    MEDIATION = "mediation"
    ARBITRATION = "arbitration"
    DECIDED = "decided"
    CLOSED = "closed"  # resolved, withdrawn or closed by complaints


OPEN_STAGES = (Stage.WAITING, Stage.MEDIATION, Stage.ARBITRATION)


class RuleViolation(ValueError):
    """A request the rules refuse; `field` names what is wrong."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


def is_minority_language(language: str) -> bool:
    return language.lower() not in MAJORITY_LANGUAGES


def is_working_day(day: date, holidays: Collection[date]) -> bool:
    return day.weekday() < 5 and day not in holidays


def add_working_days(start: datetime, days: int, holidays: Collection[date]) -> datetime:
    """The deadline `days` working days after `start`, counted on Vietnamese local dates.

    The deadline is the end of the last working day (local midnight after it), so an assignment
    made late on Friday still gets its full working days.
    """
    local = start.astimezone(VN_TZ).date()
    counted = 0
    day = local
    while counted < days:
        day += timedelta(days=1)
        if is_working_day(day, holidays):
            counted += 1
    end_local = datetime.combine(day + timedelta(days=1), time(0, 0), tzinfo=VN_TZ)
    return end_local.astimezone(start.tzinfo)


def panel_size(claimed_amount: int | None, threshold: int) -> int:
    """One arbitrator, or a panel of three for claims above the threshold."""
    return 3 if (claimed_amount or 0) > threshold else 1


def check_outcome(outcome: str, amount: int | None) -> None:
    if outcome not in OUTCOMES:
        raise RuleViolation("outcome", f"must be one of {', '.join(OUTCOMES)}")
    if outcome in MONEY_OUTCOMES and amount is None:
        raise RuleViolation("amount", f"an amount in đồng is required for {outcome}")
    if amount is not None and amount < 0:
        raise RuleViolation("amount", "must not be negative")


@dataclass(frozen=True)
class Vote:
    arbitrator_id: str
    outcome: str
    amount: int | None
    reasons: str


def panel_majority(votes: list[Vote], panel: int) -> Vote | None:
    """The decision once a majority of the panel agrees on outcome and amount, else None.

    A sole arbitrator's vote is the decision. A panel of three decides when two agree; the
    first agreeing vote's reasons carry the decision (the others stay on record).
    """
    needed = panel // 2 + 1
    for vote in votes:
        agreeing = [v for v in votes if (v.outcome, v.amount) == (vote.outcome, vote.amount)]
        if len(agreeing) >= needed:
            return vote
    return None


def sla_colour(due_at: datetime | None, now: datetime) -> str:
    """green: more than a day left; amber: under a day; red: overdue."""
    if due_at is None:
        return "green"
    left = due_at - now
    if left <= timedelta(0):
        return "red"
    if left <= timedelta(days=1):
        return "amber"
    return "green"
