"""Use cases: record the deliveries an event calls for (exactly once), list them, preferences."""

from __future__ import annotations

import json
import logging
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.orm import Session

from notifications.models import CaseContact, Delivery, RecipientPreference, UnsubscribeLink
from notifications.planner import (
    SOURCE_TOPICS,
    CaseContext,
    PlannedMessage,
    case_context,
    plan,
)
from notifications.rendering import RenderedMessage, Renderer, redacted
from odr_shared.auth import Party
from odr_shared.crypto import DataCipher
from odr_shared.db import utcnow
from odr_shared.events import CaseEventV1, CloudEvent, Contact, MediationEventV1
from odr_shared.logs import EMAIL_RE, mask_email, mask_phone
from odr_shared.phone import InvalidPhone, normalize_phone
from odr_shared.privacy import subject_for_phone
from odr_shared.problems import Problem

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Notifier:
    """What recording a delivery needs: the cipher for contact data and the templates."""

    cipher: DataCipher
    renderer: Renderer
    public_base_url: str = "http://127.0.0.1:8004"
    # When a delivery is recorded and first due: the dispatcher's clock, so both agree.
    clock: Callable[[], datetime] = utcnow
    # The key of data subject ids (odr_shared.privacy.subject_key_material), the same in every
    # service: a v1 (clear) event's recipient is named by `subject_for_phone` with it.
    subject_key: bytes = b""

    def subject_of(self, contact: Contact | None) -> str | None:
        """The data subject a contact belongs to: a keyed hash of its phone, if it has one."""
        if contact is None or not contact.phone or not self.subject_key:
            return None
        try:
            return subject_for_phone(contact.phone, self.subject_key)
        except InvalidPhone:
            return None


class InvalidAddress(ValueError):
    pass


def normalize_address(channel: str, raw: str) -> str:
    """The canonical form of a phone number (+84...) or an email address (lower case)."""
    raw = raw.strip()
    if channel == "sms":
        try:
            return normalize_phone(raw)
        except InvalidPhone as exc:
            raise InvalidAddress(str(exc)) from exc
    if "@" not in raw or raw.startswith("@") or raw.endswith("@") or len(raw) > 254:
        raise InvalidAddress("not an email address")
    return raw.lower()


def channel_of_contact(raw: str) -> str:
    return "email" if "@" in raw else "sms"


def mask_address(address: str) -> str:
    return mask_email(address) if "@" in address else mask_phone(address)


# A phone number as a parameter would put it in a body: a bare run of 9-12 digits. Unlike the
# log scrubber this leaves references (KN-2026-000123), amounts (1.500.000) and dates alone.
_BARE_PHONE = re.compile(r"(?<![\w\-./:])\+?\d{9,12}(?![\w\-/])")


def mask_contacts(text: str) -> str:
    """Mask email addresses and phone numbers in a message body kept for display."""
    text = EMAIL_RE.sub(lambda m: mask_email(m.group(0)), text)
    return _BARE_PHONE.sub(lambda m: mask_phone(m.group(0)), text)


# -- the case-contact projection ------------------------------------------------------------


def _consumer_of(cipher: DataCipher, row: CaseContact) -> Contact:
    # None: the consumer was erased (notifications.privacy); the case is still known.
    if row.consumer_enc is None:
        return Contact()
    return Contact.model_validate_json(cipher.decrypt(row.consumer_enc))


def remember_case(
    session: Session, cipher: DataCipher, event: CaseEventV1, subject_id: str | None
) -> str | None:
    """Keep the case's consumer contact current; returns the consumer's subject id.

    An event without the consumer's contact (a sealed event whose key was destroyed, or one
    that names nobody) leaves the contact known so far as it is.
    """
    row = session.get(CaseContact, event.case_id)
    consumer: Contact | None = event.consumer
    if row is not None and not (event.consumer.phone or event.consumer.email):
        consumer = None
        # Nor its subject: an erased consumer's case stays without one.
        subject_id = row.subject_id
    values = {
        "reference": event.reference,
        "order_id": event.order_id,
        "order_code": event.order_code,
        "platform_id": event.platform_id,
        "subject_id": subject_id,
        "updated_at": utcnow(),
    }
    if consumer is not None:
        values["consumer_enc"] = cipher.encrypt(consumer.model_dump_json())
    elif row is None:
        values["consumer_enc"] = None
    if row is None:
        session.add(CaseContact(case_id=event.case_id, **values))
    else:
        for key, value in values.items():
            setattr(row, key, value)
    session.flush()
    return subject_id


def known_case(session: Session, cipher: DataCipher, case_id: str) -> CaseContext | None:
    row = session.get(CaseContact, case_id)
    if row is None:
        return None
    return CaseContext(
        case_id=row.case_id,
        reference=row.reference,
        order_id=row.order_id,
        order_code=row.order_code,
        platform_id=row.platform_id,
        consumer=_consumer_of(cipher, row),
        subject_id=row.subject_id,
    )


# -- recording ------------------------------------------------------------------------------


def record_event(session: Session, notifier: Notifier, event: CloudEvent[BaseModel]) -> int:
    """Record every delivery the event calls for, in the consumer's transaction.

    Returns how many were new. A redelivered event is normally stopped by the inbox; the unique
    (event, recipient, channel) index and the check below make a second copy impossible anyway.
    """
    payload = event.data
    ctx: CaseContext | None = None
    if isinstance(payload, CaseEventV1):
        # A sealed (v2) event names its subject; a clear (v1) one is named by the phone.
        subject_id = payload.subject_id or notifier.subject_of(payload.consumer)
        subject_id = remember_case(session, notifier.cipher, payload, subject_id)
        ctx = case_context(payload, subject_id)
    elif isinstance(payload, MediationEventV1):
        ctx = known_case(session, notifier.cipher, payload.case_id)
    source_topic = SOURCE_TOPICS.get(type(payload), "unknown")
    created = 0
    for planned in plan(event.type, payload, ctx):
        if record_planned(session, notifier, event.id, event.type, source_topic, planned):
            created += 1
    return created


def subject_of_planned(notifier: Notifier, planned: PlannedMessage) -> str | None:
    """Whose data a delivery is: the subject the planner knew (the event's or the case's), else
    the recipient's phone's. A neutral is never given the buyer's subject (see planner)."""
    return planned.subject_id or notifier.subject_of(planned.recipient)


def _contact_for(planned: PlannedMessage) -> str:
    if planned.channel == "sms":
        return planned.recipient.phone or ""
    return planned.recipient.email or ""


def record_planned(
    session: Session,
    notifier: Notifier,
    event_id: str,
    event_type: str,
    source_topic: str,
    planned: PlannedMessage,
) -> bool:
    cipher = notifier.cipher
    raw = _contact_for(planned)
    error: str | None = None
    try:
        address = normalize_address(planned.channel, raw)
    except InvalidAddress as exc:
        address, error = raw, f"invalid {planned.channel} address: {exc}"
    recipient_hash = cipher.lookup_hash(address)
    exists = session.execute(
        select(Delivery.id).where(
            Delivery.event_id == event_id,
            Delivery.recipient_hash == recipient_hash,
            Delivery.channel == planned.channel,
        )
    ).first()
    if exists:
        return False
    subject_id = subject_of_planned(notifier, planned)
    language = planned.language
    params = dict(planned.params)
    if planned.category == "order_status" and error is None:
        token = unsubscribe_token(session, recipient_hash, subject_id)
        params["unsubscribe_url"] = f"{notifier.public_base_url.rstrip('/')}/u/{token}"
    rendered = notifier.renderer.render(planned.template, language, planned.channel, params)
    shown = notifier.renderer.render(planned.template, language, planned.channel, redacted(params))
    status = "pending"
    if error is not None:
        status = "failed"
    elif planned.category == "order_status" and opted_out_of_order_status(session, recipient_hash):
        status = "suppressed"
    now = notifier.clock()
    session.add(
        Delivery(
            channel=planned.channel,
            recipient_hash=recipient_hash,
            recipient_enc=cipher.encrypt(address),
            recipient_masked=mask_address(address),
            subject_id=subject_id,
            template=planned.template,
            language=language,
            category=planned.category,
            urgent=planned.urgent,
            content_enc=cipher.encrypt(_content_json(rendered)),
            body_enc=cipher.encrypt(mask_contacts(_display(shown))),
            status=status,
            attempts=0,
            last_error=error,
            event_id=event_id,
            event_type=event_type,
            source_topic=source_topic,
            case_id=planned.case_id,
            order_id=planned.order_id,
            platform_id=planned.platform_id,
            created_at=now,
            next_attempt_at=now if status == "pending" else None,
        )
    )
    session.flush()
    log.info(
        "delivery recorded",
        extra={
            "event_id": event_id,
            "template": planned.template,
            "channel": planned.channel,
            "status": status,
        },
    )
    return True


def _content_json(message: RenderedMessage) -> str:
    return json.dumps(
        {"text": message.text, "subject": message.subject, "html": message.html},
        ensure_ascii=False,
    )


def content_from_json(raw: str) -> RenderedMessage:
    doc = json.loads(raw)
    return RenderedMessage(text=doc["text"], subject=doc.get("subject"), html=doc.get("html"))


def _display(message: RenderedMessage) -> str:
    if message.subject:
        return f"{message.subject}\n\n{message.text}"
    return message.text


# -- preferences ----------------------------------------------------------------------------


def unsubscribe_token(session: Session, recipient_hash: str, subject_id: str | None = None) -> str:
    """The recipient's one opt-out token, made on first use (short enough for an SMS); each
    message that carries it renews it (retention counts from the last one)."""
    now = utcnow()
    link = session.execute(
        select(UnsubscribeLink).where(UnsubscribeLink.recipient_hash == recipient_hash)
    ).scalar_one_or_none()
    if link is None:
        link = UnsubscribeLink(
            token=secrets.token_urlsafe(9),
            recipient_hash=recipient_hash,
            subject_id=subject_id,
            created_at=now,
            last_used_at=now,
        )
        session.add(link)
    else:
        link.last_used_at = now
        link.subject_id = link.subject_id or subject_id
    session.flush()
    return link.token


def unsubscribe(session: Session, token: str, *, opt_out: bool = True) -> bool:
    """Follow an opt-out link; False if the token is unknown."""
    link = session.get(UnsubscribeLink, token)
    if link is None:
        return False
    _set_opt_out(session, link.recipient_hash, opt_out, link.subject_id)
    return True


def unsubscribe_link_exists(session: Session, token: str) -> bool:
    return session.get(UnsubscribeLink, token) is not None


def _set_opt_out(
    session: Session, recipient_hash: str, opt_out: bool, subject_id: str | None = None
) -> RecipientPreference:
    pref = session.get(RecipientPreference, recipient_hash)
    if pref is None:
        pref = RecipientPreference(recipient_hash=recipient_hash, updated_at=utcnow())
        session.add(pref)
    pref.subject_id = pref.subject_id or subject_id
    pref.order_status_opt_out = opt_out
    pref.updated_at = utcnow()
    return pref


def opted_out_of_order_status(session: Session, recipient_hash: str) -> bool:
    pref = session.get(RecipientPreference, recipient_hash)
    return bool(pref and pref.order_status_opt_out)


def set_order_status_preference(
    session: Session,
    cipher: DataCipher,
    contact: str,
    *,
    opt_out: bool,
    subject_key: bytes = b"",
) -> dict[str, Any]:
    """Order-status messages can be turned off; case messages (deadlines...) cannot."""
    try:
        address = normalize_address(channel_of_contact(contact), contact)
    except InvalidAddress as exc:
        raise Problem(
            422,
            "Unprocessable Content",
            "contact is neither a phone number nor an email address",
            errors=[{"field": "contact", "reason": str(exc)}],
        ) from exc
    subject_id = None
    if subject_key and "@" not in address:
        subject_id = subject_for_phone(address, subject_key)
    pref = _set_opt_out(session, cipher.lookup_hash(address), opt_out, subject_id)
    return preference_view(address, pref)


def get_preference(session: Session, cipher: DataCipher, contact: str) -> dict[str, Any]:
    try:
        address = normalize_address(channel_of_contact(contact), contact)
    except InvalidAddress as exc:
        raise Problem(
            422,
            "Unprocessable Content",
            "contact is neither a phone number nor an email address",
            errors=[{"field": "contact", "reason": str(exc)}],
        ) from exc
    pref = session.get(RecipientPreference, cipher.lookup_hash(address))
    return preference_view(address, pref)


def preference_view(address: str, pref: RecipientPreference | None) -> dict[str, Any]:
    return {
        "contact": mask_address(address),
        "order_status": not (pref and pref.order_status_opt_out),
        # Steps and deadlines of a person's own case always reach them.
        "case_updates": True,
        "updated_at": pref.updated_at.isoformat() if pref else None,
    }


# -- listing --------------------------------------------------------------------------------


def list_deliveries(
    session: Session,
    cipher: DataCipher,
    party: Party,
    *,
    recipient: str | None,
    case_id: str | None,
    channel: str | None,
    status: str | None = None,
    limit: int = 200,
) -> list[dict[str, Any]]:
    """Admins see everything with contacts in clear; a platform its own, a consumer their
    order's, both with contacts masked."""
    q = select(Delivery).order_by(Delivery.id.desc()).limit(limit)
    if party.is_admin:
        pass
    elif party.role == "platform":
        q = q.where(Delivery.platform_id == party.platform_id)
    elif party.role == "consumer":
        q = q.where(Delivery.order_id == party.order_id)
    else:
        raise Problem(403, "Forbidden", "deliveries are visible to admins, platforms, consumers")
    if recipient:
        try:
            address = normalize_address(channel_of_contact(recipient), recipient)
        except InvalidAddress:
            address = recipient.strip().lower()
        q = q.where(Delivery.recipient_hash == cipher.lookup_hash(address))
    if case_id:
        q = q.where(Delivery.case_id == case_id)
    if channel:
        q = q.where(Delivery.channel == channel)
    if status:
        q = q.where(Delivery.status == status)
    return [delivery_view(d, cipher, reveal=party.is_admin) for d in session.execute(q).scalars()]


def delivery_view(d: Delivery, cipher: DataCipher, *, reveal: bool) -> dict[str, Any]:
    """A delivery as the API shows it. An erased recipient shows as "" and a body erased or past
    its retention as ""; the delivery's facts stay."""
    recipient = d.recipient_masked
    if reveal and d.recipient_enc is not None:
        recipient = cipher.decrypt(d.recipient_enc)
    return {
        "id": d.id,
        "channel": d.channel,
        "recipient": recipient,
        "template": d.template,
        "language": d.language,
        "body": cipher.decrypt(d.body_enc) if d.body_enc is not None else "",
        "status": d.status,
        "attempts": d.attempts,
        "event_id": d.event_id,
        "case_id": d.case_id,
        "urgent": d.urgent,
        "last_error": d.last_error,
        "created_at": _iso(d.created_at),
        "next_attempt_at": _iso(d.next_attempt_at),
        "sent_at": _iso(d.sent_at),
    }


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None
