"""The order projection: apply order events in order, keep the status history, read orders back."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import BaseModel
from sqlalchemy import Table, bindparam, select, update
from sqlalchemy.orm import Session

from complaints.models import Order, OrderStatusChange
from odr_shared.crypto import DataCipher
from odr_shared.db import BulkInsert, utcnow
from odr_shared.events import CloudEvent, OrderStatusChangedV1
from odr_shared.logs import mask_email, mask_name, mask_phone
from odr_shared.phone import InvalidPhone, normalize_phone

# The buyer's data subject id from the canonical phone (odr_shared.privacy.subject_for_phone).
SubjectOf = Callable[[str], str]


def canonical_phone(raw: str) -> str:
    try:
        return normalize_phone(raw)
    except InvalidPhone:
        return raw.strip()


def _snapshot(
    data: OrderStatusChangedV1, cipher: DataCipher, subject_of: SubjectOf, now: datetime
) -> dict[str, Any]:
    """The order's columns an event sets, buyer contact data encrypted."""
    phone = canonical_phone(data.buyer.phone)
    return {
        "buyer_name_enc": cipher.encrypt(data.buyer.name),
        "buyer_phone_enc": cipher.encrypt(phone),
        "buyer_phone_hash": cipher.lookup_hash(phone),
        "buyer_email_enc": cipher.encrypt(data.buyer.email) if data.buyer.email else None,
        # The gateway names the subject; an older event does not: the same function here.
        "subject_id": data.subject_id or subject_of(phone),
        "seller_id": data.seller.id,
        "seller_name": data.seller.name,
        "items": [i.model_dump() for i in data.items],
        "total_amount": data.total_amount,
        "currency": data.currency,
        "updated_at": now,
    }


def apply_order_event(
    session: Session, event: CloudEvent[BaseModel], cipher: DataCipher, *, subject_of: SubjectOf
) -> None:
    """Upsert the order; an older event (by status_at) adds history but never rolls status back."""
    data = event.data
    assert isinstance(data, OrderStatusChangedV1)
    now = utcnow()
    order = session.get(Order, data.order_id, with_for_update=True)
    snapshot = _snapshot(data, cipher, subject_of, now)
    if order is None:
        order = Order(
            id=data.order_id,
            platform_id=data.platform_id,
            order_code=data.order_code,
            status=data.status.value,
            status_at=data.status_at,
            first_seen_at=now,
            **snapshot,
        )
        session.add(order)
        session.flush()
    elif data.status_at >= order.status_at:
        order.status = data.status.value
        order.status_at = data.status_at
        if not data.items:
            # A push without items keeps what is already known.
            snapshot.pop("items")
        for key, value in snapshot.items():
            setattr(order, key, value)
    session.add(
        OrderStatusChange(
            order_id=data.order_id,
            status=data.status.value,
            status_at=data.status_at,
            event_id=event.id,
            recorded_at=now,
        )
    )


_ORDERS: Table = Order.__table__  # type: ignore[assignment]
_HISTORY: Table = OrderStatusChange.__table__  # type: ignore[assignment]
_SNAPSHOT = (
    "buyer_name_enc",
    "buyer_phone_enc",
    "buyer_phone_hash",
    "buyer_email_enc",
    "subject_id",
    "seller_id",
    "seller_name",
    "items",
    "total_amount",
    "currency",
    "updated_at",
)
_INSERT_ORDERS = BulkInsert(
    _ORDERS, ("id", "platform_id", "order_code", "status", "status_at", "first_seen_at", *_SNAPSHOT)
)
_INSERT_HISTORY = BulkInsert(
    _HISTORY, ("order_id", "status", "status_at", "event_id", "recorded_at")
)


def _update_orders(with_items: bool) -> Any:
    columns = ["status", "status_at", *(c for c in _SNAPSHOT if with_items or c != "items")]
    return (
        update(_ORDERS)
        .where(_ORDERS.c.id == bindparam("b_id", type_=_ORDERS.c.id.type))
        .values({c: bindparam(f"b_{c}", type_=_ORDERS.c[c].type) for c in columns})
    )


_UPDATE_WITH_ITEMS = _update_orders(with_items=True)
_UPDATE_KEEPING_ITEMS = _update_orders(with_items=False)
# Order ids per locking SELECT: a poll (200 events) takes one.
_LOCK_CHUNK = 1000


@dataclass
class _Outcome:
    """Where one order ends after a batch's events, folded in order as apply_order_event would."""

    status_at: datetime
    inserted_by: OrderStatusChangedV1 | None = None  # the event that created it, if one did
    last: OrderStatusChangedV1 | None = None  # the last event that set its status and snapshot
    items: list[Any] | None = None  # the items to write; None keeps the stored ones


def apply_order_events(
    session: Session,
    events: Sequence[CloudEvent[BaseModel]],
    cipher: DataCipher,
    *,
    subject_of: SubjectOf,
) -> None:
    """Apply a batch of order events as `apply_order_event` applied to each in turn would.

    The same end state with set-based statements: one locking SELECT of the orders concerned,
    one bulk insert of the new orders and one of the history rows, and an UPDATE only for an
    existing order that an event moves (the rest get their history row alone). Within the batch
    each order's events are folded in the order given, with the single-event rules: the first
    event of an unknown order creates it; a later one whose status_at is not older than the
    order's sets status and snapshot (items only if it carries some); an older one only adds
    history. Only the snapshot that is finally written is encrypted. An event id given twice is
    applied once (the consumer's inbox keeps redeliveries out before this is called).
    """
    unique: list[OrderStatusChangedV1] = []
    event_ids: list[str] = []
    seen: set[str] = set()
    for event in events:
        if event.id in seen:
            continue
        seen.add(event.id)
        assert isinstance(event.data, OrderStatusChangedV1)
        unique.append(event.data)
        event_ids.append(event.id)
    if not unique:
        return
    session.flush()
    conn = session.connection()
    now = utcnow()
    order_ids = sorted({d.order_id for d in unique})
    stored: dict[str, datetime] = {}
    # In id order, so that two consumers locking overlapping batches cannot deadlock.
    for start in range(0, len(order_ids), _LOCK_CHUNK):
        chunk = order_ids[start : start + _LOCK_CHUNK]
        rows = conn.execute(
            select(_ORDERS.c.id, _ORDERS.c.status_at)
            .where(_ORDERS.c.id.in_(chunk))
            .order_by(_ORDERS.c.id)
            .with_for_update()
        )
        stored.update({row.id: row.status_at for row in rows})

    outcomes: dict[str, _Outcome] = {}
    for data in unique:
        outcome = outcomes.get(data.order_id)
        if outcome is None:
            if data.order_id not in stored:
                outcomes[data.order_id] = _Outcome(
                    data.status_at, inserted_by=data, last=data, items=list(data.items)
                )
                continue
            outcome = outcomes[data.order_id] = _Outcome(stored[data.order_id])
        if data.status_at >= outcome.status_at:
            outcome.status_at = data.status_at
            outcome.last = data
            if data.items:
                outcome.items = list(data.items)

    new_orders: list[dict[str, Any]] = []
    moves: dict[bool, list[dict[str, Any]]] = {True: [], False: []}
    for order_id, outcome in outcomes.items():
        last = outcome.last
        if last is None:
            continue  # only older events: history rows, the order stays as it is
        row = _snapshot(last, cipher, subject_of, now)
        row["status"] = last.status.value
        row["status_at"] = last.status_at
        first = outcome.inserted_by
        if first is not None:
            row["items"] = [i.model_dump() for i in outcome.items or []]
            new_orders.append(
                {
                    **row,
                    "id": order_id,
                    "platform_id": first.platform_id,
                    "order_code": first.order_code,
                    "first_seen_at": now,
                }
            )
            continue
        with_items = outcome.items is not None
        if with_items:
            row["items"] = [i.model_dump() for i in outcome.items or []]
        else:
            row.pop("items")
        moves[with_items].append({"b_id": order_id, **{f"b_{k}": v for k, v in row.items()}})

    _INSERT_ORDERS.execute(conn, new_orders)
    for with_items, params in moves.items():
        if params:
            conn.execute(_UPDATE_WITH_ITEMS if with_items else _UPDATE_KEEPING_ITEMS, params)
    _INSERT_HISTORY.execute(
        conn,
        [
            {
                "order_id": d.order_id,
                "status": d.status.value,
                "status_at": d.status_at,
                "event_id": event_id,
                "recorded_at": now,
            }
            for d, event_id in zip(unique, event_ids, strict=True)
        ],
    )
    # Orders this session had loaded are stale now: reload them if read again.
    touched = set(order_ids)
    for obj in list(session.identity_map.values()):
        if isinstance(obj, Order) and obj.id in touched:
            session.expire(obj)


def order_view(order: Order, cipher: DataCipher) -> dict[str, Any]:
    """The order as a caller sees it: buyer contact data masked."""
    email = cipher.decrypt(order.buyer_email_enc) if order.buyer_email_enc else None
    return {
        "order_id": order.id,
        "platform_id": order.platform_id,
        "order_code": order.order_code,
        "status": order.status,
        "status_at": order.status_at.isoformat(),
        "buyer": {
            # An erased buyer's columns are empty: nothing to show.
            "name": mask_name(cipher.decrypt(order.buyer_name_enc))
            if order.buyer_name_enc
            else None,
            "phone": mask_phone(cipher.decrypt(order.buyer_phone_enc))
            if order.buyer_phone_enc
            else None,
            "email": mask_email(email) if email else None,
        },
        "seller": {"id": order.seller_id, "name": order.seller_name},
        "items": order.items,
        "total_amount": order.total_amount,
        "currency": order.currency,
        "history": [
            {"status": h.status, "status_at": h.status_at.isoformat()} for h in order.history
        ],
    }
