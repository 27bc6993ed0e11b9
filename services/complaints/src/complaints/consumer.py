"""Complaints' Kafka handlers: orders.events feed the projection, mediation.events move cases,
privacy.events bring the other services' erasure reports and marketplaces' redaction requests."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from functools import partial
from typing import Any

from pydantic import BaseModel
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from complaints.domain import Actor, DomainError
from complaints.models import CaseNeutral, CaseRecord, Proposal
from complaints.orders import apply_order_event, apply_order_events
from complaints.privacy import handlers as privacy_handlers
from complaints.service import Deps, _entry, _save, _to_domain
from odr_shared.events import CaseStatus, CloudEvent, MediationEventV1
from odr_shared.kafka import BatchHandler, EventHandler

log = logging.getLogger(__name__)
GROUP_ID = "complaints"

MediationHandler = Callable[[Session, CaseRecord, MediationEventV1, Deps, CloudEvent[Any]], None]


def _actor(data: MediationEventV1) -> Actor:
    role = data.actor.role if data.actor.role != "consumer" else "system"
    return Actor(role, data.actor.id or data.neutral_id)


def _add_neutrals(session: Session, rec: CaseRecord, ids: list[str], role: str, at: Any) -> None:
    for nid in ids:
        existing = session.execute(
            select(CaseNeutral).where(
                CaseNeutral.case_id == rec.id,
                CaseNeutral.neutral_id == nid,
                CaseNeutral.role == role,
            )
        ).scalar_one_or_none()
        if existing is None:
            session.add(
                CaseNeutral(case_id=rec.id, neutral_id=nid, role=role, active=True, assigned_at=at)
            )
        else:
            existing.active = True
    session.flush()


def _neutral_ids(data: MediationEventV1) -> list[str]:
    ids = list(data.neutral_ids)
    if data.neutral_id and data.neutral_id not in ids:
        ids.insert(0, data.neutral_id)
    return ids


def on_assigned(
    session: Session, rec: CaseRecord, data: MediationEventV1, deps: Deps, ev: CloudEvent[Any]
) -> None:
    role = data.neutral_role or "mediator"
    ids = _neutral_ids(data)
    if not ids:
        raise ValueError("case.assigned without a neutral")
    if role == "mediator":
        # One mediator at a time: the previous one (if any) loses access.
        session.execute(
            update(CaseNeutral)
            .where(CaseNeutral.case_id == rec.id, CaseNeutral.role == "mediator")
            .values(active=False)
        )
    _add_neutrals(session, rec, ids, role, ev.time)
    actor = _actor(data)
    _entry(session, rec, "neutral_assigned", actor, ev.time, role=role, neutral_ids=ids)
    if role == "mediator":
        case = _to_domain(rec)
        if case.status == CaseStatus.ESCALATED:
            case.mediation_started(actor, ev.time, ids[0])
            _save(session, deps, rec, case)


def on_reassigned(
    session: Session, rec: CaseRecord, data: MediationEventV1, deps: Deps, ev: CloudEvent[Any]
) -> None:
    role = data.neutral_role or "mediator"
    ids = _neutral_ids(data)
    session.execute(
        update(CaseNeutral)
        .where(CaseNeutral.case_id == rec.id, CaseNeutral.role == role)
        .values(active=False)
    )
    _add_neutrals(session, rec, ids, role, ev.time)
    _entry(
        session,
        rec,
        "neutral_reassigned",
        _actor(data),
        ev.time,
        role=role,
        neutral_ids=ids,
        reason=data.reason,
    )


def on_queued(
    session: Session, rec: CaseRecord, data: MediationEventV1, deps: Deps, ev: CloudEvent[Any]
) -> None:
    _entry(session, rec, "queued", _actor(data), ev.time, reason=data.reason)


def on_proposal(
    session: Session, rec: CaseRecord, data: MediationEventV1, deps: Deps, ev: CloudEvent[Any]
) -> None:
    p = data.proposal or {}
    proposal_id = str(p.get("proposal_id") or uuid.uuid4())
    if session.get(Proposal, proposal_id) is not None:
        return
    session.execute(
        update(Proposal)
        .where(Proposal.case_id == rec.id, Proposal.status == "pending")
        .values(status="superseded")
    )
    amount = p.get("amount")
    session.add(
        Proposal(
            id=proposal_id,
            case_id=rec.id,
            outcome=str(p.get("outcome")) if p.get("outcome") else None,
            amount=int(amount) if amount is not None else None,
            terms=str(p.get("terms")) if p.get("terms") else None,
            made_by=data.neutral_id,
            made_at=ev.time,
            status="pending",
        )
    )
    _entry(session, rec, "proposal", _actor(data), ev.time, proposal_id=proposal_id)


def on_message(
    session: Session, rec: CaseRecord, data: MediationEventV1, deps: Deps, ev: CloudEvent[Any]
) -> None:
    text = data.details.get("text") or data.details.get("body") or data.reason or ""
    _entry(session, rec, "message", _actor(data), ev.time, text=str(text))


def on_referred(
    session: Session, rec: CaseRecord, data: MediationEventV1, deps: Deps, ev: CloudEvent[Any]
) -> None:
    case = _to_domain(rec)
    if case.status == CaseStatus.IN_ARBITRATION:
        return
    case.arbitration_started(_actor(data), ev.time, data.reason)
    _save(session, deps, rec, case)


def on_decided(
    session: Session, rec: CaseRecord, data: MediationEventV1, deps: Deps, ev: CloudEvent[Any]
) -> None:
    case = _to_domain(rec)
    if case.status in (CaseStatus.DECIDED, CaseStatus.CLOSED):
        return
    decision = dict(data.decision or {})
    rec.decision = decision
    case.decided(_actor(data), ev.time, decision)
    _entry(session, rec, "decision", _actor(data), ev.time, decision=decision)
    _save(session, deps, rec, case)


MEDIATION_HANDLERS: dict[str, MediationHandler] = {
    "case.assigned": on_assigned,
    "case.reassigned": on_reassigned,
    "case.queued": on_queued,
    "mediation.proposal_made": on_proposal,
    "mediation.message_posted": on_message,
    "case.referred_to_arbitration": on_referred,
    "arbitration.decided": on_decided,
}


def apply_mediation_event(session: Session, event: CloudEvent[BaseModel], deps: Deps) -> None:
    data = event.data
    assert isinstance(data, MediationEventV1)
    rec = session.get(CaseRecord, data.case_id, with_for_update=True)
    if rec is None:
        # Not a case of ours (another complaints deployment, or a test): nothing to move.
        log.warning("mediation event for an unknown case", extra={"case_id": data.case_id})
        return
    try:
        MEDIATION_HANDLERS[event.type](session, rec, data, deps, event)
    except DomainError as exc:
        # The case moved on (e.g. withdrawn) before mediation heard of it: keep a note, no retry.
        log.warning("mediation event does not apply", extra={"case_id": rec.id, "error": str(exc)})
        _entry(session, rec, "note", _actor(data), event.time, text=f"{event.type}: {exc}")


def handlers(deps: Deps, forget: Callable[[str], None] | None = None) -> dict[str, EventHandler]:
    """Every handler of the worker's consumer; `forget(subject_id)` drops the opener's cached
    keys of a subject another service reported erased."""
    table: dict[str, EventHandler] = {
        "order.status_changed": partial(
            apply_order_event, cipher=deps.cipher, subject_of=deps.subject_of
        )
    }
    for event_type in MEDIATION_HANDLERS:
        table[event_type] = partial(apply_mediation_event, deps=deps)
    table.update(privacy_handlers.handlers(deps, forget))
    return table


def batch_handlers(deps: Deps) -> dict[str, BatchHandler]:
    """Order events arrive in bursts (a marketplace's backfill, a busy hour): set-based."""
    return {
        "order.status_changed": partial(
            apply_order_events, cipher=deps.cipher, subject_of=deps.subject_of
        )
    }
