"""Routing rules (pure): which neutrals may take a case, and which of them is chosen."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, time
from typing import Literal

from mediation.domain import VN_TZ, is_minority_language

Rule = Literal["role", "category", "language", "conflict", "availability", "capacity", "excluded"]
RULES: tuple[Rule, ...] = (
    "role",
    "category",
    "language",
    "conflict",
    "availability",
    "capacity",
    "excluded",
)


@dataclass(frozen=True)
class NeutralProfile:
    """What routing needs to know about one neutral."""

    neutral_id: str
    roles: frozenset[str]
    categories: frozenset[str]
    languages: frozenset[str]
    max_active_cases: int
    active_cases: int
    on_leave: bool = False
    work_start: time | None = None  # local (Asia/Ho_Chi_Minh) working hours; None = any time
    work_end: time | None = None
    last_assigned_at: datetime | None = None
    conflict_platform_ids: frozenset[str] = frozenset()
    conflict_seller_ids: frozenset[str] = frozenset()


@dataclass(frozen=True)
class CaseNeeds:
    """What a case asks of its neutral."""

    case_id: str
    role: str
    category: str
    language: str
    platform_id: str
    seller_id: str | None
    # Neutrals who may not take it: replaced for missing the SLA, or its mediator (arbitration).
    excluded: frozenset[str] = frozenset()


def is_available(n: NeutralProfile, now: datetime) -> bool:
    return available(n.on_leave, n.work_start, n.work_end, now)


def available(on_leave: bool, start: time | None, end: time | None, now: datetime) -> bool:
    """Not on leave and, if they keep working hours, inside them (weekdays, Vietnam time)."""
    if on_leave:
        return False
    if start is None or end is None:
        return True
    local = now.astimezone(VN_TZ)
    if local.weekday() >= 5:
        return False
    t = local.time()
    if start <= end:
        return start <= t < end
    return t >= start or t < end  # a shift across midnight


def speaks(n: NeutralProfile, language: str) -> bool:
    # Majority or minority, the neutral must speak the case's language; for a minority language
    # (hmn, km, tay, th...) there is deliberately no fallback to Vietnamese.
    return language.lower() in {lang.lower() for lang in n.languages}


def failed_rule(n: NeutralProfile, case: CaseNeeds, now: datetime) -> Rule | None:
    """The first rule this neutral fails for this case, or None if eligible."""
    if case.role not in n.roles:
        return "role"
    if case.category not in n.categories:
        return "category"
    if not speaks(n, case.language):
        return "language"
    if case.platform_id in n.conflict_platform_ids or (
        case.seller_id is not None and case.seller_id in n.conflict_seller_ids
    ):
        return "conflict"
    if not is_available(n, now):
        return "availability"
    if n.active_cases >= n.max_active_cases:
        return "capacity"
    if n.neutral_id in case.excluded:
        return "excluded"
    return None


def rank_key(n: NeutralProfile) -> tuple[int, float, str]:
    """Least loaded first, then longest since the last assignment (never assigned = longest)."""
    last = n.last_assigned_at.timestamp() if n.last_assigned_at else float("-inf")
    return (n.active_cases, last, n.neutral_id)


@dataclass
class RoutingOutcome:
    """The decision and its reasons: how many candidates each rule excluded, who won and why."""

    case_id: str
    role: str
    needed: int
    chosen: list[NeutralProfile] = field(default_factory=list)
    ranked: list[NeutralProfile] = field(default_factory=list)  # every eligible one, best first
    excluded_by: dict[str, int] = field(default_factory=lambda: {r: 0 for r in RULES})
    considered: int = 0
    minority_language: bool = False

    @property
    def assigned(self) -> bool:
        return len(self.chosen) == self.needed

    def explanation(self) -> str:
        if not self.assigned:
            return (
                f"{len(self.chosen)} of {self.needed} {self.role}(s) eligible among "
                f"{self.considered} considered; the case waits in the queue"
            )
        parts = [
            f"{n.neutral_id} ({n.active_cases} active of {n.max_active_cases}, last assigned "
            f"{n.last_assigned_at.isoformat() if n.last_assigned_at else 'never'})"
            for n in self.chosen
        ]
        return "least loaded, then longest since last assignment: " + "; ".join(parts)


def choose(
    case: CaseNeeds,
    candidates: Iterable[NeutralProfile],
    now: datetime,
    needed: int = 1,
) -> RoutingOutcome:
    """Apply every rule to every candidate, then rank the eligible and take `needed` of them.

    Fewer eligible than needed means nobody is chosen (a panel is all or nothing).
    """
    outcome = RoutingOutcome(
        case_id=case.case_id,
        role=case.role,
        needed=needed,
        minority_language=is_minority_language(case.language),
    )
    eligible: list[NeutralProfile] = []
    for n in candidates:
        outcome.considered += 1
        rule = failed_rule(n, case, now)
        if rule is None:
            eligible.append(n)
        else:
            outcome.excluded_by[rule] += 1
    outcome.ranked = sorted(eligible, key=rank_key)
    if len(eligible) >= needed:
        outcome.chosen = outcome.ranked[:needed]
    return outcome


def merge_counts(into: dict[str, int], counts: Sequence[tuple[str, int]]) -> None:
    for rule, n in counts:
        into[rule] = into.get(rule, 0) + n
