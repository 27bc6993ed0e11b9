"""Mediation use cases, one transaction each (the caller owns the session and commits)."""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from datetime import datetime, time
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from mediation import privacy
from mediation import repository as repo
from mediation.domain import (
    ARBITRATOR,
    MEDIATOR,
    NEUTRAL_ROLES,
    OPEN_STAGES,
    RuleViolation,
    Stage,
    Vote,
    add_working_days,
    check_outcome,
    panel_majority,
    panel_size,
)
from mediation.models import (
    ArbitrationVote,
    Assignment,
    Decision,
    MediationCase,
    Neutral,
    NeutralConflict,
    NeutralSkill,
    Proposal,
    RoutingDecision,
    RoutingReason,
    TimelineEntry,
)
from mediation.routing import CaseNeeds, RoutingOutcome, choose
from mediation.settings import MediationSettings
from odr_shared.db import utcnow
from odr_shared.events import (
    MEDIATION_TOPIC,
    Actor,
    CaseEventV1,
    Contact,
    MediationEventV1,
    build_event,
)
from odr_shared.logs import mask_email, mask_name, mask_phone
from odr_shared.outbox import add_to_outbox
from odr_shared.problems import Problem, not_found

log = logging.getLogger(__name__)

SOURCE = "odr/mediation"
_hasher = PasswordHasher()
# Verified against when the e-mail is unknown, so a miss costs as much as a wrong password.
_DUMMY_HASH = _hasher.hash(uuid.uuid4().hex)


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:20]}"


# --- neutrals ---------------------------------------------------------------------------------


@dataclass
class NeutralSpec:
    name: str
    email: str
    phone: str
    password: str
    roles: list[str]
    categories: list[str]
    languages: list[str]
    regions: list[str] = field(default_factory=list)
    max_active_cases: int = 10
    conflict_platform_ids: list[str] = field(default_factory=list)
    conflict_seller_ids: list[str] = field(default_factory=list)
    language: str = "vi"


def _parse_hhmm(value: str) -> int:
    t = time.fromisoformat(value)
    return t.hour * 60 + t.minute


def _set_skills(session: Session, neutral_id: str, kind: str, values: list[str]) -> None:
    session.execute(
        delete(NeutralSkill).where(NeutralSkill.neutral_id == neutral_id, NeutralSkill.kind == kind)
    )
    for v in sorted(set(values)):
        session.add(NeutralSkill(kind=kind, value=v, neutral_id=neutral_id))


def _set_conflicts(session: Session, neutral_id: str, kind: str, values: list[str]) -> None:
    session.execute(
        delete(NeutralConflict).where(
            NeutralConflict.neutral_id == neutral_id, NeutralConflict.kind == kind
        )
    )
    for v in sorted(set(values)):
        session.add(NeutralConflict(kind=kind, value=v, neutral_id=neutral_id))


def register_neutral(session: Session, spec: NeutralSpec) -> str:
    email = spec.email.strip().lower()
    if session.execute(select(Neutral.neutral_id).where(Neutral.email == email)).first():
        raise Problem(409, "Conflict", "a neutral with this email already exists")
    roles = [r for r in NEUTRAL_ROLES if r in spec.roles]
    neutral_id = new_id("ntr")
    session.add(
        Neutral(
            neutral_id=neutral_id,
            name=spec.name,
            email=email,
            phone=spec.phone,
            password_hash=_hasher.hash(spec.password),
            primary_role=roles[0],
            roles=",".join(roles),
            regions=",".join(spec.regions),
            language=spec.language,
            max_active_cases=spec.max_active_cases,
            active_cases=0,
            on_leave=False,
            created_at=utcnow(),
        )
    )
    session.flush()
    _set_skills(session, neutral_id, "role", roles)
    _set_skills(session, neutral_id, "category", spec.categories)
    _set_skills(session, neutral_id, "language", [lang.lower() for lang in spec.languages])
    _set_skills(session, neutral_id, "region", spec.regions)
    _set_conflicts(session, neutral_id, "platform", spec.conflict_platform_ids)
    _set_conflicts(session, neutral_id, "seller", spec.conflict_seller_ids)
    log.info("neutral registered", extra={"neutral_id": neutral_id, "roles": roles})
    return neutral_id


def update_neutral(
    session: Session, neutral_id: str, changes: dict[str, Any], settings: MediationSettings
) -> Neutral:
    """Availability, capacity, skills or conflicts changed: the waiting queue may move."""
    n = session.get(Neutral, neutral_id)
    if n is None:
        raise not_found("neutral")
    if "on_leave" in changes and changes["on_leave"] is not None:
        n.on_leave = bool(changes["on_leave"])
    if "working_hours" in changes:
        wh = changes["working_hours"]
        if wh is None:
            n.work_start_minute = n.work_end_minute = None
        else:
            n.work_start_minute = _parse_hhmm(wh["start"])
            n.work_end_minute = _parse_hhmm(wh["end"])
    if changes.get("max_active_cases") is not None:
        n.max_active_cases = int(changes["max_active_cases"])
    for field_name, kind in (
        ("categories", "category"),
        ("languages", "language"),
        ("regions", "region"),
    ):
        if changes.get(field_name) is not None:
            values = [str(v) for v in changes[field_name]]
            if kind == "language":
                values = [v.lower() for v in values]
            _set_skills(session, neutral_id, kind, values)
    if changes.get("conflicts") is not None:
        _set_conflicts(session, neutral_id, "platform", changes["conflicts"]["platform_ids"])
        _set_conflicts(session, neutral_id, "seller", changes["conflicts"]["seller_ids"])
    session.flush()
    retry_for_neutral(session, neutral_id, settings, utcnow())
    return n


def authenticate(session: Session, email: str, password: str) -> Neutral | None:
    n = session.execute(
        select(Neutral).where(Neutral.email == email.strip().lower())
    ).scalar_one_or_none()
    try:
        _hasher.verify(n.password_hash if n else _DUMMY_HASH, password)
    except (VerificationError, InvalidHashError):
        return None
    if n is None:
        return None
    if _hasher.check_needs_rehash(n.password_hash):
        n.password_hash = _hasher.hash(password)
    return n


def neutral_view(session: Session, n: Neutral) -> dict[str, Any]:
    skills = repo.skills_of(session, n.neutral_id)
    conflicts = repo.conflicts_of(session, n.neutral_id)
    return {
        "neutral_id": n.neutral_id,
        "name": n.name,
        "roles": n.roles.split(","),
        "categories": skills.get("category", []),
        "languages": skills.get("language", []),
        "regions": skills.get("region", []),
        "max_active_cases": n.max_active_cases,
        "active_cases": n.active_cases,
        "on_leave": n.on_leave,
        "working_hours": (
            None
            if n.work_start_minute is None or n.work_end_minute is None
            else {
                "start": f"{n.work_start_minute // 60:02d}:{n.work_start_minute % 60:02d}",
                "end": f"{n.work_end_minute // 60:02d}:{n.work_end_minute % 60:02d}",
            }
        ),
        "last_assigned_at": n.last_assigned_at.isoformat() if n.last_assigned_at else None,
        "conflicts": {
            "platform_ids": conflicts.get("platform", []),
            "seller_ids": conflicts.get("seller", []),
        },
    }


def neutral_loads(session: Session) -> list[dict[str, Any]]:
    """Operator view: every neutral's load (bounded by the size of the roster, not of cases)."""
    rows = session.execute(select(Neutral).order_by(Neutral.name)).scalars()
    return [
        {
            "neutral_id": n.neutral_id,
            "name": n.name,
            "roles": n.roles.split(","),
            "active_cases": n.active_cases,
            "max_active_cases": n.max_active_cases,
            "on_leave": n.on_leave,
            "last_assigned_at": n.last_assigned_at.isoformat() if n.last_assigned_at else None,
        }
        for n in rows
    ]


# --- events and timeline ----------------------------------------------------------------------


def _timeline(
    session: Session, case_id: str, kind: str, actor_role: str, actor_id: str | None, summary: str
) -> None:
    session.add(
        TimelineEntry(
            case_id=case_id,
            at=utcnow(),
            kind=kind,
            actor_role=actor_role,
            actor_id=actor_id,
            summary=summary,
        )
    )


def _publish(
    session: Session,
    event_type: str,
    case: MediationCase,
    *,
    subject_id: str | None = None,
    **fields: Any,
) -> None:
    """Queue a mediation.events event, its personal fields sealed (mediation.privacy): under
    `subject_id` when given (a neutral's contact), else under the case's buyer."""
    fields.setdefault("actor", Actor(role="system"))
    payload = MediationEventV1(case_id=case.case_id, platform_id=case.platform_id, **fields)
    event = build_event(source=SOURCE, event_type=event_type, subject=case.case_id, data=payload)
    sealed = privacy.sealer_of(session).seal(
        session, event, subject_id or privacy.event_subject(case)
    )
    add_to_outbox(session, MEDIATION_TOPIC, case.case_id, sealed)


def _contact(n: repo.Taken) -> Contact:
    return Contact(name=n.name, email=n.email, phone=n.phone, language=n.language)


# --- routing ----------------------------------------------------------------------------------


def _needed(
    session: Session, case: MediationCase, role: str, settings: MediationSettings, *, fresh: bool
) -> int:
    total = 1 if role == MEDIATOR else panel_size(case.claimed_amount, settings.panel_threshold_vnd)
    if fresh:
        return total
    return max(0, total - len(repo.active_assignments(session, case.case_id, role)))


def plan_routing(session: Session, needs: CaseNeeds, needed: int, now: datetime) -> RoutingOutcome:
    """The routing decision: one indexed read narrows and ranks the candidates, then the pure
    rules (which have the last word) run on the best of them and rank the eligible."""
    return _plan(session, needs, needed, now)[0]


def _plan(
    session: Session, needs: CaseNeeds, needed: int, now: datetime
) -> tuple[RoutingOutcome, repo.RoutingPool]:
    pool = repo.routing_pool(session, needs, now)
    # The best few are enough: those a router takes from (see repo.take_capacity).
    best = pool.profiles(pool.ranked_ids[: needed + repo.SKIP_LOCKED_SPARE])
    outcome = choose(needs, best, now, needed=needed)
    # The database removed most candidates before the pure pass: merge both counts.
    for rule, n in pool.counts.items():
        if rule in outcome.excluded_by:
            outcome.excluded_by[rule] += n
    outcome.considered = pool.counts["_total"]
    return outcome, pool


def _needs(session: Session, case: MediationCase, role: str, *, fresh: bool = False) -> CaseNeeds:
    return CaseNeeds(
        case_id=case.case_id,
        role=role,
        category=case.category,
        language=case.language.lower(),
        platform_id=case.platform_id,
        seller_id=case.seller_id,
        # A case just taken in has no assignments yet, so nobody to exclude.
        excluded=frozenset() if fresh else repo.case_exclusions(session, case.case_id, role),
    )


def _record_decision(
    session: Session, outcome: RoutingOutcome, trigger: str, now: datetime
) -> None:
    decision_id = new_id("rtd")
    session.add(
        RoutingDecision(
            decision_id=decision_id,
            case_id=outcome.case_id,
            role=outcome.role,
            needed=outcome.needed,
            outcome="assigned" if outcome.assigned else "queued",
            trigger=trigger,
            chosen_ids=",".join(n.neutral_id for n in outcome.chosen),
            considered=outcome.considered,
            explanation=outcome.explanation()
            + (
                " (ethnic-minority language: only its speakers qualify)"
                if outcome.minority_language
                else ""
            ),
            decided_at=now,
        )
    )
    for rule, n in outcome.excluded_by.items():
        session.add(RoutingReason(decision_id=decision_id, rule=rule, excluded=n))


def route_case(
    session: Session,
    case: MediationCase,
    role: str,
    settings: MediationSettings,
    now: datetime,
    *,
    trigger: str,
    replaced: Assignment | None = None,
    record_failure: bool = True,
    fresh: bool = False,
) -> bool:
    """Find the case's neutral(s) for `role`; assign them, or leave the case in the queue.

    Returns True once the role is fully staffed. `fresh`: the case was just taken in (it has
    no assignments yet, so there is nothing to read about them).
    """
    needed = _needed(session, case, role, settings, fresh=fresh)
    if needed == 0:
        return True
    needs = _needs(session, case, role, fresh=fresh)
    for _attempt in range(3):
        outcome, pool = _plan(session, needs, needed, now)
        if not outcome.assigned:
            break
        # Take capacity in rank order. A candidate another router is taking right now is
        # skipped, not waited for (capacity is re-checked on the locked row); only if that leaves
        # the case short does this router wait for the remaining candidates, so no case waits in
        # the queue while an eligible neutral has room.
        ranked = [n.neutral_id for n in outcome.ranked]
        taken = repo.take_capacity(session, ranked, needed, now)
        if len(taken) < needed:
            got = {t.neutral_id for t in taken}
            rest = [nid for nid in pool.ranked_ids if nid not in got]
            taken += repo.take_capacity(session, rest, needed - len(taken), now, wait=True)
        if len(taken) == needed:
            outcome.chosen = pool.profiles([t.neutral_id for t in taken])
            _record_decision(session, outcome, trigger, now)
            _assign(session, case, role, taken, settings, now, trigger=trigger, replaced=replaced)
            return True
        for t in taken:
            repo.release_capacity(session, t.neutral_id)
    else:
        outcome = RoutingOutcome(case_id=case.case_id, role=role, needed=needed)
    _queue(session, case, role, outcome, now, trigger=trigger, record=record_failure)
    return False


def _assign(
    session: Session,
    case: MediationCase,
    role: str,
    neutrals: list[repo.Taken],
    settings: MediationSettings,
    now: datetime,
    *,
    trigger: str,
    replaced: Assignment | None,
) -> None:
    due = add_working_days(now, settings.sla_working_days, settings.holiday_dates)
    case.stage = (Stage.MEDIATION if role == MEDIATOR else Stage.ARBITRATION).value
    case.waiting_role = None
    case.queued_at = None
    case.updated_at = now
    neutral_ids = [n.neutral_id for n in neutrals]
    panel: list[str] = []
    if role == MEDIATOR:
        case.mediator_id = neutral_ids[0]
    else:
        panel = [a.neutral_id for a in repo.active_assignments(session, case.case_id, ARBITRATOR)]
        panel += neutral_ids
    for neutral in neutrals:
        nid = neutral.neutral_id
        assignment = Assignment(
            assignment_id=new_id("asg"),
            case_id=case.case_id,
            neutral_id=nid,
            role=role,
            status="active",
            assigned_at=now,
            due_at=due,
        )
        session.add(assignment)
        details: dict[str, Any] = {"due_at": due.isoformat(), "trigger": trigger}
        if role == ARBITRATOR:
            details["panel_size"] = panel_size(case.claimed_amount, settings.panel_threshold_vnd)
        common: dict[str, Any] = {
            # The event carries the neutral's contact: it is theirs (mediation.privacy).
            "subject_id": privacy.neutral_subject(neutral.phone, nid, settings),
            "neutral_id": nid,
            "neutral_role": role,
            "neutral_ids": panel if role == ARBITRATOR else [nid],
            "assignment_id": assignment.assignment_id,
            "neutral_contact": _contact(neutral),
            "details": details,
        }
        if replaced is not None:
            details["previous_neutral_id"] = replaced.neutral_id
            _publish(session, "case.reassigned", case, reason="sla_breach", **common)
            _timeline(
                session,
                case.case_id,
                "case.reassigned",
                "system",
                None,
                f"{replaced.neutral_id} did not act in time; {role} now {nid}",
            )
        else:
            _publish(session, "case.assigned", case, **common)
            _timeline(
                session,
                case.case_id,
                "case.assigned",
                "system",
                None,
                f"{role} {nid} assigned ({trigger}); act by {due.isoformat()}",
            )
    log.info(
        "case assigned", extra={"case_id": case.case_id, "role": role, "neutrals": neutral_ids}
    )


def _queue(
    session: Session,
    case: MediationCase,
    role: str,
    outcome: RoutingOutcome,
    now: datetime,
    *,
    trigger: str,
    record: bool,
) -> None:
    first_time = case.stage != Stage.WAITING.value or case.waiting_role != role
    case.stage = Stage.WAITING.value
    case.waiting_role = role
    case.queued_at = case.queued_at or now
    case.updated_at = now
    # A retry that finds nobody again changes nothing: no new rows, no repeated event.
    if not (first_time and record):
        return
    _record_decision(session, outcome, trigger, now)
    _publish(
        session,
        "case.queued",
        case,
        neutral_role=role,
        reason="no eligible neutral",
        details={"excluded_by": outcome.excluded_by, "needed": outcome.needed},
    )
    _timeline(session, case.case_id, "case.queued", "system", None, outcome.explanation())
    log.info("case queued", extra={"case_id": case.case_id, "role": role})


def waiting_key(case: MediationCase) -> tuple[str | None, ...]:
    """Cases with the same key meet the same neutrals: once one fails, its twins fail too."""
    return (case.waiting_role, case.category, case.language, case.platform_id, case.seller_id)


def retry_waiting_case(
    session: Session, case_id: str, settings: MediationSettings, now: datetime
) -> bool | None:
    """Offer one waiting case again: True if staffed, False if still waiting, None if gone."""
    # Lock and re-read: the API (an availability change) and the sweeper may both try it.
    case = session.get(MediationCase, case_id, with_for_update=True, populate_existing=True)
    if case is None or case.stage != Stage.WAITING.value:
        return None
    return route_case(
        session,
        case,
        case.waiting_role or MEDIATOR,
        settings,
        now,
        trigger="retry",
        record_failure=False,
    )


def retry_waiting(
    session: Session, settings: MediationSettings, now: datetime, limit: int = 50
) -> int:
    """Offer the oldest waiting cases again in one transaction; returns how many got staffed."""
    done = 0
    failed: set[tuple[str | None, ...]] = set()
    for case in repo.waiting_cases(session, limit):
        key = waiting_key(case)
        if key in failed:
            continue
        if retry_waiting_case(session, case.case_id, settings, now):
            done += 1
        else:
            failed.add(key)
    return done


def retry_for_neutral(
    session: Session, neutral_id: str, settings: MediationSettings, now: datetime
) -> int:
    """A neutral has room again: route the oldest waiting cases they could take."""
    n = session.get(Neutral, neutral_id)
    if n is None or n.on_leave or n.active_cases >= n.max_active_cases:
        return 0
    skills = repo.skills_of(session, neutral_id)
    cases = repo.waiting_cases(
        session,
        limit=max(1, n.max_active_cases - n.active_cases) * 4,
        roles=skills.get("role", []),
        categories=skills.get("category", []),
        languages=skills.get("language", []),
    )
    done = 0
    failed: set[tuple[str | None, ...]] = set()
    for case in cases:
        key = waiting_key(case)
        if key in failed:
            continue
        staffed = retry_waiting_case(session, case.case_id, settings, now)
        if staffed:
            done += 1
        elif staffed is False:
            failed.add(key)
    return done


def sweep_sla(session: Session, settings: MediationSettings, now: datetime, limit: int = 50) -> int:
    """Replace neutrals who did not act within the SLA, and re-route their cases."""
    replaced = 0
    for a in repo.overdue_assignments(session, now, limit):
        case = session.get(MediationCase, a.case_id, with_for_update=True)
        session.refresh(a)
        if case is None or a.status != "active" or a.acted_at is not None:
            continue  # acted on or ended while we looked
        if case.stage == Stage.WAITING.value:
            # Part of a panel still being formed: nothing to act on yet, so the clock restarts.
            a.due_at = add_working_days(now, settings.sla_working_days, settings.holiday_dates)
            continue
        a.status = "replaced"
        a.ended_at = now
        a.end_reason = f"no action within {settings.sla_working_days} working days"
        repo.release_capacity(session, a.neutral_id)
        session.flush()
        route_case(session, case, a.role, settings, now, trigger="sla_breach", replaced=a)
        replaced += 1
        log.info("neutral replaced", extra={"case_id": a.case_id, "neutral_id": a.neutral_id})
    return replaced


# --- intake and case-lifecycle events from complaints ------------------------------------------


def take_escalated_case(
    session: Session, data: CaseEventV1, at: datetime, settings: MediationSettings
) -> None:
    if session.get(MediationCase, data.case_id) is not None:
        return  # already with mediation: a re-escalation changes nothing
    case = MediationCase(
        case_id=data.case_id,
        reference=data.reference,
        order_id=data.order_id,
        order_code=data.order_code,
        platform_id=data.platform_id,
        seller_id=data.seller_id,
        category=data.category,
        language=(data.language or "vi").lower(),
        claimed_amount=data.claimed_amount,
        currency=data.currency,
        desired_outcome=data.desired_outcome,
        # Neutrals only ever see the consumer's contact masked, so only that is kept here.
        consumer_name=mask_name(data.consumer.name) if data.consumer.name else None,
        consumer_phone=mask_phone(data.consumer.phone) if data.consumer.phone else None,
        consumer_email=mask_email(data.consumer.email) if data.consumer.email else None,
        subject_id=privacy.buyer_subject(data, settings),
        stage=Stage.WAITING.value,
        waiting_role=None,
        escalated_at=at,
        updated_at=utcnow(),
    )
    session.add(case)
    _timeline(
        session,
        case.case_id,
        "case.escalated",
        data.actor.role,
        data.actor.id,
        data.reason or "escalated to mediation",
    )
    # Routing reads only neutrals (and writes their counters directly), never the new rows, so
    # those are written once, together, when routing is done.
    with session.no_autoflush:
        route_case(session, case, MEDIATOR, settings, utcnow(), trigger="escalated", fresh=True)
    session.flush()


def release_case(
    session: Session, case_id: str, stage: Stage, reason: str, settings: MediationSettings
) -> list[str]:
    """The case left mediation: end its assignments, free capacity, let the queue move."""
    case = session.get(MediationCase, case_id)
    if case is None:
        return []
    now = utcnow()
    freed = []
    for a in repo.active_assignments(session, case_id):
        a.status = "released"
        a.ended_at = now
        a.end_reason = reason
        repo.release_capacity(session, a.neutral_id)
        freed.append(a.neutral_id)
    if case.stage in [s.value for s in OPEN_STAGES]:
        case.stage = stage.value
    case.waiting_role = None
    case.queued_at = None
    case.updated_at = now
    session.flush()
    for nid in freed:
        retry_for_neutral(session, nid, settings, now)
    return freed


def _learn_subject(case: MediationCase, data: CaseEventV1, settings: MediationSettings) -> None:
    """A case taken in before its buyer could be named learns them from a later event."""
    if case.subject_id is None:
        case.subject_id = privacy.buyer_subject(data, settings)


def case_left(
    session: Session, data: CaseEventV1, event_type: str, settings: MediationSettings
) -> None:
    case = session.get(MediationCase, data.case_id)
    if case is None:
        return
    _learn_subject(case, data, settings)
    _timeline(
        session, data.case_id, event_type, data.actor.role, data.actor.id, data.reason or event_type
    )
    release_case(session, data.case_id, Stage.CLOSED, event_type, settings)
    # An erasure deferred while the case was open can complete now.
    privacy.resume_erasures(session, case, settings)


def proposal_answered(session: Session, data: CaseEventV1, accepted: bool) -> None:
    proposal_id = str(data.details.get("proposal_id") or "")
    party = str(data.details.get("party") or data.actor.role)
    proposal = session.get(Proposal, proposal_id) if proposal_id else None
    if proposal is None or proposal.case_id != data.case_id:
        return
    answer = "accepted" if accepted else "rejected"
    if party == "consumer":
        proposal.consumer_answer = answer
    else:
        proposal.platform_answer = answer
    if not accepted:
        proposal.status = "rejected"
    elif proposal.consumer_answer == "accepted" and proposal.platform_answer == "accepted":
        proposal.status = "accepted"
    _timeline(
        session,
        data.case_id,
        f"proposal.{answer}",
        party,
        data.actor.id,
        f"{party} {answer} proposal {proposal_id}",
    )


# --- neutrals' actions ------------------------------------------------------------------------


@dataclass(frozen=True)
class Caller:
    neutral_id: str | None
    roles: tuple[str, ...]
    is_admin: bool = False


def _case_for(session: Session, case_id: str, caller: Caller) -> MediationCase:
    # Row lock: a neutral's action and an SLA replacement of that neutral must not interleave.
    case = session.get(MediationCase, case_id, with_for_update=True)
    if case is None:
        raise not_found("case")
    if caller.is_admin:
        return case
    if (
        caller.neutral_id is None
        or repo.neutral_assignment(session, case_id, caller.neutral_id) is None
    ):
        raise not_found("case")  # not the caller's: indistinguishable from absent
    return case


def _active_role(session: Session, case_id: str, caller: Caller, role: str) -> Assignment:
    for a in repo.active_assignments(session, case_id, role):
        if a.neutral_id == caller.neutral_id:
            return a
    raise Problem(409, "Conflict", f"you are not the active {role} of this case")


def _acted(a: Assignment, now: datetime) -> None:
    if a.acted_at is None:
        a.acted_at = now


def make_proposal(
    session: Session, case_id: str, caller: Caller, outcome: str, amount: int | None, terms: str
) -> Proposal:
    case = _case_for(session, case_id, caller)
    assignment = _active_role(session, case_id, caller, MEDIATOR)
    if case.stage != Stage.MEDIATION.value:
        raise Problem(409, "Conflict", "proposals are made only while the case is in mediation")
    try:
        check_outcome(outcome, amount)
    except RuleViolation as exc:
        raise Problem(
            422,
            "Unprocessable Content",
            str(exc),
            errors=[{"field": exc.field, "reason": exc.reason}],
        ) from exc
    now = utcnow()
    for open_p in session.execute(
        select(Proposal).where(Proposal.case_id == case_id, Proposal.status == "open")
    ).scalars():
        open_p.status = "superseded"
    proposal = Proposal(
        proposal_id=new_id("prp"),
        case_id=case_id,
        mediator_id=assignment.neutral_id,
        outcome=outcome,
        amount=amount,
        terms=terms,
        status="open",
        created_at=now,
    )
    session.add(proposal)
    _acted(assignment, now)
    _publish(
        session,
        "mediation.proposal_made",
        case,
        neutral_id=assignment.neutral_id,
        neutral_role=MEDIATOR,
        assignment_id=assignment.assignment_id,
        actor=Actor(role="mediator", id=assignment.neutral_id),
        proposal={
            "proposal_id": proposal.proposal_id,
            "outcome": outcome,
            "amount": amount,
            "currency": case.currency,
            "terms": terms,
        },
    )
    _timeline(
        session,
        case_id,
        "mediation.proposal_made",
        "mediator",
        assignment.neutral_id,
        f"proposal {proposal.proposal_id}: {outcome}"
        + (f" {amount:,} {case.currency}" if amount is not None else ""),
    )
    return proposal


def record_message(
    session: Session, case_id: str, caller: Caller, message_id: str | None, body: str
) -> None:
    """A neutral wrote to the parties.

    With a `message_id` complaints already stored it (and told everyone with
    case.message_posted): only our record changes. Without one complaints was unreachable, so
    the message travels as mediation.message_posted through the outbox and complaints adds it
    to the case when it consumes the event: the message is never lost, nor posted twice.
    """
    case = _case_for(session, case_id, caller)
    role = MEDIATOR if case.stage == Stage.MEDIATION.value else ARBITRATOR
    assignment = _active_role(session, case_id, caller, role)
    now = utcnow()
    _acted(assignment, now)
    if message_id is None:
        _publish(
            session,
            "mediation.message_posted",
            case,
            neutral_id=assignment.neutral_id,
            neutral_role=role,
            assignment_id=assignment.assignment_id,
            actor=Actor(role=role, id=assignment.neutral_id),
            details={"text": body, "author_role": role},
        )
    _timeline(session, case_id, "mediation.message_posted", role, assignment.neutral_id, body[:500])


def escalate_to_arbitration(
    session: Session, case_id: str, caller: Caller, reason: str, settings: MediationSettings
) -> MediationCase:
    case = _case_for(session, case_id, caller)
    assignment = _active_role(session, case_id, caller, MEDIATOR)
    if case.stage != Stage.MEDIATION.value:
        raise Problem(409, "Conflict", "only a case in mediation can go to arbitration")
    now = utcnow()
    _acted(assignment, now)
    # The mediator's work is done: their capacity frees for the next case.
    assignment.status = "released"
    assignment.ended_at = now
    assignment.end_reason = "referred to arbitration"
    repo.release_capacity(session, assignment.neutral_id)
    for open_p in session.execute(
        select(Proposal).where(Proposal.case_id == case_id, Proposal.status == "open")
    ).scalars():
        open_p.status = "superseded"
    case.stage = Stage.ARBITRATION.value
    size = panel_size(case.claimed_amount, settings.panel_threshold_vnd)
    _publish(
        session,
        "case.referred_to_arbitration",
        case,
        neutral_id=assignment.neutral_id,
        neutral_role=MEDIATOR,
        assignment_id=assignment.assignment_id,
        actor=Actor(role="mediator", id=assignment.neutral_id),
        reason=reason,
        details={"panel_size": size},
    )
    _timeline(
        session, case_id, "case.referred_to_arbitration", "mediator", assignment.neutral_id, reason
    )
    session.flush()
    route_case(session, case, ARBITRATOR, settings, now, trigger="arbitration")
    retry_for_neutral(session, assignment.neutral_id, settings, now)
    return case


def submit_decision(
    session: Session,
    case_id: str,
    caller: Caller,
    outcome: str,
    amount: int | None,
    reasons: str,
    settings: MediationSettings,
) -> tuple[Decision | None, int, int]:
    """Record the arbitrator's vote; returns (decision if reached, votes cast, panel size)."""
    case = _case_for(session, case_id, caller)
    assignment = _active_role(session, case_id, caller, ARBITRATOR)
    if case.stage != Stage.ARBITRATION.value:
        raise Problem(409, "Conflict", "the case is not in arbitration")
    try:
        check_outcome(outcome, amount)
    except RuleViolation as exc:
        raise Problem(
            422,
            "Unprocessable Content",
            str(exc),
            errors=[{"field": exc.field, "reason": exc.reason}],
        ) from exc
    size = panel_size(case.claimed_amount, settings.panel_threshold_vnd)
    panel = repo.active_assignments(session, case_id, ARBITRATOR)
    if len(panel) < size:
        raise Problem(409, "Conflict", f"the panel is not complete yet ({len(panel)} of {size})")
    now = utcnow()
    vote = session.get(ArbitrationVote, (case_id, assignment.neutral_id))
    if vote is None:
        vote = ArbitrationVote(
            case_id=case_id,
            arbitrator_id=assignment.neutral_id,
            outcome=outcome,
            amount=amount,
            reasons=reasons,
            voted_at=now,
        )
        session.add(vote)
    else:
        vote.outcome, vote.amount, vote.reasons, vote.voted_at = outcome, amount, reasons, now
    _acted(assignment, now)
    session.flush()
    votes = [
        Vote(v.arbitrator_id, v.outcome, v.amount, v.reasons)
        for v in session.execute(
            select(ArbitrationVote)
            .where(ArbitrationVote.case_id == case_id)
            .order_by(ArbitrationVote.voted_at)
        ).scalars()
    ]
    _timeline(
        session,
        case_id,
        "arbitration.vote",
        "arbitrator",
        assignment.neutral_id,
        f"vote: {outcome}" + (f" {amount:,} {case.currency}" if amount is not None else ""),
    )
    winner = panel_majority(votes, size)
    if winner is None:
        return None, len(votes), size
    agreeing = [
        v.arbitrator_id for v in votes if (v.outcome, v.amount) == (winner.outcome, winner.amount)
    ]
    decision = Decision(
        case_id=case_id,
        decision_id=new_id("dec"),
        outcome=winner.outcome,
        amount=winner.amount,
        reasons=winner.reasons,
        decided_by=",".join(agreeing),
        decided_at=now,
    )
    session.add(decision)
    case.stage = Stage.DECIDED.value
    _publish(
        session,
        "arbitration.decided",
        case,
        neutral_id=assignment.neutral_id,
        neutral_role=ARBITRATOR,
        neutral_ids=[a.neutral_id for a in panel],
        assignment_id=assignment.assignment_id,
        actor=Actor(role="arbitrator", id=assignment.neutral_id),
        decision={
            "decision_id": decision.decision_id,
            "outcome": winner.outcome,
            "amount": winner.amount,
            "currency": case.currency,
            "reasons": winner.reasons,
            "decided_by": agreeing,
            "decided_at": now.isoformat(),
        },
    )
    _timeline(
        session,
        case_id,
        "arbitration.decided",
        "arbitrator",
        assignment.neutral_id,
        f"decision {winner.outcome}: {winner.reasons[:300]}",
    )
    session.flush()
    release_case(session, case_id, Stage.DECIDED, "decided", settings)
    return decision, len(votes), size


# --- reads ------------------------------------------------------------------------------------


def case_view(session: Session, case_id: str, caller: Caller) -> dict[str, Any]:
    case = _case_for(session, case_id, caller)
    assignments = list(
        session.execute(
            select(Assignment).where(Assignment.case_id == case_id).order_by(Assignment.assigned_at)
        ).scalars()
    )
    proposals = list(
        session.execute(
            select(Proposal).where(Proposal.case_id == case_id).order_by(Proposal.created_at)
        ).scalars()
    )
    timeline = list(
        session.execute(
            select(TimelineEntry).where(TimelineEntry.case_id == case_id).order_by(TimelineEntry.id)
        ).scalars()
    )
    decision = session.get(Decision, case_id)
    mine = (
        repo.neutral_assignment(session, case_id, caller.neutral_id) if caller.neutral_id else None
    )
    view: dict[str, Any] = {
        "case_id": case.case_id,
        "reference": case.reference,
        "order_id": case.order_id,
        "order_code": case.order_code,
        "platform_id": case.platform_id,
        "seller_id": case.seller_id,
        "category": case.category,
        "language": case.language,
        "claimed_amount": case.claimed_amount,
        "currency": case.currency,
        "desired_outcome": case.desired_outcome,
        "consumer": {
            "name": case.consumer_name,
            "phone": case.consumer_phone,
            "email": case.consumer_email,
        },
        "stage": case.stage,
        "waiting_role": case.waiting_role,
        "escalated_at": case.escalated_at.isoformat(),
        "panel_size": None,
        "my_role": mine.role if mine and mine.status == "active" else None,
        "my_due_at": mine.due_at.isoformat() if mine and mine.status == "active" else None,
        "assignments": [
            {
                "assignment_id": a.assignment_id,
                "neutral_id": a.neutral_id,
                "role": a.role,
                "status": a.status,
                "assigned_at": a.assigned_at.isoformat(),
                "due_at": a.due_at.isoformat(),
                "acted_at": a.acted_at.isoformat() if a.acted_at else None,
            }
            for a in assignments
        ],
        "proposals": [
            {
                "proposal_id": p.proposal_id,
                "outcome": p.outcome,
                "amount": p.amount,
                "terms": p.terms,
                "status": p.status,
                "consumer_answer": p.consumer_answer,
                "platform_answer": p.platform_answer,
                "created_at": p.created_at.isoformat(),
            }
            for p in proposals
        ],
        "decision": (
            {
                "decision_id": decision.decision_id,
                "outcome": decision.outcome,
                "amount": decision.amount,
                "reasons": decision.reasons,
                "decided_by": decision.decided_by.split(","),
                "decided_at": decision.decided_at.isoformat(),
            }
            if decision
            else None
        ),
        "timeline": [
            {
                "at": t.at.isoformat(),
                "type": t.kind,
                "actor": {"role": t.actor_role, "id": t.actor_id},
                "summary": t.summary,
            }
            for t in timeline
        ],
    }
    if caller.is_admin:
        view["routing"] = routing_history(session, case_id)
    return view


def routing_history(session: Session, case_id: str) -> list[dict[str, Any]]:
    decisions = list(
        session.execute(
            select(RoutingDecision)
            .where(RoutingDecision.case_id == case_id)
            .order_by(RoutingDecision.decided_at)
        ).scalars()
    )
    out = []
    for d in decisions:
        reasons = session.execute(
            select(RoutingReason.rule, RoutingReason.excluded).where(
                RoutingReason.decision_id == d.decision_id
            )
        ).all()
        out.append(
            {
                "decision_id": d.decision_id,
                "role": d.role,
                "needed": d.needed,
                "outcome": d.outcome,
                "trigger": d.trigger,
                "chosen": [c for c in d.chosen_ids.split(",") if c],
                "considered": d.considered,
                "excluded_by": dict(reasons),
                "explanation": d.explanation,
                "decided_at": d.decided_at.isoformat(),
            }
        )
    return out


def my_assignments(session: Session, neutral_id: str) -> list[dict[str, Any]]:
    return [
        {
            "assignment_id": a.assignment_id,
            "case_id": c.case_id,
            "reference": c.reference,
            "role": a.role,
            "stage": c.stage,
            "category": c.category,
            "language": c.language,
            "claimed_amount": c.claimed_amount,
            "currency": c.currency,
            "assigned_at": a.assigned_at.isoformat(),
            "due_at": a.due_at.isoformat(),
            "acted": a.acted_at is not None,
        }
        for a, c in repo.my_queue(session, neutral_id)
    ]


def waiting_queue(session: Session, limit: int = 500) -> list[dict[str, Any]]:
    return [
        {
            "case_id": c.case_id,
            "reference": c.reference,
            "platform_id": c.platform_id,
            "category": c.category,
            "language": c.language,
            "waiting_role": c.waiting_role,
            "claimed_amount": c.claimed_amount,
            "escalated_at": c.escalated_at.isoformat(),
            "queued_at": c.queued_at.isoformat() if c.queued_at else None,
        }
        for c in repo.waiting_cases(session, limit)
    ]
