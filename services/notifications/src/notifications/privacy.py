"""Personal data in notifications: erasure on `privacy.erasure_requested`, the access export.

What notifications holds about a person (docs/privacy.md):
- deliveries: the address (encrypted), the message sent (encrypted) and its display copy
  (encrypted, one-time codes redacted), and the facts of sending (channel, template, language,
  status, attempts, times, case, order, platform);
- case contacts: a case's consumer contact (name, phone, email, language; encrypted), learnt from
  cases.events, so that mediation events (which carry none) can still reach the consumer;
- preferences: whether order-status messages may go to an address (a lookup hash, not the
  address), and the opt-out links in those messages;
- subject keys: none in practice (nothing notifications publishes carries personal data), but
  the table is there and is emptied for the subject like every service's.

A person's rows are found by their data subject id (`subject_id`, odr_shared.privacy) and, for
rows written before subject ids existed or for an address that only ever received email, by the
lookup hashes of the person's addresses, learnt from their named rows, from the contacts of their
cases (`case_ids`) and from the order-status messages of their orders (`order_ids`, whose only
recipient is the buyer). A neutral's message on the same case has other hashes and another
subject: it is never touched by the buyer's erasure, nor shown in the buyer's export.

Erasure (`privacy.erasure_requested`, in the consumer's transaction, always `completed`: no law
makes notifications keep a message's content or address):
- deliveries: address, content, display body, provider reference and error are removed, the
  lookup hash is replaced by a value that names nobody and the subject id is cleared; channel,
  template, language, category, status, attempts, times, case, order and platform stay for
  statistics, without the person (`erased_at` stamps the row);
- deliveries not sent yet (`pending`, or `sending` when the erasure lands) are CANCELLED
  (`status = "cancelled"`), not sent first: sending would mean keeping the address and the text
  after the person asked for them to go, and no pending message is one the law requires (a
  one-time code is only useful to the person asking in that minute, and the erasure request
  itself was proven by an earlier code). A send already handed to the provider at that moment
  may still arrive; its outcome is not recorded (the row no longer says `sending`);
- case contacts: the consumer's contact and subject are removed; the case stays known by id,
  reference, order and platform, so mediation events of the case still reach its neutral and
  the consumer is no longer told;
- preferences: an opt-in (the default, nothing to remember) is deleted; an opt-out stays as a
  bare suppression entry (the lookup hash and the flag, the subject removed) so that the
  person's objection to order-status messages keeps being honoured; opt-out links are deleted;
- the subject's keys in this service's store are destroyed and the opener's cache forgets them;
- `privacy.erasure_reported` (service "notifications", counts per kind) goes out via the outbox.
With `platform_id` (a marketplace's redaction of its buyer), only that platform's deliveries and
case contacts are erased; preferences (not a platform's copy) and keys (the person's across
platforms) stay.

Access (`POST /internal/v1/privacy/export`): every delivery to the person (address and message
decrypted, codes redacted as in the admin view), the contacts of their cases, their preferences
and opt-out links; nothing of anyone else.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, delete, false, or_, select, update
from sqlalchemy.orm import Session

from notifications.deliveries import InvalidAddress, normalize_address
from notifications.models import CaseContact, Delivery, RecipientPreference, UnsubscribeLink
from odr_shared.crypto import DataCipher
from odr_shared.db import utcnow
from odr_shared.events import (
    CloudEvent,
    Contact,
    ErasureReportedV1,
    ErasureRequestedV1,
)
from odr_shared.privacy import KeyStore
from odr_shared.privacy.reports import report_erasure as shared_report_erasure

log = logging.getLogger(__name__)

SERVICE = "notifications"
NOT_SENT = ("pending", "sending")


def _in(column: Any, values: Iterable[str]) -> ColumnElement[bool]:
    wanted = sorted(set(values))
    return column.in_(wanted) if wanted else false()


def _contact_hashes(cipher: DataCipher, contact: Contact) -> set[str]:
    hashes: set[str] = set()
    for channel, raw in (("sms", contact.phone), ("email", contact.email)):
        if not raw:
            continue
        try:
            hashes.add(cipher.lookup_hash(normalize_address(channel, raw)))
        except InvalidAddress:
            continue
    return hashes


def _decrypt_contact(cipher: DataCipher, row: CaseContact) -> Contact:
    if row.consumer_enc is None:
        return Contact()
    return Contact.model_validate_json(cipher.decrypt(row.consumer_enc))


def subject_contacts(
    session: Session,
    subject_id: str,
    case_ids: Iterable[str],
    platform_id: str | None = None,
) -> list[CaseContact]:
    """The contacts of the subject's cases: named by the subject, or among `case_ids` and named
    by no one (written before subject ids)."""
    q = select(CaseContact).where(
        or_(
            CaseContact.subject_id == subject_id,
            _in(CaseContact.case_id, case_ids) & CaseContact.subject_id.is_(None),
        )
    )
    if platform_id is not None:
        q = q.where(CaseContact.platform_id == platform_id)
    return list(session.execute(q.order_by(CaseContact.case_id)).scalars())


def subject_hashes(
    session: Session,
    cipher: DataCipher,
    subject_id: str,
    case_ids: Iterable[str],
    order_ids: Iterable[str],
) -> set[str]:
    """The lookup hashes of the person's addresses, from every row that says whose it is."""
    hashes: set[str] = set(
        session.execute(
            select(Delivery.recipient_hash).where(Delivery.subject_id == subject_id)
        ).scalars()
    )
    for row in subject_contacts(session, subject_id, case_ids):
        hashes |= _contact_hashes(cipher, _decrypt_contact(cipher, row))
    # An order-status message goes to the order's buyer only.
    hashes |= set(
        session.execute(
            select(Delivery.recipient_hash).where(
                _in(Delivery.order_id, order_ids),
                Delivery.category == "order_status",
                Delivery.subject_id.is_(None),
                Delivery.erased_at.is_(None),
            )
        ).scalars()
    )
    for model in (RecipientPreference, UnsubscribeLink):
        hashes |= set(
            session.execute(
                select(model.recipient_hash).where(model.subject_id == subject_id)
            ).scalars()
        )
    return hashes


def _subject_deliveries(subject_id: str, hashes: set[str]) -> ColumnElement[bool]:
    # A row named by another subject is someone else's, whatever its address.
    return or_(
        Delivery.subject_id == subject_id,
        _in(Delivery.recipient_hash, hashes)
        & or_(Delivery.subject_id.is_(None), Delivery.subject_id == subject_id),
    )


# -- erasure --------------------------------------------------------------------------------


def erase_subject(
    session: Session,
    cipher: DataCipher,
    store: KeyStore,
    request: ErasureRequestedV1,
    *,
    clock: Callable[[], datetime] = utcnow,
) -> dict[str, int]:
    """Erase what notifications holds about the subject (module docstring); returns the counts
    reported back. Runs in the caller's transaction; a second run finds nothing left."""
    now = clock()
    subject_id = request.subject_id
    hashes = subject_hashes(session, cipher, subject_id, request.case_ids, request.order_ids)
    counts: dict[str, int] = {}

    q = select(Delivery).where(_subject_deliveries(subject_id, hashes))
    q = q.where(Delivery.erased_at.is_(None))
    if request.platform_id is not None:
        # That platform's messages: those it is named on, and those about its orders and cases
        # that name no platform (one-time codes, commands).
        q = q.where(
            or_(
                Delivery.platform_id == request.platform_id,
                Delivery.order_id.in_(request.order_ids or [""]),
                Delivery.case_id.in_(request.case_ids or [""]),
            )
        )
    erased = cancelled = 0
    for d in session.execute(q.order_by(Delivery.id)).scalars():
        if d.status in NOT_SENT:
            d.status = "cancelled"
            d.next_attempt_at = None
            cancelled += 1
        d.recipient_enc = None
        d.recipient_masked = ""
        # Unique with (event_id, channel), and derived from nothing of the person.
        d.recipient_hash = f"erased-{d.id}"
        d.subject_id = None
        d.content_enc = None
        d.body_enc = None
        d.provider_id = None
        d.last_error = None
        d.erased_at = now
        erased += 1
    counts["deliveries"] = erased
    counts["deliveries_cancelled"] = cancelled

    contacts = subject_contacts(session, subject_id, request.case_ids, request.platform_id)
    for row in contacts:
        row.consumer_enc = None
        row.subject_id = None
        row.updated_at = now
    counts["case_contacts"] = len(contacts)

    if request.platform_id is None:
        named = or_(
            RecipientPreference.subject_id == subject_id,
            _in(RecipientPreference.recipient_hash, hashes),
        )
        opted_in = session.execute(
            delete(RecipientPreference).where(
                named, RecipientPreference.order_status_opt_out.is_(False)
            )
        )
        kept = session.execute(
            update(RecipientPreference)
            .where(named, RecipientPreference.order_status_opt_out.is_(True))
            .values(subject_id=None, updated_at=now)
        )
        links = session.execute(
            delete(UnsubscribeLink).where(
                or_(
                    UnsubscribeLink.subject_id == subject_id,
                    _in(UnsubscribeLink.recipient_hash, hashes),
                )
            )
        )
        counts["preferences"] = _rowcount(opted_in)
        counts["opt_outs_kept"] = _rowcount(kept)
        counts["unsubscribe_links"] = _rowcount(links)
        counts["keys"] = store.destroy(session, subject_id)
    session.flush()
    return counts


def _rowcount(result: Any) -> int:
    return int(getattr(result, "rowcount", 0) or 0)


def report_erasure(
    session: Session, request: ErasureRequestedV1, counts: dict[str, int]
) -> CloudEvent[ErasureReportedV1]:
    """`privacy.erasure_reported` for complaints, queued in the caller's transaction. It carries
    no personal data (the subject id is a keyed hash), so there is nothing to seal."""
    return shared_report_erasure(
        session,
        source=SERVICE,
        report=ErasureReportedV1(
            request_id=request.request_id,
            service=SERVICE,
            subject_id=request.subject_id,
            status="completed",
            counts=counts,
        ),
    )


# -- access ---------------------------------------------------------------------------------


def export_subject(
    session: Session,
    cipher: DataCipher,
    subject_id: str,
    order_ids: Iterable[str] = (),
    case_ids: Iterable[str] = (),
) -> dict[str, list[dict[str, Any]]]:
    """Everything notifications holds about the subject, decrypted; nothing of anyone else."""
    case_ids, order_ids = list(case_ids), list(order_ids)
    hashes = subject_hashes(session, cipher, subject_id, case_ids, order_ids)
    addresses: dict[str, str] = {}
    deliveries: list[dict[str, Any]] = []
    rows = session.execute(
        select(Delivery).where(_subject_deliveries(subject_id, hashes)).order_by(Delivery.id)
    ).scalars()
    for d in rows:
        recipient = cipher.decrypt(d.recipient_enc) if d.recipient_enc is not None else None
        if recipient is not None:
            addresses[d.recipient_hash] = recipient
        subject_line = None
        if d.content_enc is not None:
            subject_line = json.loads(cipher.decrypt(d.content_enc)).get("subject")
        deliveries.append(
            {
                "id": d.id,
                "channel": d.channel,
                "recipient": recipient,
                "template": d.template,
                "language": d.language,
                "category": d.category,
                "email_subject": subject_line,
                # What was sent, one-time codes redacted; None past its retention.
                "body": cipher.decrypt(d.body_enc) if d.body_enc is not None else None,
                "status": d.status,
                "attempts": d.attempts,
                "case_id": d.case_id,
                "order_id": d.order_id,
                "platform_id": d.platform_id,
                "created_at": _iso(d.created_at),
                "sent_at": _iso(d.sent_at),
            }
        )
    contacts = [
        {
            "case_id": row.case_id,
            "reference": row.reference,
            "order_id": row.order_id,
            "order_code": row.order_code,
            "platform_id": row.platform_id,
            "contact": _decrypt_contact(cipher, row).model_dump(mode="json"),
            "updated_at": _iso(row.updated_at),
        }
        for row in subject_contacts(session, subject_id, case_ids)
    ]
    preferences = [
        {
            "contact": addresses.get(p.recipient_hash),
            "order_status": not p.order_status_opt_out,
            "case_updates": True,
            "updated_at": _iso(p.updated_at),
        }
        for p in session.execute(
            select(RecipientPreference)
            .where(
                or_(
                    RecipientPreference.subject_id == subject_id,
                    _in(RecipientPreference.recipient_hash, hashes),
                )
            )
            .order_by(RecipientPreference.updated_at)
        ).scalars()
    ]
    links = [
        {
            "contact": addresses.get(link.recipient_hash),
            "token": link.token,
            "created_at": _iso(link.created_at),
            "last_used_at": _iso(link.last_used_at),
        }
        for link in session.execute(
            select(UnsubscribeLink)
            .where(
                or_(
                    UnsubscribeLink.subject_id == subject_id,
                    _in(UnsubscribeLink.recipient_hash, hashes),
                )
            )
            .order_by(UnsubscribeLink.created_at)
        ).scalars()
    ]
    return {
        "deliveries": deliveries,
        "case_contacts": contacts,
        "preferences": preferences,
        "unsubscribe_links": links,
    }


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None
