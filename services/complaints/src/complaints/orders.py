"""The order projection: apply order events in order, keep the status history, read orders back."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from sqlalchemy.orm import Session

from complaints.models import Order, OrderStatusChange
from odr_shared.crypto import DataCipher
from odr_shared.db import utcnow
from odr_shared.events import CloudEvent, OrderStatusChangedV1
from odr_shared.logs import mask_email, mask_name, mask_phone
from odr_shared.phone import InvalidPhone, normalize_phone


def canonical_phone(raw: str) -> str:
    try:
        return normalize_phone(raw)
    except InvalidPhone:
        return raw.strip()


def apply_order_event(session: Session, event: CloudEvent[BaseModel], cipher: DataCipher) -> None:
    """Upsert the order; an older event (by status_at) adds history but never rolls status back."""
    data = event.data
    assert isinstance(data, OrderStatusChangedV1)
    now = utcnow()
    phone = canonical_phone(data.buyer.phone)
    order = session.get(Order, data.order_id, with_for_update=True)
    snapshot: dict[str, Any] = {
        "buyer_name_enc": cipher.encrypt(data.buyer.name),
        "buyer_phone_enc": cipher.encrypt(phone),
        "buyer_phone_hash": cipher.lookup_hash(phone),
        "buyer_email_enc": cipher.encrypt(data.buyer.email) if data.buyer.email else None,
        "seller_id": data.seller.id,
        "seller_name": data.seller.name,
        "items": [i.model_dump() for i in data.items],
        "total_amount": data.total_amount,
        "currency": data.currency,
        "updated_at": now,
    }
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
            "name": mask_name(cipher.decrypt(order.buyer_name_enc)),
            "phone": mask_phone(cipher.decrypt(order.buyer_phone_enc)),
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
