"""The gateway's part of the personal data lifecycle (issue 16, docs/privacy.md).

What the gateway holds about a buyer (a data subject, `odr_shared.privacy.subject_for_phone`):
- inbound webhook deliveries: the marketplace's body, encrypted (it carries the buyer's name,
  phone, email and address), kept for inspection and replay;
- order snapshots: the buyer's name, phone and email, encrypted (`buyer_enc`), merged into
  later status-only pushes;
- outbound case webhooks to the platform: the case as the platform may see it (consumer
  contact stripped before it is stored);
- `order.status_changed` events in its outbox and on `orders.events`: the buyer sealed under the
  subject's data key, which the gateway owns (`subject_keys`).

Erasure (`privacy.erasure_requested`): in one transaction the gateway deletes the bodies of the
subject's inbound deliveries and the personal values of their headers (the rows stay, with
platform, status, times and counts, for the operator's statistics); clears the buyer from the
subject's order snapshots (order code, status, seller, items and amounts stay); strips the
subject's outbound payloads down to the case's non-personal facts; deletes the published outbox
copies of the subject's order events; destroys the subject's keys, which makes every sealed copy
on `orders.events` unreadable; and reports `privacy.erasure_reported`. The gateway keeps no
record a law requires it to keep, so it never defers: its report is always `completed`.

A request scoped to one platform (`platform_id`, a marketplace's redaction) erases only that
platform's rows, and destroys the subject's keys only when the subject has no order with another
platform: those orders' events are sealed under the same keys and are not the requesting
marketplace's to erase.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import BaseModel
from sqlalchemy import Table, delete, or_, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from gateway.domain import Redaction
from gateway.models import InboundDelivery, InboundEvent, OrderSnapshot, OutboundDelivery
from gateway.settings import GatewaySettings
from odr_shared.crypto import DataCipher
from odr_shared.db import utcnow
from odr_shared.events import (
    ORDERS_TOPIC,
    Buyer,
    CloudEvent,
    ErasureReportedV1,
    ErasureRequestedV1,
    RedactionRequestedV1,
    build_event,
    order_id,
)
from odr_shared.kafka import EventHandler
from odr_shared.outbox import OUTBOX_TABLE
from odr_shared.phone import InvalidPhone
from odr_shared.privacy import KeyStore, Sealer, subject_for_phone
from odr_shared.privacy.reports import report_erasure

log = logging.getLogger(__name__)

SOURCE = "odr/marketplace-gateway"
SERVICE = "gateway"

_DELIVERIES: Table = InboundDelivery.__table__  # type: ignore[assignment]
_EVENTS: Table = InboundEvent.__table__  # type: ignore[assignment]
_SNAPSHOTS: Table = OrderSnapshot.__table__  # type: ignore[assignment]
_OUTBOUND: Table = OutboundDelivery.__table__  # type: ignore[assignment]

# Header names an erased delivery keeps: how it was sent, never who it was about.
_NEUTRAL_HEADERS = ("content-type", "user-agent", "webhook-id", "webhook-timestamp")
_NEUTRAL_SUFFIXES = ("-topic", "-webhook-id", "-shop-domain", "-shop-id", "-org-id", "-api-version")

# Fields of a case or mediation event that are about a person (odr_shared.privacy's
# PERSONAL_FIELDS of CaseEventV1 and MediationEventV1): what an erased outbound payload loses.
_OUTBOUND_PERSONAL = (
    "consumer",
    "desired_outcome",
    "reason",
    "details",
    "neutral_contact",
    "proposal",
    "decision",
)
_CHUNK = 500


class Subjects:
    """Data subjects of buyers and the sealing of the gateway's order events under their keys."""

    def __init__(self, settings: GatewaySettings, store: KeyStore) -> None:
        self.settings = settings
        self.store = store
        self.sealer = Sealer(store, owner=SERVICE)
        # A phone's subject is a keyed hash: cheap, but a backfill repeats one buyer often.
        self._cache: dict[str, str | None] = {}

    def of_phone(self, phone: str | None) -> str | None:
        if not phone:
            return None
        found = self._cache.get(phone, "")
        if found != "":
            return found
        try:
            subject: str | None = subject_for_phone(phone, self.settings)
        except InvalidPhone:
            subject = None
        if len(self._cache) > 100_000:
            self._cache.clear()
        self._cache[phone] = subject
        return subject

    def of_buyer(self, buyer: Buyer | None) -> str | None:
        return self.of_phone(buyer.phone) if buyer is not None else None

    def seal_many(
        self,
        conn: Connection | Session,
        events: Sequence[tuple[CloudEvent[Any], str | None]],
    ) -> list[CloudEvent[Any]]:
        """Seal each event's personal fields under its subject's key, in the caller's
        transaction (one key query for them all)."""
        session = conn if isinstance(conn, Session) else Session(bind=conn)
        try:
            sealed = self.sealer.seal_many(
                session, [(ev, subject or _unknown_subject(ev)) for ev, subject in events]
            )
            session.flush()
        finally:
            if session is not conn:
                session.close()
        return sealed


def _unknown_subject(event: CloudEvent[Any]) -> str:
    return order_subject(event.subject or event.id)


def order_subject(oid: str) -> str:
    """The subject an order's events are sealed under when its buyer's phone is no phone
    number (a marketplace that masks it): the order's own, destroyed with the order's erasure."""
    return "so_" + uuid.uuid5(uuid.NAMESPACE_URL, oid).hex


# -- marketplace redaction: a data-subject request arriving as a webhook ------------------------


@dataclass(frozen=True)
class ResolvedRedaction:
    """A marketplace's request resolved to one data subject and its orders here."""

    kind: str
    subject_id: str | None
    order_ids: list[str]
    event_id: str

    def event(self, platform_id: str, delivery_id: int) -> CloudEvent[RedactionRequestedV1]:
        return build_event(
            source=SOURCE,
            event_type="privacy.redaction_requested",
            subject=self.subject_id or platform_id,
            event_id=self.event_id,
            data=RedactionRequestedV1(
                platform_id=platform_id,
                kind=self.kind,
                subject_id=self.subject_id,
                order_ids=self.order_ids,
                source_delivery_id=str(delivery_id),
            ),
        )


def resolve_redaction(
    conn: Connection, platform_id: str, redaction: Redaction, subjects: Subjects
) -> list[ResolvedRedaction]:
    """The subject(s) and orders a marketplace's request is about.

    The orders are the listed references read as the gateway's order codes or as the
    marketplace's own order ids (Shopify's `orders_to_redact` are ids; the gateway met each id in
    the event keys of that order's deliveries). The subject is the phone's, when the request
    names a phone; otherwise the subject of each order's buyer, one request per subject.
    """
    oids = _orders_of(conn, platform_id, redaction.order_refs)
    phone_subject = subjects.of_phone(redaction.phone)
    if phone_subject is not None or not oids:
        return [ResolvedRedaction(redaction.kind, phone_subject, sorted(oids), str(uuid.uuid4()))]
    per_subject: dict[str | None, list[str]] = {}
    for oid, subject in sorted(oids.items()):
        per_subject.setdefault(subject, []).append(oid)
    return [
        ResolvedRedaction(redaction.kind, subject, found, str(uuid.uuid4()))
        for subject, found in per_subject.items()
    ]


def _orders_of(conn: Connection, platform_id: str, refs: Sequence[str]) -> dict[str, str | None]:
    """The gateway's orders (order id -> buyer's subject) named by a marketplace's references."""
    found = _snapshot_subjects(conn, platform_id, {order_id(platform_id, ref) for ref in refs})
    # A reference that is no order code: the marketplace's order id, which starts the keys of
    # the events the gateway saw of that order (Shopify's `orders_to_redact`). Rare, and the
    # prefix search reads the platform's event keys, so only for what the codes did not find.
    ids = [ref for ref in refs if order_id(platform_id, ref) not in found]
    candidates: set[str] = set()
    for chunk in _chunks(ids, 100):
        candidates.update(
            conn.execute(
                select(_EVENTS.c.order_id)
                .where(
                    _EVENTS.c.platform_id == platform_id,
                    or_(
                        *(
                            _EVENTS.c.event_key.startswith(f"{ref}|", autoescape=True)
                            for ref in chunk
                        )
                    ),
                )
                .distinct()
            ).scalars()
        )
    found.update(_snapshot_subjects(conn, platform_id, candidates))
    return found


def _snapshot_subjects(conn: Connection, platform_id: str, oids: set[str]) -> dict[str, str | None]:
    found: dict[str, str | None] = {}
    for chunk in _chunks(sorted(oids), _CHUNK):
        for row in conn.execute(
            select(_SNAPSHOTS.c.order_id, _SNAPSHOTS.c.subject_id).where(
                _SNAPSHOTS.c.order_id.in_(chunk), _SNAPSHOTS.c.platform_id == platform_id
            )
        ):
            found[row.order_id] = row.subject_id
    return found


# -- erasure ---------------------------------------------------------------------------------------


def erase_subject(
    session: Session, request: ErasureRequestedV1, cipher: DataCipher, subjects: Subjects
) -> dict[str, int]:
    """Erase what the gateway holds about `request.subject_id`, in the caller's transaction;
    the counts of what was erased, by kind. See this module's docstring."""
    subject = request.subject_id
    platform = request.platform_id
    oids = _subject_orders(session, subject, request.order_ids, platform, cipher, subjects)
    counts: dict[str, int] = {}

    # Inbound deliveries: the one buyer's deliveries, and those carrying one of its orders.
    delivery_ids = set(
        session.execute(
            _scoped(select(_DELIVERIES.c.id).where(_DELIVERIES.c.subject_id == subject), platform)
        ).scalars()
    )
    delivery_ids.update(_deliveries_carrying(session, oids))
    erased = 0
    for chunk in _chunks(sorted(delivery_ids), _CHUNK):
        rows = session.execute(
            _scoped(
                select(_DELIVERIES.c.id, _DELIVERIES.c.headers).where(_DELIVERIES.c.id.in_(chunk)),
                platform,
            )
        ).all()
        for row in rows:
            session.execute(
                update(_DELIVERIES)
                .where(_DELIVERIES.c.id == row.id)
                .values(body_enc=b"", headers=neutral_headers(row.headers or {}), subject_id=None)
            )
        erased += len(rows)
    counts["inbound_deliveries"] = erased

    # Order snapshots: the buyer goes, the order's facts stay.
    cleared = 0
    for chunk in _chunks(sorted(oids), _CHUNK):
        result = session.execute(
            update(_SNAPSHOTS)
            .where(_SNAPSHOTS.c.order_id.in_(chunk))
            .values(buyer_enc=None, subject_id=None)
        )
        cleared += _rowcount(result)
    counts["order_snapshots"] = cleared

    # Published outbox copies of the subject's order events (sealed since this release; older
    # ones carried the buyer in clear). Unsent rows are sealed and leave as they are.
    outbox = _outbox_table(session)
    removed = 0
    for chunk in _chunks(sorted(oids), _CHUNK):
        result = session.execute(
            delete(outbox).where(
                outbox.c.topic == ORDERS_TOPIC,
                outbox.c.key.in_(chunk),
                outbox.c.published_at.is_not(None),
            )
        )
        removed += _rowcount(result)
    counts["outbox_messages"] = removed

    # Outbound case webhooks of the subject's cases.
    conditions = [_OUTBOUND.c.subject_id == subject]
    if request.case_ids:
        conditions.append(_OUTBOUND.c.case_id.in_(request.case_ids))
    rows = session.execute(
        _scoped(
            select(_OUTBOUND.c.id, _OUTBOUND.c.payload).where(or_(*conditions)),
            platform,
            _OUTBOUND,
        )
    ).all()
    for row in rows:
        session.execute(
            update(_OUTBOUND)
            .where(_OUTBOUND.c.id == row.id)
            .values(payload=strip_outbound_payload(bytes(row.payload)), subject_id=None)
        )
    counts["outbound_deliveries"] = len(rows)

    # The keys: every sealed copy of the subject's order events becomes unreadable.
    keep_keys = platform is not None and (
        session.execute(
            select(_SNAPSHOTS.c.order_id)
            .where(_SNAPSHOTS.c.subject_id == subject, _SNAPSHOTS.c.platform_id != platform)
            .limit(1)
        ).first()
        is not None
    )
    destroyed = 0 if keep_keys else subjects.store.destroy(session, subject)
    for oid in sorted(oids):
        destroyed += subjects.store.destroy(session, order_subject(oid))
    counts["subject_keys"] = destroyed
    return counts


def _subject_orders(
    session: Session,
    subject: str,
    given: Iterable[str],
    platform: str | None,
    cipher: DataCipher,
    subjects: Subjects,
) -> dict[str, str]:
    """The subject's orders here (order id -> platform): by subject, and the given ids whose
    buyer is the subject (rows written before subjects were recorded are checked by decrypting
    their buyer)."""
    oids = {
        row.order_id: row.platform_id
        for row in session.execute(
            _scoped(
                select(_SNAPSHOTS.c.order_id, _SNAPSHOTS.c.platform_id).where(
                    _SNAPSHOTS.c.subject_id == subject
                ),
                platform,
                _SNAPSHOTS,
            )
        )
    }
    for chunk in _chunks(sorted(set(given) - set(oids)), _CHUNK):
        for row in session.execute(
            _scoped(
                select(
                    _SNAPSHOTS.c.order_id,
                    _SNAPSHOTS.c.platform_id,
                    _SNAPSHOTS.c.subject_id,
                    _SNAPSHOTS.c.buyer_enc,
                ).where(_SNAPSHOTS.c.order_id.in_(chunk)),
                platform,
                _SNAPSHOTS,
            )
        ):
            if row.subject_id is None and row.buyer_enc:
                buyer = Buyer.model_validate_json(cipher.decrypt(row.buyer_enc))
                # Its own buyer's, or one whose phone names no subject (masked): listed by
                # the requester, who matched it to the subject.
                if subjects.of_buyer(buyer) in (subject, None):
                    oids[row.order_id] = row.platform_id
    return oids


def _deliveries_carrying(session: Session, orders: dict[str, str]) -> set[int]:
    """The inbound deliveries that carried one of these orders (order id -> platform), through
    the marketplace events seen: a batch of several buyers' orders has no single subject.
    Read per platform, along the events' primary key."""
    by_platform: dict[str, list[str]] = {}
    for oid, platform_id in orders.items():
        by_platform.setdefault(platform_id, []).append(oid)
    found: set[int] = set()
    for platform_id, oids in by_platform.items():
        for chunk in _chunks(sorted(oids), _CHUNK):
            found.update(
                session.execute(
                    select(_EVENTS.c.delivery_id).where(
                        _EVENTS.c.platform_id == platform_id, _EVENTS.c.order_id.in_(chunk)
                    )
                ).scalars()
            )
    return found


def neutral_headers(headers: dict[str, str]) -> dict[str, str]:
    """What an erased delivery keeps of its headers: how it was sent, not who it was about."""
    return {
        k: v for k, v in headers.items() if k in _NEUTRAL_HEADERS or k.endswith(_NEUTRAL_SUFFIXES)
    }


def strip_outbound_payload(payload: bytes) -> bytes:
    """An outbound webhook body without anything about a person (type, time, the case's facts)."""
    try:
        doc = json.loads(payload)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return b"{}"
    if not isinstance(doc, dict):
        return b"{}"
    data = doc.get("data")
    if isinstance(data, dict):
        doc["data"] = {k: v for k, v in data.items() if k not in _OUTBOUND_PERSONAL}
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode()


def _scoped(query: Any, platform: str | None, table: Table = _DELIVERIES) -> Any:
    return query if platform is None else query.where(table.c.platform_id == platform)


def _outbox_table(session: Session) -> Table:
    from gateway.models import Base

    table: Table = Base.metadata.tables[OUTBOX_TABLE]
    return table


def _rowcount(result: Any) -> int:
    return int(getattr(result, "rowcount", 0) or 0)


def _chunks(values: list[str] | list[int], size: int) -> list[Any]:
    return [values[i : i + size] for i in range(0, len(values), size)]


def erasure_handlers(
    cipher: DataCipher,
    subjects: Subjects,
    forget: Callable[[str], None] | None = None,
) -> dict[str, EventHandler]:
    """The worker's handler of `privacy.erasure_requested`: erase, destroy the keys, report.

    `forget` drops the consumer's cached keys of the subject (other services' keys, which
    would otherwise open a late case event for a minute more).
    """

    def _erase(session: Session, event: CloudEvent[BaseModel]) -> None:
        request = event.data
        assert isinstance(request, ErasureRequestedV1)
        counts = erase_subject(session, request, cipher, subjects)
        if forget is not None:
            forget(request.subject_id)
        report_erasure(
            session,
            source=SOURCE,
            report=ErasureReportedV1(
                request_id=request.request_id,
                service=SERVICE,
                subject_id=request.subject_id,
                status="completed",
                counts=counts,
            ),
        )
        log.info(
            "subject erased",
            extra={"request_id": request.request_id, "platform_id": request.platform_id, **counts},
        )

    return {"privacy.erasure_requested": _erase}


# -- access export -------------------------------------------------------------------------------


def export_subject(
    session: Session,
    subject: str,
    order_ids: Sequence[str],
    case_ids: Sequence[str],
    cipher: DataCipher,
    subjects: Subjects,
) -> dict[str, list[dict[str, Any]]]:
    """Everything the gateway holds about the subject, decrypted; nothing of anyone else.

    A delivery that carried several buyers' orders (a batch) is listed without its body: the
    body is the other buyers' too.
    """
    oids = _subject_orders(session, subject, order_ids, None, cipher, subjects)
    orders = []
    for chunk in _chunks(sorted(oids), _CHUNK):
        for snap in session.execute(
            select(OrderSnapshot).where(OrderSnapshot.order_id.in_(chunk))
        ).scalars():
            orders.append(
                {
                    "order_id": snap.order_id,
                    "platform_id": snap.platform_id,
                    "order_code": snap.order_code,
                    "status": snap.status,
                    "status_at": _iso(snap.status_at),
                    "buyer": json.loads(cipher.decrypt(snap.buyer_enc)) if snap.buyer_enc else None,
                    "seller": snap.seller,
                    "items": snap.items,
                    "total_amount": snap.total_amount,
                    "currency": snap.currency,
                    "updated_at": _iso(snap.updated_at),
                }
            )
    own = {
        row.id: row
        for row in session.execute(
            select(InboundDelivery).where(InboundDelivery.subject_id == subject)
        ).scalars()
    }
    shared = _deliveries_carrying(session, oids)
    listed: dict[int, InboundDelivery] = dict(own)
    for chunk in _chunks(sorted(shared - set(own)), _CHUNK):
        for row in session.execute(
            select(InboundDelivery).where(InboundDelivery.id.in_(chunk))
        ).scalars():
            listed[row.id] = row
    deliveries = [
        _delivery_export(row, cipher, with_body=row.id in own or _one_buyer(row, oids))
        for _id, row in sorted(listed.items())
    ]
    conditions = [OutboundDelivery.subject_id == subject]
    if case_ids:
        conditions.append(OutboundDelivery.case_id.in_(list(case_ids)))
    outbound = [
        {
            "id": d.id,
            "platform_id": d.platform_id,
            "event_type": d.event_type,
            "case_id": d.case_id,
            "status": d.status,
            "created_at": _iso(d.created_at),
            "delivered_at": _iso(d.delivered_at),
            "payload": _json_or_none(bytes(d.payload)),
        }
        for d in session.execute(
            select(OutboundDelivery).where(or_(*conditions)).order_by(OutboundDelivery.created_at)
        ).scalars()
    ]
    return {"orders": orders, "inbound_deliveries": deliveries, "outbound_deliveries": outbound}


def _one_buyer(row: InboundDelivery, oids: dict[str, str]) -> bool:
    # A delivery of one order of the subject's (written before subjects were recorded).
    return row.order_id is not None and row.order_id in oids


def _delivery_export(
    row: InboundDelivery, cipher: DataCipher, *, with_body: bool
) -> dict[str, Any]:
    body: Any = None
    if with_body and row.body_enc:
        body = _json_or_none(cipher.decrypt_bytes(row.body_enc))
    return {
        "id": row.id,
        "platform_id": row.platform_id,
        "source": row.source,
        "status": row.status,
        "order_id": row.order_id,
        "received_at": _iso(row.received_at),
        "headers": row.headers if with_body else None,
        "body": body,
    }


def _json_or_none(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return raw.decode("utf-8", errors="replace")


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def export_document(subject: str, records: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    return {
        "service": SERVICE,
        "subject_id": subject,
        "generated_at": utcnow().isoformat(),
        "records": records,
    }
