"""The Case aggregate: one state machine for the lifecycle, audit trail, the deadline calendar."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from importlib import resources
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo

from odr_shared.events import CaseStatus

VN_TZ = ZoneInfo("Asia/Ho_Chi_Minh")
MERCHANT_RESPONSE_WORKING_DAYS = 7  # Law 19/2023 Art. 57(2)

ActorRole = Literal["consumer", "platform", "mediator", "arbitrator", "admin", "system"]

S = CaseStatus
OPEN_STATES = frozenset(
    {S.AWAITING_MERCHANT, S.NEGOTIATING, S.ESCALATED, S.IN_MEDIATION, S.IN_ARBITRATION}
)
# States in which the merchant's own clock runs: before anyone neutral is involved.
MERCHANT_PHASE = frozenset({S.AWAITING_MERCHANT, S.NEGOTIATING})

# The whole lifecycle in one table; anything not listed here is refused.
ALLOWED_TRANSITIONS: Mapping[CaseStatus, frozenset[CaseStatus]] = {
    S.AWAITING_MERCHANT: frozenset({S.NEGOTIATING, S.ESCALATED, S.WITHDRAWN}),
    S.NEGOTIATING: frozenset({S.RESOLVED, S.ESCALATED, S.WITHDRAWN}),
    S.ESCALATED: frozenset({S.IN_MEDIATION, S.WITHDRAWN}),
    S.IN_MEDIATION: frozenset({S.RESOLVED, S.IN_ARBITRATION, S.WITHDRAWN}),
    S.IN_ARBITRATION: frozenset({S.DECIDED, S.WITHDRAWN}),
    S.DECIDED: frozenset({S.CLOSED}),
    S.RESOLVED: frozenset(),
    S.CLOSED: frozenset(),
    S.WITHDRAWN: frozenset(),
}

CATEGORIES = (
    "not_received",
    "not_as_described",
    "damaged",
    "counterfeit",
    "wrong_item",
    "late_delivery",
    "refund_not_received",
    "other",
)
DESIRED_OUTCOMES = ("refund", "partial_refund", "replacement", "return_and_refund", "other")
OFFER_KINDS = ("refund", "partial_refund", "replacement", "return_and_refund")
OFFER_KINDS_WITH_AMOUNT = frozenset({"refund", "partial_refund", "return_and_refund"})


class DomainError(Exception):
    """A rule of the lifecycle was broken; the API answers 409 with this message."""


class TransitionNotAllowed(DomainError):
    def __init__(self, current: CaseStatus, target: CaseStatus) -> None:
        super().__init__(f"a case cannot go from {current.value} to {target.value}")
        self.current = current
        self.target = target


def check_transition(current: CaseStatus, target: CaseStatus) -> None:
    if target not in ALLOWED_TRANSITIONS[current]:
        raise TransitionNotAllowed(current, target)


# --------------------------------------------------------------------------- deadline calendar


def _default_holidays() -> dict[int, list[str]]:
    raw = resources.files("complaints").joinpath("holidays_vn.json").read_text("utf-8")
    doc: dict[str, list[str]] = json.loads(raw)
    return {int(y): v for y, v in doc.items() if y.isdigit()}


@dataclass(frozen=True)
class HolidayCalendar:
    """Working days in Vietnam: Monday-Friday, minus public holidays (Tết included).

    Holidays are given per year (the government fixes Tết and the bridge days each year), so an
    operator adds next year's list to a JSON file (COMPLAINTS_HOLIDAYS_FILE) without a release.
    """

    holidays: frozenset[date]
    tz: ZoneInfo = VN_TZ

    @classmethod
    def from_years(cls, years: Mapping[int, Iterable[str | date]]) -> HolidayCalendar:
        days: set[date] = set()
        for year_days in years.values():
            for d in year_days:
                days.add(d if isinstance(d, date) else date.fromisoformat(d))
        return cls(frozenset(days))

    @classmethod
    def vietnam(cls, extra_file: str | Path | None = None) -> HolidayCalendar:
        years = _default_holidays()
        if extra_file:
            doc = json.loads(Path(extra_file).read_text("utf-8"))
            # A year given in the file replaces the shipped list for that year.
            years.update({int(y): v for y, v in doc.items() if str(y).isdigit()})
        return cls.from_years(years)

    def is_working_day(self, d: date) -> bool:
        return d.weekday() < 5 and d not in self.holidays

    def add_working_days(self, start: date, n: int) -> date:
        """The n-th working day after `start` (start itself does not count)."""
        d = start
        counted = 0
        while counted < n:
            d += timedelta(days=1)
            if self.is_working_day(d):
                counted += 1
        return d

    def working_days_between(self, start: date, end: date) -> int:
        """Working days d with start < d <= end."""
        n = 0
        d = start
        while d < end:
            d += timedelta(days=1)
            if self.is_working_day(d):
                n += 1
        return n

    def local_date(self, at: datetime) -> date:
        return at.astimezone(self.tz).date()

    def end_of_day(self, d: date) -> datetime:
        """The last moment of a local day, in UTC (a deadline runs to local midnight)."""
        nxt = datetime.combine(d + timedelta(days=1), time(0, 0), tzinfo=self.tz)
        return (nxt - timedelta(seconds=1)).astimezone(UTC)

    def deadline(self, opened_at: datetime, working_days: int) -> datetime:
        return self.end_of_day(self.add_working_days(self.local_date(opened_at), working_days))

    def extend(self, due: datetime, paused_from: datetime, resumed_at: datetime) -> datetime:
        """Push `due` back by the working days spent waiting on the consumer."""
        lost = self.working_days_between(self.local_date(paused_from), self.local_date(resumed_at))
        if lost == 0:
            return due
        return self.end_of_day(self.add_working_days(self.local_date(due), lost))


# --------------------------------------------------------------------------- the aggregate


@dataclass(frozen=True)
class Actor:
    role: ActorRole
    id: str | None = None


SYSTEM = Actor("system", "deadline-clock")


@dataclass(frozen=True)
class Transition:
    """One audit-trail entry: who moved the case, from where to where, when and why."""

    from_status: CaseStatus | None
    to_status: CaseStatus
    actor: Actor
    at: datetime
    reason: str | None = None


@dataclass(frozen=True)
class CaseEvent:
    """Something that happened to a case, to publish on cases.events (type like case.escalated)."""

    type: str
    actor: Actor
    at: datetime
    previous_status: CaseStatus | None = None
    reason: str | None = None
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class Case:
    """The lifecycle state of one complaint. Operations check the rules and record events."""

    case_id: str
    status: CaseStatus
    opened_at: datetime
    merchant_response_due_at: datetime
    first_response_at: datetime | None = None
    waiting_on_consumer_since: datetime | None = None
    offer_rejected: bool = False
    deadline_missed_at: datetime | None = None
    settled_by: str | None = None  # offer | proposal | decision
    history: list[Transition] = field(default_factory=list)
    events: list[CaseEvent] = field(default_factory=list)

    # -- creation

    @classmethod
    def open(cls, case_id: str, actor: Actor, now: datetime, calendar: HolidayCalendar) -> Case:
        case = cls(
            case_id=case_id,
            status=S.AWAITING_MERCHANT,
            opened_at=now,
            merchant_response_due_at=calendar.deadline(now, MERCHANT_RESPONSE_WORKING_DAYS),
        )
        case.history.append(Transition(None, S.AWAITING_MERCHANT, actor, now, "case opened"))
        case.events.append(CaseEvent("case.opened", actor, now))
        return case

    # -- queries

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_STATES

    @property
    def is_paused(self) -> bool:
        return self.waiting_on_consumer_since is not None

    def effective_due(self, now: datetime, calendar: HolidayCalendar) -> datetime:
        """The merchant's deadline as it stands now (a running pause already counts)."""
        if self.waiting_on_consumer_since is None:
            return self.merchant_response_due_at
        return calendar.extend(self.merchant_response_due_at, self.waiting_on_consumer_since, now)

    def merchant_deadline_passed(self, now: datetime, calendar: HolidayCalendar) -> bool:
        return now > self.effective_due(now, calendar)

    def may_escalate(self, actor: Actor, now: datetime, calendar: HolidayCalendar) -> bool:
        if self.status not in MERCHANT_PHASE:
            return False
        if actor.role == "consumer":
            return self.offer_rejected or self.merchant_deadline_passed(now, calendar)
        return actor.role in ("platform", "admin")

    # -- the one place the status changes

    def _move(self, target: CaseStatus, actor: Actor, now: datetime, reason: str | None) -> None:
        check_transition(self.status, target)
        previous = self.status
        self.status = target
        self.history.append(Transition(previous, target, actor, now, reason))
        if target not in MERCHANT_PHASE:
            self.waiting_on_consumer_since = None

    def _emit(
        self,
        type_: str,
        actor: Actor,
        now: datetime,
        previous: CaseStatus | None = None,
        reason: str | None = None,
        **details: Any,
    ) -> None:
        self.events.append(CaseEvent(type_, actor, now, previous, reason, details))

    def _require_open(self) -> None:
        if not self.is_open:
            raise DomainError(f"the case is {self.status.value}")

    def _resume_clock(self, now: datetime, calendar: HolidayCalendar) -> None:
        if self.waiting_on_consumer_since is not None:
            self.merchant_response_due_at = calendar.extend(
                self.merchant_response_due_at, self.waiting_on_consumer_since, now
            )
            self.waiting_on_consumer_since = None

    # -- the merchant's phase

    def platform_answered(self, actor: Actor, now: datetime, *, waits_on_consumer: bool) -> None:
        """The platform wrote or offered: negotiation starts; the clock may wait on the consumer."""
        self._require_open()
        if self.first_response_at is None:
            self.first_response_at = now
        if self.status == S.AWAITING_MERCHANT:
            self._move(S.NEGOTIATING, actor, now, "the platform answered")
            self._emit("case.merchant_responded", actor, now, S.AWAITING_MERCHANT)
        if waits_on_consumer and self.status in MERCHANT_PHASE and not self.is_paused:
            self.waiting_on_consumer_since = now

    def consumer_acted(self, now: datetime, calendar: HolidayCalendar) -> None:
        """The consumer answered: the merchant's clock runs again."""
        self._require_open()
        self._resume_clock(now, calendar)

    def offer_made(self, actor: Actor, now: datetime, offer: dict[str, Any]) -> None:
        if self.status not in MERCHANT_PHASE:
            raise DomainError("offers are made while the merchant and the consumer negotiate")
        self.platform_answered(actor, now, waits_on_consumer=True)
        self.offer_rejected = False
        self._emit("case.offer_made", actor, now, offer=offer)

    def offer_accepted(
        self, actor: Actor, now: datetime, calendar: HolidayCalendar, offer: dict[str, Any]
    ) -> None:
        if self.status != S.NEGOTIATING:
            raise DomainError("there is no offer to accept at this stage")
        self._resume_clock(now, calendar)
        self._emit("case.offer_accepted", actor, now, offer=offer)
        previous = self.status
        self._move(S.RESOLVED, actor, now, "the consumer accepted the offer")
        self.settled_by = "offer"
        self._emit("case.resolved", actor, now, previous, "offer accepted", offer=offer)

    def offer_rejected_by_consumer(
        self,
        actor: Actor,
        now: datetime,
        calendar: HolidayCalendar,
        offer: dict[str, Any],
        reason: str | None,
    ) -> None:
        if self.status != S.NEGOTIATING:
            raise DomainError("there is no offer to reject at this stage")
        self._resume_clock(now, calendar)
        self.offer_rejected = True
        self._emit("case.offer_rejected", actor, now, reason=reason, offer=offer)

    def escalate(
        self, actor: Actor, now: datetime, calendar: HolidayCalendar, reason: str | None
    ) -> None:
        if self.status not in MERCHANT_PHASE:
            raise TransitionNotAllowed(self.status, S.ESCALATED)
        if not self.may_escalate(actor, now, calendar):
            raise DomainError(
                "a consumer may escalate once an offer was rejected or the merchant's deadline "
                "passed"
            )
        previous = self.status
        self._move(S.ESCALATED, actor, now, reason or "escalated")
        self._emit("case.escalated", actor, now, previous, reason)

    def check_deadline(self, now: datetime, calendar: HolidayCalendar) -> bool:
        """Escalate by itself once the merchant's deadline passed; True if it did."""
        if self.status not in MERCHANT_PHASE or self.is_paused:
            return False
        if now <= self.merchant_response_due_at:
            return False
        previous = self.status
        self.deadline_missed_at = now
        reason = "the merchant's deadline of 7 working days passed (Law 19/2023 Art. 57(2))"
        self._emit(
            "case.deadline_missed",
            SYSTEM,
            now,
            previous,
            reason,
            due_at=self.merchant_response_due_at.isoformat(),
        )
        self._move(S.ESCALATED, SYSTEM, now, reason)
        self._emit("case.escalated", SYSTEM, now, previous, reason, automatic=True)
        return True

    def withdraw(self, actor: Actor, now: datetime, reason: str | None) -> None:
        if not self.is_open:
            raise TransitionNotAllowed(self.status, S.WITHDRAWN)
        previous = self.status
        self._move(S.WITHDRAWN, actor, now, reason or "withdrawn by the consumer")
        self._emit("case.withdrawn", actor, now, previous, reason)

    # -- mediation and arbitration (reported by the mediation service)

    def mediation_started(self, actor: Actor, now: datetime, neutral_id: str) -> bool:
        """A mediator was assigned; False if the case was already in mediation (a reassignment)."""
        if self.status == S.IN_MEDIATION:
            return False
        previous = self.status
        self._move(S.IN_MEDIATION, actor, now, "a mediator was assigned")
        self._emit("case.mediation_started", actor, now, previous, neutral_id=neutral_id)
        return True

    def arbitration_started(self, actor: Actor, now: datetime, reason: str | None) -> None:
        previous = self.status
        self._move(S.IN_ARBITRATION, actor, now, reason or "referred to arbitration")
        self._emit("case.arbitration_started", actor, now, previous, reason)

    def proposal_settled(self, actor: Actor, now: datetime, proposal_id: str) -> None:
        """Both parties accepted the mediator's proposal."""
        previous = self.status
        self._move(S.RESOLVED, actor, now, "both parties accepted the mediator's proposal")
        self.settled_by = "proposal"
        self._emit(
            "case.resolved", actor, now, previous, "proposal accepted", proposal_id=proposal_id
        )

    def decided(self, actor: Actor, now: datetime, decision: dict[str, Any]) -> None:
        previous = self.status
        self._move(S.DECIDED, actor, now, "the arbitrator decided")
        self.settled_by = "decision"
        self._emit("case.decided", actor, now, previous, decision=decision)
        self._move(S.CLOSED, SYSTEM, now, "closed after the decision")
        self._emit("case.closed", SYSTEM, now, S.DECIDED)

    def pop_events(self) -> list[CaseEvent]:
        events, self.events = self.events, []
        return events


def decided_against_merchant(decision: Mapping[str, Any] | None) -> bool:
    """An arbitration decision goes against the merchant unless it rejects the claim outright."""
    if not decision:
        return False
    outcome = str(decision.get("outcome", "")).lower()
    return outcome not in ("rejected", "reject", "dismissed", "in_favour_of_merchant")
