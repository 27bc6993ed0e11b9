"""Complaints' own data about one data subject: what an access export shows, what erasure removes.

Erasure (one transaction, `erase`): for the subject's orders (only one platform's when a
marketplace asked) and their cases:
- orders: the buyer's name, phone and email ciphertexts are emptied, the phone's lookup hash and
  the subject id removed (the buyer can no longer sign in with it); status, dates, seller, items
  and amounts stay;
- cases: the description, every timeline entry's free text (messages, notes, file names, offer
  and proposal terms, answers' reasons), the reasons of the audit trail's transitions, and an
  arbitration decision's reasons are removed; status, dates, category, desired outcome, amounts,
  how it was settled and the decision's outcome stay, so the public platform record (case
  statistics) does not change;
- evidence: the rows go, and their files are deleted from disk after the commit (a file left
  by a crash is swept as an orphan by the retention job);
- one-time codes of those orders and their per-phone counters, and complaints' outbox rows
  already sent for those cases and that phone (their payloads are sealed anyway);
- the subject's data keys are destroyed (crypto-shredding: every sealed copy of what complaints
  published, in every topic and backup, becomes unreadable), unless the request came from one
  marketplace and the subject still has orders of another one.

Complaints keeps nothing a law obliges it to: it defers only while a case of the subject is
open (the complaint is being handled; Law 19/2023 Art. 57), until that case closes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import MetaData, delete, or_, select, update
from sqlalchemy.orm import Session

from complaints.domain import MERCHANT_PHASE
from complaints.models import (
    CaseNeutral,
    CaseRecord,
    CaseTransition,
    Evidence,
    Offer,
    Order,
    OrderStatusChange,
    OtpChallenge,
    PrivacyExport,
    PrivacyRequest,
    Proposal,
    TimelineEntry,
)
from odr_shared.crypto import DataCipher
from odr_shared.db import utcnow
from odr_shared.events import CaseStatus
from odr_shared.outbox import outbox_table
from odr_shared.ratelimit import rate_limit_table

_OUTBOX = outbox_table(MetaData())
_LIMITS = rate_limit_table(MetaData())
# Timeline body fields that are not free text: kept when an entry is erased.
_KEPT_BODY_FIELDS = (
    "offer_id",
    "proposal_id",
    "evidence_id",
    "message_id",
    "party",
    "role",
    "purpose",  # a consent's purpose and how it was given: the proof outlives the person
    "via",
)
ERASED = ""


@dataclass
class Scope:
    orders: list[Order] = field(default_factory=list)
    cases: list[CaseRecord] = field(default_factory=list)

    @property
    def order_ids(self) -> list[str]:
        return sorted(o.id for o in self.orders)

    @property
    def case_ids(self) -> list[str]:
        return sorted(c.id for c in self.cases)

    @property
    def open_cases(self) -> list[CaseRecord]:
        return [c for c in self.cases if c.open_order_id is not None]


def scope(
    session: Session,
    subject_id: str | None,
    *,
    platform_id: str | None = None,
    order_ids: list[str] | tuple[str, ...] = (),
    lock: bool = False,
) -> Scope:
    """The subject's orders (by subject id, plus the given ids) and their cases."""
    conditions = []
    if subject_id:
        conditions.append(Order.subject_id == subject_id)
    if order_ids:
        conditions.append(Order.id.in_(list(order_ids)))
    if not conditions:
        return Scope()
    q = select(Order).where(or_(*conditions)).order_by(Order.id)
    if platform_id is not None:
        q = q.where(Order.platform_id == platform_id)
    if lock:
        q = q.with_for_update()
    orders = list(session.execute(q).scalars())
    if not orders:
        return Scope()
    cq = (
        select(CaseRecord)
        .where(CaseRecord.order_id.in_([o.id for o in orders]))
        .order_by(CaseRecord.opened_at)
    )
    if lock:
        cq = cq.with_for_update()
    return Scope(orders, list(session.execute(cq).scalars()))


def deferral_until(cases: list[CaseRecord]) -> datetime | None:
    """Until when open cases keep an erasure waiting: the merchant's deadline while all of them
    are in the merchant's phase, unknown (None) once a neutral handles one."""
    dues = []
    for c in cases:
        if CaseStatus(c.status) not in MERCHANT_PHASE:
            return None
        dues.append(c.merchant_response_due_at)
    return max(dues) if dues else None


# --------------------------------------------------------------------------- access


def _iso(at: datetime | None) -> str | None:
    return at.isoformat() if at else None


def _decrypt(cipher: DataCipher, value: str | None) -> str | None:
    if not value:
        return None
    try:
        return cipher.decrypt(value)
    except ValueError:
        return None


def export(
    session: Session, cipher: DataCipher, found: Scope, subject_id: str | None
) -> dict[str, Any]:
    """Everything complaints holds about the subject, decrypted: its orders, their cases (with
    messages, evidence list, offers, proposals, audit trail), one-time codes sent, its requests."""
    orders = []
    for o in found.orders:
        history = session.execute(
            select(OrderStatusChange)
            .where(OrderStatusChange.order_id == o.id)
            .order_by(OrderStatusChange.status_at)
        ).scalars()
        orders.append(
            {
                "order_id": o.id,
                "platform_id": o.platform_id,
                "order_code": o.order_code,
                "status": o.status,
                "status_at": _iso(o.status_at),
                "buyer": {
                    "name": _decrypt(cipher, o.buyer_name_enc),
                    "phone": _decrypt(cipher, o.buyer_phone_enc),
                    "email": _decrypt(cipher, o.buyer_email_enc),
                },
                "seller": {"id": o.seller_id, "name": o.seller_name},
                "items": o.items,
                "total_amount": o.total_amount,
                "currency": o.currency,
                "first_seen_at": _iso(o.first_seen_at),
                "history": [{"status": h.status, "status_at": _iso(h.status_at)} for h in history],
            }
        )
    cases = [_case_export(session, c) for c in found.cases]
    order_ids = [o.id for o in found.orders]
    codes: Any = (
        session.execute(
            select(OtpChallenge)
            .where(OtpChallenge.order_id.in_(order_ids))
            .order_by(OtpChallenge.created_at)
        ).scalars()
        if order_ids
        else []
    )
    requests: Any = (
        session.execute(
            select(PrivacyRequest)
            .where(PrivacyRequest.subject_id == subject_id)
            .order_by(PrivacyRequest.created_at)
        ).scalars()
        if subject_id
        else []
    )
    return {
        "orders": orders,
        "cases": cases,
        "one_time_codes": [
            {
                "order_id": ch.order_id,
                "sent_at": _iso(ch.created_at),
                "expires_at": _iso(ch.expires_at),
                "used_at": _iso(ch.consumed_at),
            }
            for ch in codes
        ],
        "privacy_requests": [
            {
                "request_id": r.id,
                "kind": r.kind,
                "status": r.status,
                "source": r.source,
                "acknowledged_at": _iso(r.acknowledged_at),
                "due_at": _iso(r.due_at),
                "completed_at": _iso(r.completed_at),
            }
            for r in requests
        ],
    }


def _case_export(session: Session, c: CaseRecord) -> dict[str, Any]:
    def rows(model: Any, order: Any) -> list[Any]:
        return list(
            session.execute(select(model).where(model.case_id == c.id).order_by(order)).scalars()
        )

    return {
        "case_id": c.id,
        "reference": c.reference,
        "order_id": c.order_id,
        "platform_id": c.platform_id,
        "status": c.status,
        "category": c.category,
        "description": c.description,
        "desired_outcome": c.desired_outcome,
        "claimed_amount": c.claimed_amount,
        "currency": c.currency,
        "language": c.language,
        "opened_at": _iso(c.opened_at),
        "merchant_response_due_at": _iso(c.merchant_response_due_at),
        "closed_at": _iso(c.closed_at),
        "decision": c.decision,
        "timeline": [
            {"kind": e.kind, "at": _iso(e.at), "actor_role": e.actor_role, **e.body}
            for e in rows(TimelineEntry, TimelineEntry.id)
        ],
        "transitions": [
            {
                "from_status": t.from_status,
                "to_status": t.to_status,
                "actor_role": t.actor_role,
                "reason": t.reason,
                "at": _iso(t.at),
            }
            for t in rows(CaseTransition, CaseTransition.id)
        ],
        "evidence": [
            {
                "evidence_id": e.id,
                "filename": e.filename,
                "content_type": e.content_type,
                "size": e.size,
                "sha256": e.sha256,
                "uploaded_by": e.uploader_role,
                "uploaded_at": _iso(e.uploaded_at),
            }
            for e in rows(Evidence, Evidence.uploaded_at)
        ],
        "offers": [
            {
                "offer_id": o.id,
                "kind": o.kind,
                "amount": o.amount,
                "terms": o.terms,
                "status": o.status,
                "made_at": _iso(o.made_at),
                "answered_at": _iso(o.answered_at),
                "answer_reason": o.answer_reason,
            }
            for o in rows(Offer, Offer.made_at)
        ],
        "proposals": [
            {
                "proposal_id": p.id,
                "outcome": p.outcome,
                "amount": p.amount,
                "terms": p.terms,
                "status": p.status,
                "consumer_response": p.consumer_response,
                "made_at": _iso(p.made_at),
            }
            for p in rows(Proposal, Proposal.made_at)
        ],
        "neutrals": [
            {"neutral_id": n.neutral_id, "role": n.role, "assigned_at": _iso(n.assigned_at)}
            for n in rows(CaseNeutral, CaseNeutral.id)
        ],
    }


# --------------------------------------------------------------------------- erasure


@dataclass
class Erased:
    counts: dict[str, int]
    storage_keys: list[str]  # evidence files to delete once the transaction committed
    phone_hashes: list[str]


def erase(session: Session, found: Scope) -> Erased:
    """Erase the scope's personal data (see the module's docstring); the caller commits."""
    order_ids = found.order_ids
    case_ids = found.case_ids
    counts = {"orders": len(order_ids), "cases": len(case_ids)}
    phone_hashes = sorted({o.buyer_phone_hash for o in found.orders if o.buyer_phone_hash})
    subjects = sorted({o.subject_id for o in found.orders if o.subject_id})
    storage_keys: list[str] = []
    if not order_ids:
        return Erased({**counts, "evidence_files": 0, "one_time_codes": 0}, [], [])
    now = utcnow()
    # An access export is a copy of everything: it goes with the data it copies.
    exports = session.execute(
        delete(PrivacyExport).where(
            PrivacyExport.request_id.in_(
                select(PrivacyRequest.id).where(PrivacyRequest.subject_id.in_(subjects))
            )
        )
    )
    counts["exports"] = int(getattr(exports, "rowcount", 0) or 0)
    session.execute(
        update(Order)
        .where(Order.id.in_(order_ids))
        .values(
            buyer_name_enc=ERASED,
            buyer_phone_enc=ERASED,
            buyer_email_enc=None,
            buyer_phone_hash=ERASED,
            subject_id=None,
            updated_at=now,
        )
        .execution_options(synchronize_session=False)
    )
    deleted = session.execute(delete(OtpChallenge).where(OtpChallenge.order_id.in_(order_ids)))
    counts["one_time_codes"] = int(getattr(deleted, "rowcount", 0) or 0)
    if case_ids:
        for c in found.cases:
            c.description = ERASED
            c.subject_id = None
            if c.decision:
                c.decision = {k: v for k, v in c.decision.items() if k in ("outcome", "amount")}
            c.updated_at = now
        for e in session.execute(
            select(TimelineEntry).where(TimelineEntry.case_id.in_(case_ids))
        ).scalars():
            body = {k: v for k, v in (e.body or {}).items() if k in _KEPT_BODY_FIELDS}
            e.body = {**body, "erased": True}
        session.execute(
            update(CaseTransition)
            .where(CaseTransition.case_id.in_(case_ids), CaseTransition.actor_role != "system")
            .values(reason=None)
        )
        session.execute(
            update(Offer).where(Offer.case_id.in_(case_ids)).values(terms=None, answer_reason=None)
        )
        session.execute(update(Proposal).where(Proposal.case_id.in_(case_ids)).values(terms=None))
        storage_keys = list(
            session.execute(
                select(Evidence.storage_key).where(Evidence.case_id.in_(case_ids))
            ).scalars()
        )
        session.execute(delete(Evidence).where(Evidence.case_id.in_(case_ids)))
    counts["evidence_files"] = len(storage_keys)
    if phone_hashes:
        # The one-time codes' per-phone counters name the phone's lookup hash.
        session.execute(
            delete(_LIMITS).where(_LIMITS.c.bucket.in_([f"otp-phone:{h}" for h in phone_hashes]))
        )
    keys = [*case_ids, *phone_hashes]
    if keys:
        session.execute(
            delete(_OUTBOX).where(_OUTBOX.c.key.in_(keys), _OUTBOX.c.published_at.is_not(None))
        )
    session.flush()
    return Erased(counts, storage_keys, phone_hashes)


def other_orders_remain(session: Session, subject_id: str) -> bool:
    return (
        session.execute(select(Order.id).where(Order.subject_id == subject_id).limit(1)).first()
        is not None
    )
