"""Complaints use cases: one transaction each; state changes and their events leave together."""

from __future__ import annotations

import hmac
import logging
import secrets
import statistics
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from complaints import domain, repository
from complaints.access import can_see_case, can_see_order, party_side
from complaints.domain import Actor, Case, CaseEvent, DomainError, HolidayCalendar
from complaints.models import (
    CaseNeutral,
    CaseRecord,
    CaseTransition,
    Evidence,
    Offer,
    Order,
    OtpChallenge,
    Proposal,
    TimelineEntry,
)
from complaints.orders import SubjectOf, canonical_phone
from complaints.privacy.state import release_deferred_erasures
from complaints.settings import ComplaintsSettings
from complaints.storage import EvidenceStorage, sniff
from odr_shared.auth import Party, TokenService
from odr_shared.crypto import DataCipher
from odr_shared.db import utcnow
from odr_shared.events import (
    CASES_TOPIC,
    NOTIFICATIONS_TOPIC,
    CaseEventV1,
    CaseStatus,
    Contact,
    NotificationCommandV1,
    build_event,
)
from odr_shared.events import Actor as EventActor
from odr_shared.logs import mask_phone
from odr_shared.outbox import add_to_outbox
from odr_shared.privacy import KeyStore, Sealer
from odr_shared.problems import Problem, not_found
from odr_shared.ratelimit import Limit, hit

log = logging.getLogger(__name__)
SOURCE = "urn:odr:complaints"


@dataclass
class Deps:
    """Everything a use case needs besides its arguments, wired once in app.py or worker.py."""

    settings: ComplaintsSettings
    sessions: sessionmaker[Session]
    cipher: DataCipher
    calendar: HolidayCalendar
    storage: EvidenceStorage
    tokens: TokenService
    keys: KeyStore  # the data keys of the subjects whose data complaints publishes
    sealer: Sealer  # seals personal fields of what complaints publishes, under those keys
    subject_of: SubjectOf  # a phone's data subject id


@contextmanager
def _rules() -> Iterator[None]:
    """A broken lifecycle rule is a conflict with the case's state: 409."""
    try:
        yield
    except DomainError as exc:
        raise Problem(409, "Conflict", str(exc)) from exc


def _forbidden(action: str) -> Problem:
    return Problem(403, "Forbidden", f"your role may not {action}")


def actor_of(party: Party) -> Actor:
    if party.role == "platform":
        return Actor("platform", party.platform_id)
    if party.role in ("mediator", "arbitrator"):
        return Actor(party.role, party.neutral_id)
    if party.role == "consumer":
        return Actor("consumer", party.subject)
    return Actor("admin", party.subject)


# --------------------------------------------------------------------------- one-time codes


def _code_hash(cipher: DataCipher, challenge_id: str, code: str) -> str:
    return cipher.lookup_hash(f"otp:{challenge_id}:{code}")


def request_otp(
    deps: Deps, order_code: str, phone: str, client_ip: str, language: str = "vi"
) -> None:
    """Send a code if the order exists with this phone; the caller learns nothing either way."""
    s = deps.settings
    phone_norm = canonical_phone(phone)
    phone_hash = deps.cipher.lookup_hash(phone_norm)
    # Each limit commits its own count, so a refused request still counts.
    with deps.sessions.begin() as session:
        hit(session, Limit("otp-ip", s.otp_per_ip_per_hour, 3600), client_ip)
    with deps.sessions.begin() as session:
        hit(session, Limit("otp-phone", s.otp_per_phone_per_hour, 3600), phone_hash)
    with deps.sessions.begin() as session:
        orders = session.execute(
            select(Order).where(
                Order.order_code == order_code.strip(), Order.buyer_phone_hash == phone_hash
            )
        ).scalars()
        now = utcnow()
        for order in orders:
            subject_id = order.subject_id or deps.subject_of(phone_norm)
            challenge_id = str(uuid.uuid4())
            code = f"{secrets.randbelow(1_000_000):06d}"
            session.add(
                OtpChallenge(
                    id=challenge_id,
                    order_id=order.id,
                    phone_hash=phone_hash,
                    code_hash=_code_hash(deps.cipher, challenge_id, code),
                    created_at=now,
                    expires_at=now + timedelta(seconds=s.otp_ttl_s),
                    attempts=0,
                )
            )
            command = NotificationCommandV1(
                template="otp",
                channel="sms",
                recipient=Contact(
                    name=deps.cipher.decrypt(order.buyer_name_enc),
                    phone=phone_norm,
                    language=language,
                ),
                params={"code": code, "ttl_minutes": max(1, s.otp_ttl_s // 60)},
                urgent=True,
                order_id=order.id,
            )
            event = build_event(
                source=SOURCE, event_type="notification.send", subject=order.id, data=command
            )
            # The code and the recipient travel sealed under the buyer's key.
            sealed = deps.sealer.seal(session, event, subject_id)
            add_to_outbox(session, NOTIFICATIONS_TOPIC, phone_hash, sealed)
            log.info("otp issued", extra={"order_id": order.id, "phone": mask_phone(phone_norm)})


def verify_otp(deps: Deps, order_code: str, phone: str, code: str, client_ip: str) -> str:
    """Check a code; on success a consumer token for that order. Failures count as attempts."""
    s = deps.settings
    with deps.sessions.begin() as session:
        hit(session, Limit("otp-verify-ip", s.otp_verify_per_ip_per_hour, 3600), client_ip)
    phone_hash = deps.cipher.lookup_hash(canonical_phone(phone))
    invalid = Problem(
        400,
        "Bad Request",
        "code: invalid or expired",
        errors=[{"field": "code", "reason": "invalid or expired"}],
    )
    now = utcnow()
    with deps.sessions.begin() as session:
        challenges = list(
            session.execute(
                select(OtpChallenge)
                .join(Order, Order.id == OtpChallenge.order_id)
                .where(
                    Order.order_code == order_code.strip(),
                    OtpChallenge.phone_hash == phone_hash,
                    OtpChallenge.consumed_at.is_(None),
                    OtpChallenge.expires_at > now,
                    OtpChallenge.attempts < s.otp_max_attempts,
                )
                .order_by(OtpChallenge.created_at.desc())
                .with_for_update()
            ).scalars()
        )
        matched: OtpChallenge | None = None
        for ch in challenges:
            ch.attempts += 1
            expected = _code_hash(deps.cipher, ch.id, code.strip())
            if matched is None and hmac.compare_digest(expected, ch.code_hash):
                matched = ch
        if matched is None:
            session.flush()
        else:
            matched.consumed_at = now
            order = session.get(Order, matched.order_id)
            assert order is not None
            return deps.tokens.issue(
                role="consumer",
                subject=f"consumer:{matched.id}",
                ttl=timedelta(seconds=s.consumer_token_ttl_s),
                order_id=order.id,
                platform_id=order.platform_id,
            )
    raise invalid


# --------------------------------------------------------------------------- loading and saving


def _to_domain(rec: CaseRecord) -> Case:
    return Case(
        case_id=rec.id,
        status=CaseStatus(rec.status),
        opened_at=rec.opened_at,
        merchant_response_due_at=rec.merchant_response_due_at,
        first_response_at=rec.first_response_at,
        waiting_on_consumer_since=rec.waiting_on_consumer_since,
        offer_rejected=rec.offer_rejected,
        deadline_missed_at=rec.deadline_missed_at,
        settled_by=rec.settled_by,
    )


def _contact(deps: Deps, order: Order, language: str) -> Contact:
    c = deps.cipher
    if order.subject_id is None:
        # The buyer's data was erased: nothing left to tell.
        return Contact(language=language)
    return Contact(
        name=c.decrypt(order.buyer_name_enc),
        phone=c.decrypt(order.buyer_phone_enc),
        email=c.decrypt(order.buyer_email_enc) if order.buyer_email_enc else None,
        language=language,
    )


def _publish(session: Session, deps: Deps, rec: CaseRecord, ev: CaseEvent) -> None:
    order = session.get(Order, rec.order_id)
    assert order is not None
    payload = CaseEventV1(
        case_id=rec.id,
        reference=rec.reference,
        order_id=rec.order_id,
        platform_id=rec.platform_id,
        order_code=rec.order_code,
        seller_id=rec.seller_id,
        status=CaseStatus(rec.status),
        previous_status=ev.previous_status,
        category=rec.category,
        language=rec.language,
        claimed_amount=rec.claimed_amount,
        currency=rec.currency,
        desired_outcome=rec.desired_outcome,
        actor=EventActor(role=ev.actor.role, id=ev.actor.id),
        reason=ev.reason,
        merchant_response_due_at=rec.merchant_response_due_at,
        consumer=_contact(deps, order, rec.language),
        details=ev.details,
    )
    event = build_event(source=SOURCE, event_type=ev.type, subject=rec.id, data=payload, time=ev.at)
    # The buyer's contact, free text and details travel sealed under the buyer's key; a case
    # whose buyer was erased has none left, its key is then one of the case alone.
    subject_id = rec.subject_id or order.subject_id or f"case:{rec.id}"
    add_to_outbox(session, CASES_TOPIC, rec.id, deps.sealer.seal(session, event, subject_id))


def _save(session: Session, deps: Deps, rec: CaseRecord, case: Case) -> None:
    """Write the aggregate back, append its audit trail, queue its events."""
    rec.status = case.status.value
    rec.merchant_response_due_at = case.merchant_response_due_at
    rec.first_response_at = case.first_response_at
    rec.waiting_on_consumer_since = case.waiting_on_consumer_since
    rec.offer_rejected = case.offer_rejected
    rec.deadline_missed_at = case.deadline_missed_at
    rec.settled_by = case.settled_by
    rec.updated_at = utcnow()
    closing = not case.is_open and rec.open_order_id is not None
    if not case.is_open:
        rec.open_order_id = None
        rec.closed_at = rec.closed_at or rec.updated_at
    if closing:
        # Evidence retention counts from the closing; an erasure waiting on this case may go.
        session.execute(
            update(Evidence).where(Evidence.case_id == rec.id).values(case_closed_at=rec.closed_at)
        )
        session.flush()
        release_deferred_erasures(session, rec)
    for t in case.history:
        session.add(
            CaseTransition(
                case_id=rec.id,
                from_status=t.from_status.value if t.from_status else None,
                to_status=t.to_status.value,
                actor_role=t.actor.role,
                actor_id=t.actor.id,
                reason=t.reason,
                at=t.at,
            )
        )
    case.history.clear()
    session.flush()
    for ev in case.pop_events():
        _publish(session, deps, rec, ev)


def _entry(
    session: Session, rec: CaseRecord, kind: str, actor: Actor, at: datetime, **body: Any
) -> str:
    entry_id = str(uuid.uuid4())
    session.add(
        TimelineEntry(
            entry_id=entry_id,
            case_id=rec.id,
            kind=kind,
            actor_role=actor.role,
            actor_id=actor.id,
            at=at,
            body=body,
        )
    )
    return entry_id


def _visible_case(session: Session, party: Party, case_id: str, lock: bool = False) -> CaseRecord:
    rec = session.get(CaseRecord, case_id, with_for_update=lock)
    if rec is None or not can_see_case(
        party,
        order_id=rec.order_id,
        platform_id=rec.platform_id,
        neutral_ids=repository.active_neutral_ids(session, rec.id),
    ):
        raise not_found("case")
    return rec


# --------------------------------------------------------------------------- opening a case


def _order_for(session: Session, party: Party, order_code: str, platform_id: str | None) -> Order:
    if party.role == "consumer":
        platform_id = (party.order_id or "").partition(":")[0]
    elif party.role == "platform":
        platform_id = party.platform_id
    orders = [
        o
        for o in repository.find_orders(session, order_code, platform_id)
        if can_see_order(party, o.id, o.platform_id)
    ]
    if len(orders) != 1:
        raise not_found("order")
    return orders[0]


def open_case(
    deps: Deps,
    party: Party,
    *,
    order_code: str,
    category: str,
    description: str,
    desired_outcome: str,
    claimed_amount: int | None,
    language: str,
) -> CaseRecord:
    if party.role != "consumer":
        # The buyer files; a platform or admin may only follow the case.
        with deps.sessions() as session:
            _order_for(session, party, order_code, None)
        raise _forbidden("open a case")
    try:
        with deps.sessions.begin() as session:
            order = _order_for(session, party, order_code, None)
            existing = repository.open_case_for_order(session, order.id)
            if existing is not None:
                raise _duplicate(existing)
            now = utcnow()
            case_id = str(uuid.uuid4())
            case = Case.open(case_id, actor_of(party), now, deps.calendar)
            rec = CaseRecord(
                id=case_id,
                reference=repository.next_reference(session, deps.calendar.local_date(now).year),
                order_id=order.id,
                open_order_id=order.id,
                platform_id=order.platform_id,
                order_code=order.order_code,
                subject_id=order.subject_id,
                seller_id=order.seller_id,
                category=category,
                description=description,
                desired_outcome=desired_outcome,
                claimed_amount=claimed_amount,
                currency=order.currency,
                language=language,
                status=case.status.value,
                opened_at=now,
                merchant_response_due_at=case.merchant_response_due_at,
                offer_rejected=False,
                updated_at=now,
            )
            session.add(rec)
            session.flush()
            _save(session, deps, rec, case)
            return rec
    except IntegrityError:
        # Another request opened a case for this order at the same moment.
        with deps.sessions() as session:
            order = _order_for(session, party, order_code, None)
            existing = repository.open_case_for_order(session, order.id)
        if existing is None:
            raise
        raise _duplicate(existing) from None


def _duplicate(existing: CaseRecord) -> Problem:
    return Problem(
        409,
        "Conflict",
        f"this order already has an open case {existing.reference}",
        reference=existing.reference,
        case_id=existing.id,
    )


# --------------------------------------------------------------------------- the parties' actions


def post_message(deps: Deps, party: Party, case_id: str, text: str) -> str:
    with deps.sessions.begin() as session, _rules():
        rec = _visible_case(session, party, case_id, lock=True)
        case = _to_domain(rec)
        if not case.is_open:
            raise DomainError(f"the case is {case.status.value}")
        now = utcnow()
        actor = actor_of(party)
        if party.role == "consumer":
            case.consumer_acted(now, deps.calendar)
        elif party.role == "platform":
            # A platform's message asks something of the consumer: its clock waits.
            case.platform_answered(actor, now, waits_on_consumer=True)
        elif party.role not in ("mediator", "arbitrator"):
            raise _forbidden("post messages on a case")
        message_id = _entry(session, rec, "message", actor, now, text=text)
        case.events.append(
            CaseEvent(
                "case.message_posted",
                actor,
                now,
                details={"message_id": message_id, "author_role": actor.role},
            )
        )
        _save(session, deps, rec, case)
        return message_id


def _record_consent(
    session: Session, rec: CaseRecord, party: Party, actor: Actor, at: datetime, via: str
) -> None:
    """The consumer agreed that the case file is shared with the neutral (docs/privacy.md)."""
    if party.role == "consumer":
        _entry(session, rec, "consent", actor, at, purpose=CONSENT_SHARE_WITH_NEUTRAL, via=via)


CONSENT_SHARE_WITH_NEUTRAL = "share_with_neutral"


def add_evidence(
    deps: Deps,
    party: Party,
    case_id: str,
    filename: str,
    content: bytes,
    *,
    consent_share_with_neutral: bool = False,
) -> Evidence:
    if len(content) > deps.settings.evidence_max_bytes:
        raise Problem(
            413,
            "Content Too Large",
            f"file: larger than {deps.settings.evidence_max_bytes} bytes",
            errors=[{"field": "file", "reason": "too large"}],
        )
    kind = sniff(content)
    if kind is None:
        raise Problem(
            415,
            "Unsupported Media Type",
            "file: only JPEG, PNG, WebP images, PDF and MP4 are accepted",
            errors=[{"field": "file", "reason": "unsupported type"}],
        )
    content_type, ext = kind
    import hashlib

    key = f"{uuid.uuid4().hex}.{ext}"
    with deps.sessions.begin() as session, _rules():
        rec = _visible_case(session, party, case_id, lock=True)
        if party_side(party) is None:
            raise _forbidden("add evidence")
        case = _to_domain(rec)
        if not case.is_open:
            raise DomainError(f"the case is {case.status.value}")
        now = utcnow()
        actor = actor_of(party)
        if party.role == "consumer":
            case.consumer_acted(now, deps.calendar)
        else:
            case.platform_answered(actor, now, waits_on_consumer=False)
        deps.storage.save(key, content)
        ev = Evidence(
            id=str(uuid.uuid4()),
            case_id=rec.id,
            uploader_role=actor.role,
            uploader_id=actor.id,
            filename=_safe_filename(filename, ext),
            content_type=content_type,
            size=len(content),
            sha256=hashlib.sha256(content).hexdigest(),
            storage_key=key,
            uploaded_at=now,
        )
        session.add(ev)
        if consent_share_with_neutral:
            _record_consent(session, rec, party, actor, now, "evidence")
        _entry(session, rec, "evidence", actor, now, evidence_id=ev.id, filename=ev.filename)
        case.events.append(
            CaseEvent(
                "case.evidence_added",
                actor,
                now,
                details={"evidence_id": ev.id, "content_type": content_type, "size": ev.size},
            )
        )
        _save(session, deps, rec, case)
        return ev


def _safe_filename(name: str, ext: str) -> str:
    base = "".join(ch for ch in (name or "").rsplit("/", 1)[-1] if ch.isalnum() or ch in "._- ")
    base = base.strip()[:120] or "evidence"
    return base if base.lower().endswith(f".{ext}") else f"{base}.{ext}"


def read_evidence(
    deps: Deps, party: Party, case_id: str, evidence_id: str
) -> tuple[Evidence, bytes]:
    with deps.sessions() as session:
        rec = _visible_case(session, party, case_id)
        ev = session.get(Evidence, evidence_id)
        if ev is None or ev.case_id != rec.id:
            raise not_found("evidence")
        return ev, deps.storage.load(ev.storage_key)


def make_offer(
    deps: Deps, party: Party, case_id: str, kind: str, amount: int | None, terms: str | None
) -> Offer:
    with deps.sessions.begin() as session, _rules():
        rec = _visible_case(session, party, case_id, lock=True)
        if party.role != "platform":
            raise _forbidden("make offers")
        if kind in domain.OFFER_KINDS_WITH_AMOUNT and amount is None:
            raise Problem(
                422,
                "Unprocessable Content",
                f"amount: required for a {kind} offer",
                errors=[{"field": "amount", "reason": "required"}],
            )
        case = _to_domain(rec)
        now = utcnow()
        offer = Offer(
            id=str(uuid.uuid4()),
            case_id=rec.id,
            kind=kind,
            amount=amount,
            currency=rec.currency,
            terms=terms,
            status="pending",
            made_by=party.platform_id or "",
            made_at=now,
        )
        case.offer_made(actor_of(party), now, _offer_view(offer))
        # A new offer replaces one still waiting for an answer.
        session.execute(
            update(Offer)
            .where(Offer.case_id == rec.id, Offer.status == "pending")
            .values(status="superseded")
        )
        session.add(offer)
        _entry(session, rec, "offer", actor_of(party), now, offer_id=offer.id)
        _save(session, deps, rec, case)
        return offer


def answer_offer(
    deps: Deps, party: Party, case_id: str, offer_id: str, accept: bool, reason: str | None
) -> CaseRecord:
    with deps.sessions.begin() as session, _rules():
        rec = _visible_case(session, party, case_id, lock=True)
        if party.role != "consumer":
            raise _forbidden("answer offers")
        offer = session.get(Offer, offer_id)
        if offer is None or offer.case_id != rec.id:
            raise not_found("offer")
        if offer.status != "pending":
            raise DomainError(f"this offer is {offer.status}")
        case = _to_domain(rec)
        now = utcnow()
        actor = actor_of(party)
        if accept:
            case.offer_accepted(actor, now, deps.calendar, _offer_view(offer))
        else:
            case.offer_rejected_by_consumer(actor, now, deps.calendar, _offer_view(offer), reason)
        offer.status = "accepted" if accept else "rejected"
        offer.answered_at = now
        offer.answer_reason = reason
        _entry(
            session,
            rec,
            "offer_accepted" if accept else "offer_rejected",
            actor,
            now,
            offer_id=offer.id,
            reason=reason,
        )
        _save(session, deps, rec, case)
        return rec


def answer_proposal(
    deps: Deps, party: Party, case_id: str, proposal_id: str, accept: bool, reason: str | None
) -> CaseRecord:
    with deps.sessions.begin() as session, _rules():
        rec = _visible_case(session, party, case_id, lock=True)
        side = party_side(party)
        if side is None:
            raise _forbidden("answer a proposal")
        proposal = session.get(Proposal, proposal_id)
        if proposal is None or proposal.case_id != rec.id:
            raise not_found("proposal")
        if proposal.status != "pending" or rec.status != CaseStatus.IN_MEDIATION.value:
            raise DomainError(f"this proposal is {proposal.status}")
        current = proposal.consumer_response if side == "consumer" else proposal.platform_response
        if current is not None:
            raise DomainError(f"you already answered this proposal ({current})")
        answer = "accepted" if accept else "rejected"
        if side == "consumer":
            proposal.consumer_response = answer
        else:
            proposal.platform_response = answer
        case = _to_domain(rec)
        now = utcnow()
        actor = actor_of(party)
        case.events.append(
            CaseEvent(
                f"case.proposal_{answer}",
                actor,
                now,
                reason=reason,
                details={"proposal_id": proposal.id, "party": side},
            )
        )
        _entry(session, rec, f"proposal_{answer}", actor, now, proposal_id=proposal.id, party=side)
        if not accept:
            proposal.status = "rejected"
        elif proposal.consumer_response == proposal.platform_response == "accepted":
            proposal.status = "accepted"
            case.proposal_settled(actor, now, proposal.id)
        _save(session, deps, rec, case)
        return rec


def escalate(
    deps: Deps,
    party: Party,
    case_id: str,
    reason: str | None,
    *,
    consent_share_with_neutral: bool = False,
) -> CaseRecord:
    with deps.sessions.begin() as session, _rules():
        rec = _visible_case(session, party, case_id, lock=True)
        if party.role not in ("consumer", "platform", "admin"):
            raise _forbidden("escalate a case")
        case = _to_domain(rec)
        now = utcnow()
        case.escalate(actor_of(party), now, deps.calendar, reason)
        if consent_share_with_neutral:
            _record_consent(session, rec, party, actor_of(party), now, "escalation")
        _save(session, deps, rec, case)
        return rec


def withdraw(deps: Deps, party: Party, case_id: str, reason: str | None) -> CaseRecord:
    with deps.sessions.begin() as session, _rules():
        rec = _visible_case(session, party, case_id, lock=True)
        if party.role not in ("consumer", "admin"):
            raise _forbidden("withdraw a case")
        case = _to_domain(rec)
        case.withdraw(actor_of(party), utcnow(), reason)
        _save(session, deps, rec, case)
        return rec


# --------------------------------------------------------------------------- the deadline clock


def check_deadlines(deps: Deps, now: datetime | None = None) -> list[str]:
    """Escalate every case whose merchant deadline passed; each in its own transaction."""
    now = now or utcnow()
    with deps.sessions() as session:
        due = repository.cases_past_merchant_deadline(session, now)
    escalated: list[str] = []
    for case_id in due:
        with deps.sessions.begin() as session:
            rec = session.get(CaseRecord, case_id, with_for_update=True)
            if rec is None:
                continue
            case = _to_domain(rec)
            if case.check_deadline(now, deps.calendar):
                _save(session, deps, rec, case)
                escalated.append(case_id)
                log.info("merchant deadline missed: escalated", extra={"case_id": case_id})
    return escalated


# --------------------------------------------------------------------------- reading


def get_case(deps: Deps, party: Party, case_id: str) -> dict[str, Any]:
    with deps.sessions() as session:
        rec = _visible_case(session, party, case_id)
        return case_view(session, deps, rec, party)


def list_cases(
    deps: Deps, party: Party, platform_id: str | None, status: str | None
) -> list[dict[str, Any]]:
    with deps.sessions() as session:
        recs = repository.cases_for_party(session, party, platform_id, status)
        return [case_summary(r) for r in recs]


def case_summary(rec: CaseRecord) -> dict[str, Any]:
    return {
        "case_id": rec.id,
        "reference": rec.reference,
        "order_id": rec.order_id,
        "order_code": rec.order_code,
        "platform_id": rec.platform_id,
        "status": rec.status,
        "category": rec.category,
        "opened_at": rec.opened_at.isoformat(),
        "merchant_response_due_at": rec.merchant_response_due_at.isoformat(),
    }


def _offer_view(o: Offer) -> dict[str, Any]:
    return {
        "offer_id": o.id,
        "kind": o.kind,
        "amount": o.amount,
        "currency": o.currency,
        "terms": o.terms,
        "status": o.status,
        "made_at": o.made_at.isoformat(),
        "answered_at": o.answered_at.isoformat() if o.answered_at else None,
    }


def case_view(session: Session, deps: Deps, rec: CaseRecord, party: Party) -> dict[str, Any]:
    case = _to_domain(rec)
    now = utcnow()
    neutrals = list(
        session.execute(select(CaseNeutral).where(CaseNeutral.case_id == rec.id)).scalars()
    )
    mediator = next((n for n in neutrals if n.role == "mediator" and n.active), None)
    timeline: list[dict[str, Any]] = []
    for t in repository.transitions(session, rec.id):
        timeline.append(
            {
                "kind": "status",
                "at": t.at.isoformat(),
                "actor": {"role": t.actor_role, "id": t.actor_id},
                "from_status": t.from_status,
                "to_status": t.to_status,
                "reason": t.reason,
            }
        )
    for e in repository.timeline(session, rec.id):
        timeline.append(
            {
                "kind": e.kind,
                "id": e.entry_id,
                "at": e.at.isoformat(),
                "actor": {"role": e.actor_role, "id": e.actor_id},
                **e.body,
            }
        )
    timeline.sort(key=lambda x: x["at"])
    evidence = session.execute(
        select(Evidence).where(Evidence.case_id == rec.id).order_by(Evidence.uploaded_at)
    ).scalars()
    offers = session.execute(
        select(Offer).where(Offer.case_id == rec.id).order_by(Offer.made_at)
    ).scalars()
    proposals = session.execute(
        select(Proposal).where(Proposal.case_id == rec.id).order_by(Proposal.made_at)
    ).scalars()
    return {
        **case_summary(rec),
        "seller_id": rec.seller_id,
        "description": rec.description,
        "desired_outcome": rec.desired_outcome,
        "claimed_amount": rec.claimed_amount,
        "currency": rec.currency,
        "language": rec.language,
        "first_response_at": rec.first_response_at.isoformat() if rec.first_response_at else None,
        "waiting_on_consumer": case.is_paused,
        "merchant_deadline_passed": case.is_open
        and case.status in domain.MERCHANT_PHASE
        and case.merchant_deadline_passed(now, deps.calendar),
        "effective_merchant_response_due_at": case.effective_due(now, deps.calendar).isoformat(),
        "can_escalate": case.may_escalate(actor_of(party), now, deps.calendar),
        "can_withdraw": case.is_open and party.role in ("consumer", "admin"),
        "neutral_id": mediator.neutral_id if mediator else None,
        "arbitrator_ids": [n.neutral_id for n in neutrals if n.role == "arbitrator" and n.active],
        "decision": rec.decision,
        "closed_at": rec.closed_at.isoformat() if rec.closed_at else None,
        "offers": [_offer_view(o) for o in offers],
        "proposals": [
            {
                "proposal_id": p.id,
                "outcome": p.outcome,
                "amount": p.amount,
                "terms": p.terms,
                "status": p.status,
                "consumer_response": p.consumer_response,
                "platform_response": p.platform_response,
                "made_at": p.made_at.isoformat(),
            }
            for p in proposals
        ],
        "evidence": [
            {
                "evidence_id": e.id,
                "filename": e.filename,
                "content_type": e.content_type,
                "size": e.size,
                "uploaded_by": e.uploader_role,
                "uploaded_at": e.uploaded_at.isoformat(),
                "url": f"/v1/cases/{rec.id}/evidence/{e.id}",
            }
            for e in evidence
        ],
        "timeline": timeline,
    }


def platform_records(deps: Deps) -> list[dict[str, Any]]:
    """The public record per marketplace, from every case it received."""
    now = utcnow()
    with deps.sessions() as session:
        by_platform: dict[str, list[CaseRecord]] = {}
        for rec in session.execute(select(CaseRecord)).scalars():
            by_platform.setdefault(rec.platform_id, []).append(rec)
    records = []
    for platform_id, recs in sorted(by_platform.items()):
        # A case counts for promptness once it was answered or its deadline passed.
        judged = [r for r in recs if r.first_response_at or r.merchant_response_due_at < now]
        in_time = [
            r
            for r in judged
            if r.first_response_at and r.first_response_at <= r.merchant_response_due_at
        ]
        hours = [
            (r.first_response_at - r.opened_at).total_seconds() / 3600
            for r in recs
            if r.first_response_at
        ]
        concluded = [r for r in recs if CaseStatus(r.status) not in domain.OPEN_STATES]
        agreed = [r for r in concluded if r.settled_by in ("offer", "proposal")]
        decided = [r for r in recs if r.settled_by == "decision"]
        against = [r for r in decided if domain.decided_against_merchant(r.decision)]
        records.append(
            {
                "platform_id": platform_id,
                "cases_received": len(recs),
                "cases_open": len(recs) - len(concluded),
                "answered_in_time_pct": _pct(len(in_time), len(judged)),
                "median_first_response_hours": round(statistics.median(hours), 1)
                if hours
                else None,
                "settled_by_agreement_pct": _pct(len(agreed), len(concluded)),
                "decided_against_merchant_pct": _pct(len(against), len(decided)),
            }
        )
    return records


def _pct(n: int, total: int) -> float | None:
    return round(100.0 * n / total, 1) if total else None
