"""Mediation's part of the personal data lifecycle (docs/privacy.md).

Who is a data subject here, and under whose key each event travels
------------------------------------------------------------------
- The buyer of a case: `mediation_cases.subject_id`, from the `subject_id` of the cases.events
  that brought the case in, or computed from the consumer's phone when a v1 event carries it.
  Every mediation.events event about a case (queued, proposal made, message posted, referred to
  arbitration, decided) is sealed under the buyer's key: its free text (a proposal's terms, a
  message, a referral's reason, a decision's reasons) is about the buyer's dispute, and erasing
  the buyer must make every copy of it unreadable. A case whose buyer cannot be named (an old v1
  event without a phone) gets a subject of its own, `case_subject(case_id)`, destroyed when the
  case is erased by its id.
- A neutral, by their phone like a buyer (`neutral_subject`). `case.assigned` and
  `case.reassigned` carry the assigned neutral's contact (name, phone, e-mail) so notifications can
  tell them; their other personal fields hold nothing about the buyer (due date, trigger, panel
  size, the neutral replaced), so these two events are sealed under the NEUTRAL's key: when a
  neutral who left is erased, their contact in every copy of those events becomes unreadable,
  and a buyer's erasure has nothing of the buyer there to shred.

What an erasure request does here (`privacy.erasure_requested`, `erase`)
-----------------------------------------------------------------------
For each case of the subject (by subject id, the request's case ids and order ids; only the
request's platform's when it names one; never a case recorded for another subject):
- a case still open in mediation (waiting, mediation, arbitration) is left as it is: the
  neutrals and the parties still need it. The report is `deferred`, `until` =
  `PRIVACY_OPEN_CASE_DEFER_DAYS` from now, and the subject's keys are kept (the open case's
  events must still open for complaints and notifications). Mediation remembers the request
  (`pending_erasures`) and applies it again when complaints closes, resolves or withdraws the
  case (`resume_erasures`): once none of the subject's cases is open, the erasure completes and a
  second `privacy.erasure_reported` with the same request id says so. A request complaints sends
  again after the case closed does the same (whichever arrives first; the other finds nothing
  left to do).
- a case decided or closed is anonymised at once: the masked consumer contact, the order's id
  and code and the subject id are cleared; proposals' terms, arbitrators' votes' reasons, the
  timeline's summaries (which hold messages, reasons, escalation texts) and the consumer's id as
  an actor are replaced by `ERASED`. Kept, without the person, for statistics: stage, dates,
  category, language, platform, seller, amounts, desired outcome (a fixed category), proposals'
  outcomes and answers, assignments and routing decisions (who handled the case, how fast).
- The arbitral award of a decided case (`decisions`: outcome, amount, reasons, arbitrators,
  date) is a record kept against erasure for `RETENTION_ARBITRATION_AWARD_DAYS` after the
  decision (default 5 years: the time within which a party may request the enforcement of a
  judgment or an arbitral award, Law on Enforcement of Civil Judgments Art. 30; to be confirmed
  by counsel). Its reasons stay in mediation's database until then, with the case's
  subject id so a later request finds it; everything else of the case is anonymised, the
  subject's keys are destroyed (every copy of the award in mediation.events becomes unreadable;
  the database copy is the record kept) and the report is `deferred` with that `until`. After
  it, a new request erases the reasons too (complaints asks again at `until`).
- When nothing of the subject is open, the subject's keys are destroyed (and the per-case
  subjects' keys of the erased cases): every sealed copy in mediation.events and in outbox rows
  is unreadable from then on. A marketplace's redaction (`platform_id` set) anonymises that
  platform's cases only and keeps the subject's key, which also opens the events of their cases
  on other platforms.
- One `privacy.erasure_reported` (service `mediation`) goes out through the outbox in the same
  transaction, with what was done in `counts`.

Access (`export`): everything mediation holds about the subject's cases, in clear (mediation
keeps no ciphertexts in its tables), and nothing of anyone else: no neutral's name or contact,
no case recorded for another subject. A subject who is a neutral (by their phone) also gets
their profile (`neutral_profiles`).
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any

from argon2 import PasswordHasher
from sqlalchemy import ColumnElement, delete, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from mediation.domain import OPEN_STAGES
from mediation.models import (
    ArbitrationVote,
    Assignment,
    Base,
    Decision,
    MediationCase,
    Neutral,
    NeutralConflict,
    NeutralSkill,
    PendingErasure,
    Proposal,
    TimelineEntry,
)
from mediation.settings import MediationSettings, get_settings
from odr_shared.db import utcnow
from odr_shared.events import (
    CaseEventV1,
    ErasureReportedV1,
    ErasureRequestedV1,
)
from odr_shared.phone import InvalidPhone
from odr_shared.privacy import KeyStore, Sealer, subject_for_phone
from odr_shared.privacy.reports import report_erasure
from odr_shared.problems import Problem, not_found
from odr_shared.ratelimit import RATE_LIMIT_TABLE

log = logging.getLogger(__name__)

SERVICE = "mediation"
SOURCE = "odr/mediation"
# What replaces erased free text: Vietnamese first, English beside.
ERASED = "[đã xoá theo yêu cầu / erased on request]"
ERASED_NEUTRAL_NAME = "[người hoà giải đã xoá / erased neutral]"
_OPEN = [s.value for s in OPEN_STAGES]


# --- subjects ---------------------------------------------------------------------------------


def case_subject(case_id: str) -> str:
    """The subject of a case whose buyer cannot be named: its sealed events die with the case."""
    return "sc_" + hashlib.sha256(case_id.encode()).hexdigest()[:32]


def buyer_subject(data: CaseEventV1, settings: MediationSettings) -> str | None:
    """The buyer of a cases.events event: as complaints named them, or from their phone."""
    if data.subject_id:
        return data.subject_id
    if data.consumer.phone:
        try:
            return subject_for_phone(data.consumer.phone, settings)
        except InvalidPhone:
            return None
    return None


def neutral_subject(phone: str, neutral_id: str, settings: MediationSettings) -> str:
    """A neutral as a data subject: by their phone, like a buyer (their id if it is no phone)."""
    try:
        return subject_for_phone(phone, settings)
    except InvalidPhone:
        return "sn_" + hashlib.sha256(neutral_id.encode()).hexdigest()[:32]


def event_subject(case: MediationCase) -> str:
    """Whose key seals the events about a case: its buyer's, or the case's own."""
    return case.subject_id or case_subject(case.case_id)


# --- the sealer of the process ----------------------------------------------------------------


def install(sessions: sessionmaker[Session], settings: MediationSettings) -> KeyStore:
    """Give every session of this factory the process's sealer; returns the key store."""
    store = KeyStore.from_settings(settings)
    sessions.configure(info={"sealer": Sealer(store, owner=SERVICE), "settings": settings})
    return store


@lru_cache(maxsize=1)
def _default_sealer() -> Sealer:
    return Sealer(KeyStore.from_settings(get_settings()), owner=SERVICE)


def sealer_of(session: Session) -> Sealer:
    """The sealer `install` gave the session's factory (one from the environment otherwise)."""
    sealer = session.info.get("sealer")
    return sealer if isinstance(sealer, Sealer) else _default_sealer()


def settings_of(session: Session) -> MediationSettings:
    settings = session.info.get("settings")
    return settings if isinstance(settings, MediationSettings) else get_settings()


# --- erasure ----------------------------------------------------------------------------------


def _subject_cases(
    session: Session,
    subject_id: str,
    case_ids: list[str],
    order_ids: list[str],
    platform_id: str | None,
    *,
    lock: bool,
) -> list[MediationCase]:
    """The subject's cases: by subject, case id or order id; never one recorded for another."""
    match: list[ColumnElement[bool]] = [MediationCase.subject_id == subject_id]
    if case_ids:
        match.append(MediationCase.case_id.in_(case_ids))
    if order_ids:
        match.append(MediationCase.order_id.in_(order_ids))
    query = select(MediationCase).where(
        or_(*match),
        or_(MediationCase.subject_id.is_(None), MediationCase.subject_id == subject_id),
    )
    if platform_id is not None:
        query = query.where(MediationCase.platform_id == platform_id)
    if lock:
        query = query.with_for_update()
    return list(session.execute(query.order_by(MediationCase.case_id)).scalars())


def _anonymise_case(session: Session, case: MediationCase, keep_award: bool) -> dict[str, int]:
    counts: dict[str, int] = {}
    case_id = case.case_id
    case.consumer_name = case.consumer_phone = case.consumer_email = None
    case.order_id = ""
    case.order_code = ""
    if not keep_award:
        case.subject_id = None
    counts["proposals"] = _rowcount(
        session.execute(
            update(Proposal)
            .where(Proposal.case_id == case_id, Proposal.terms != ERASED)
            .values(terms=ERASED)
        )
    )
    counts["arbitration_votes"] = _rowcount(
        session.execute(
            update(ArbitrationVote)
            .where(ArbitrationVote.case_id == case_id, ArbitrationVote.reasons != ERASED)
            .values(reasons=ERASED)
        )
    )
    counts["timeline_entries"] = _rowcount(
        session.execute(
            update(TimelineEntry)
            .where(TimelineEntry.case_id == case_id, TimelineEntry.summary != ERASED)
            .values(summary=ERASED)
        )
    )
    # The consumer acts under their order's id: that links the entry back to them.
    session.execute(
        update(TimelineEntry)
        .where(TimelineEntry.case_id == case_id, TimelineEntry.actor_role == "consumer")
        .values(actor_id=None)
    )
    counts["decisions"] = 0
    if not keep_award:
        counts["decisions"] = _rowcount(
            session.execute(
                update(Decision)
                .where(Decision.case_id == case_id, Decision.reasons != ERASED)
                .values(reasons=ERASED)
            )
        )
    return counts


def _rowcount(result: Any) -> int:
    return int(getattr(result, "rowcount", 0) or 0)


def erase(
    session: Session,
    request: ErasureRequestedV1,
    settings: MediationSettings,
    store: KeyStore,
    now: datetime | None = None,
    *,
    resumed: bool = False,
) -> ErasureReportedV1 | None:
    """Erase or anonymise the subject's data here, in the caller's transaction, and report it
    (through the outbox). See the module's docstring for what is kept, and why.

    `resumed`: a deferred request applied again because one of its cases closed; it reports
    only once none of the subject's cases is open any more (None until then).
    """
    now = now or utcnow()
    subject_id = request.subject_id
    cases = _subject_cases(
        session,
        subject_id,
        request.case_ids,
        request.order_ids,
        request.platform_id,
        lock=True,
    )
    counts: dict[str, int] = {
        "cases": 0,
        "proposals": 0,
        "arbitration_votes": 0,
        "decisions": 0,
        "timeline_entries": 0,
        "deferred_cases": 0,
        "awards_kept": 0,
        "subject_keys": 0,
    }
    open_cases: list[str] = []
    award_until: datetime | None = None
    erased_case_ids: list[str] = []
    for case in cases:
        if case.stage in _OPEN:
            open_cases.append(case.case_id)
            continue
        decision = session.get(Decision, case.case_id)
        keep_until = (
            decision.decided_at + timedelta(days=settings.retention_arbitration_award_days)
            if decision is not None and decision.reasons != ERASED
            else None
        )
        keep_award = keep_until is not None and keep_until > now
        for kind, n in _anonymise_case(session, case, keep_award).items():
            counts[kind] += n
        counts["cases"] += 1
        erased_case_ids.append(case.case_id)
        if keep_award:
            assert keep_until is not None
            counts["awards_kept"] += 1
            award_until = keep_until if award_until is None else max(award_until, keep_until)
    counts["deferred_cases"] = len(open_cases)
    for case_id in erased_case_ids:
        counts["subject_keys"] += store.destroy(session, case_subject(case_id))
    pending = session.get(PendingErasure, request.request_id)
    if open_cases and pending is None:
        session.add(
            PendingErasure(
                request_id=request.request_id,
                subject_id=subject_id,
                platform_id=request.platform_id,
                case_ids=",".join(request.case_ids),
                order_ids=",".join(request.order_ids),
                requested_at=request.requested_at,
                deferred_at=now,
            )
        )
    elif not open_cases and pending is not None:
        session.delete(pending)
    reasons: list[str] = []
    until: datetime | None = None
    if open_cases:
        until = now + timedelta(days=settings.privacy_open_case_defer_days)
        reasons.append(
            f"{len(open_cases)} vụ việc còn đang hoà giải hoặc trọng tài, sẽ xoá khi kết thúc"
            f" / {len(open_cases)} case(s) still in mediation or arbitration, erased once closed:"
            f" {', '.join(open_cases)}"
        )
    elif request.platform_id is None:
        # Nothing of the subject is open: every sealed copy of their events becomes unreadable.
        # (A marketplace's redaction covers its own cases only: the key also opens the events
        # of the subject's cases on other platforms, so it stays.)
        counts["subject_keys"] += store.destroy(session, subject_id)
    if award_until is not None:
        until = award_until if until is None else max(until, award_until)
        reasons.append(
            "phán quyết trọng tài được lưu để thi hành đến "
            f"{award_until.date().isoformat()} / arbitral award kept for enforcement until "
            f"{award_until.date().isoformat()} (Law on Enforcement of Civil Judgments Art. 30)"
        )
    if resumed and open_cases:
        return None  # still deferred, as already reported
    report = ErasureReportedV1(
        request_id=request.request_id,
        service=SERVICE,
        subject_id=subject_id,
        status="deferred" if reasons else "completed",
        reason="; ".join(reasons) or None,
        until=until,
        counts=counts,
    )
    report_erasure(session, source=SOURCE, report=report)
    log.info(
        "erasure applied",
        extra={"request_id": request.request_id, "status": report.status, "counts": counts},
    )
    return report


def resume_erasures(session: Session, case: MediationCase, settings: MediationSettings) -> int:
    """The case left mediation (complaints closed, resolved or withdrew it): apply again the
    requests deferred while it was open. Returns how many were applied."""
    if case.stage in _OPEN:
        return 0
    match: list[ColumnElement[bool]] = [
        PendingErasure.case_ids.contains(case.case_id, autoescape=True)
    ]
    if case.subject_id:
        match.append(PendingErasure.subject_id == case.subject_id)
    pending = list(
        session.execute(
            select(PendingErasure).where(or_(*match)).order_by(PendingErasure.deferred_at)
        ).scalars()
    )
    store = sealer_of(session).store
    for p in pending:
        request = ErasureRequestedV1(
            request_id=p.request_id,
            subject_id=p.subject_id,
            platform_id=p.platform_id,
            case_ids=[c for c in p.case_ids.split(",") if c],
            order_ids=[o for o in p.order_ids.split(",") if o],
            requested_at=p.requested_at,
        )
        erase(session, request, settings, store, resumed=True)
    return len(pending)


# --- access -----------------------------------------------------------------------------------


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _neutral_profiles(
    session: Session, subject_id: str, settings: MediationSettings
) -> list[dict[str, Any]]:
    """The subject as a neutral (by their phone): their profile and how much they handled."""
    out = []
    for n in session.execute(select(Neutral).order_by(Neutral.created_at)).scalars():
        if not n.phone or neutral_subject(n.phone, n.neutral_id, settings) != subject_id:
            continue
        handled = session.execute(
            select(Assignment.role, Assignment.status).where(Assignment.neutral_id == n.neutral_id)
        ).all()
        out.append(
            {
                "neutral_id": n.neutral_id,
                "name": n.name,
                "email": n.email,
                "phone": n.phone,
                "roles": n.roles.split(","),
                "regions": [r for r in n.regions.split(",") if r],
                "language": n.language,
                "max_active_cases": n.max_active_cases,
                "on_leave": n.on_leave,
                "created_at": _iso(n.created_at),
                "assignments": len(handled),
            }
        )
    return out


def export(
    session: Session,
    subject_id: str,
    order_ids: list[str],
    case_ids: list[str],
    settings: MediationSettings | None = None,
) -> dict[str, list[dict[str, Any]]]:
    """Everything mediation holds about the subject, by kind; nothing of anyone else."""
    cases = _subject_cases(session, subject_id, case_ids, order_ids, None, lock=False)
    ids = [c.case_id for c in cases]
    records: dict[str, list[dict[str, Any]]] = {
        "cases": [],
        "assignments": [],
        "proposals": [],
        "decisions": [],
        "timeline": [],
        "neutral_profiles": _neutral_profiles(
            session, subject_id, settings or settings_of(session)
        ),
    }
    for c in cases:
        records["cases"].append(
            {
                "case_id": c.case_id,
                "reference": c.reference,
                "order_id": c.order_id,
                "order_code": c.order_code,
                "platform_id": c.platform_id,
                "seller_id": c.seller_id,
                "category": c.category,
                "language": c.language,
                "claimed_amount": c.claimed_amount,
                "currency": c.currency,
                "desired_outcome": c.desired_outcome,
                "consumer": {
                    "name": c.consumer_name,
                    "phone": c.consumer_phone,
                    "email": c.consumer_email,
                },
                "stage": c.stage,
                "escalated_at": _iso(c.escalated_at),
                "updated_at": _iso(c.updated_at),
            }
        )
    if not ids:
        return records
    # Which role handled the case and when; not who (a neutral's identity is theirs).
    for a in session.execute(
        select(Assignment).where(Assignment.case_id.in_(ids)).order_by(Assignment.assigned_at)
    ).scalars():
        records["assignments"].append(
            {
                "case_id": a.case_id,
                "role": a.role,
                "status": a.status,
                "assigned_at": _iso(a.assigned_at),
                "due_at": _iso(a.due_at),
                "ended_at": _iso(a.ended_at),
            }
        )
    for p in session.execute(
        select(Proposal).where(Proposal.case_id.in_(ids)).order_by(Proposal.created_at)
    ).scalars():
        records["proposals"].append(
            {
                "case_id": p.case_id,
                "proposal_id": p.proposal_id,
                "outcome": p.outcome,
                "amount": p.amount,
                "terms": p.terms,
                "status": p.status,
                "consumer_answer": p.consumer_answer,
                "platform_answer": p.platform_answer,
                "created_at": _iso(p.created_at),
            }
        )
    for d in session.execute(select(Decision).where(Decision.case_id.in_(ids))).scalars():
        records["decisions"].append(
            {
                "case_id": d.case_id,
                "decision_id": d.decision_id,
                "outcome": d.outcome,
                "amount": d.amount,
                "reasons": d.reasons,
                "decided_at": _iso(d.decided_at),
            }
        )
    for t in session.execute(
        select(TimelineEntry).where(TimelineEntry.case_id.in_(ids)).order_by(TimelineEntry.id)
    ).scalars():
        records["timeline"].append(
            {
                "case_id": t.case_id,
                "at": _iso(t.at),
                "type": t.kind,
                "actor_role": t.actor_role,
                "summary": t.summary,
            }
        )
    return records


# --- neutrals ---------------------------------------------------------------------------------


def erase_neutral(
    session: Session, neutral_id: str, settings: MediationSettings, store: KeyStore
) -> dict[str, int]:
    """A neutral who left: their name, e-mail, phone and login go, and the keys their contact
    was sealed under (case.assigned, case.reassigned); their assignments, decisions and routing
    history stay under their id, for the statistics of who handled what and how fast."""
    n = session.get(Neutral, neutral_id, with_for_update=True)
    if n is None:
        raise not_found("neutral")
    active = session.execute(
        select(Assignment.assignment_id).where(
            Assignment.neutral_id == neutral_id, Assignment.status == "active"
        )
    ).first()
    if active is not None:
        raise Problem(
            409,
            "Conflict",
            "người hoà giải còn vụ việc đang xử lý; hãy cho nghỉ và chuyển vụ việc trước"
            " / the neutral still has active cases: put them on leave and let them be"
            " reassigned first",
        )
    keys = store.destroy(session, neutral_subject(n.phone, neutral_id, settings))
    # The login rate limit counts attempts under the e-mail (mediation.api.login).
    windows = Base.metadata.tables[RATE_LIMIT_TABLE]
    session.execute(delete(windows).where(windows.c.bucket == f"neutral-login:email:{n.email}"))
    n.name = ERASED_NEUTRAL_NAME
    n.email = f"erased-{neutral_id}@invalid"
    n.phone = ""
    n.password_hash = PasswordHasher().hash(uuid.uuid4().hex)  # nobody knows it: no login
    n.on_leave = True
    n.work_start_minute = n.work_end_minute = None
    skills = _rowcount(
        session.execute(delete(NeutralSkill).where(NeutralSkill.neutral_id == neutral_id))
    )
    conflicts = _rowcount(
        session.execute(delete(NeutralConflict).where(NeutralConflict.neutral_id == neutral_id))
    )
    log.info("neutral erased", extra={"neutral_id": neutral_id})
    return {"neutrals": 1, "skills": skills, "conflicts": conflicts, "subject_keys": keys}
