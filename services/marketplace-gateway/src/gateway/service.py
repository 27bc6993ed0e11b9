"""Gateway use cases: register a platform, accept an order-event delivery."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from gateway.models import ApiClient, InboundDelivery, Platform
from gateway.signatures import SignatureError, verify_standard_webhooks
from odr_shared.crypto import DataCipher
from odr_shared.db import utcnow
from odr_shared.events import (
    ORDERS_TOPIC,
    Buyer,
    OrderItem,
    OrderStatus,
    OrderStatusChangedV1,
    Seller,
    build_event,
    order_id,
)
from odr_shared.outbox import add_to_outbox
from odr_shared.problems import Problem, not_found, validation_errors

SOURCE = "odr/marketplace-gateway"
PlatformKind = Literal["standard", "shopee", "lazada", "tiktok", "shopify", "haravan", "sapo"]


class Order(BaseModel):
    """The canonical ORDER of the public contract."""

    model_config = ConfigDict(extra="ignore")

    order_code: str = Field(min_length=1, max_length=100)
    status: OrderStatus
    status_at: datetime
    buyer: Buyer
    seller: Seller
    items: list[OrderItem] = Field(default_factory=list)
    total_amount: int = Field(ge=0)
    currency: str = Field("VND", min_length=3, max_length=3)


class StandardOrderEvent(BaseModel):
    type: Literal["order.updated", "order.created", "order.status_changed"]
    timestamp: datetime
    data: Order


@dataclass(frozen=True)
class NewPlatform:
    platform_id: str
    webhook_secret: str
    client_id: str
    client_secret: str


def new_whsec() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def hash_client_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def register_platform(
    session: Session,
    cipher: DataCipher,
    *,
    name: str,
    kind: PlatformKind,
    signing_secret: str | None,
    app_key: str | None,
    push_url: str | None,
    outbound_url: str | None,
) -> NewPlatform:
    if kind != "standard" and not signing_secret:
        raise Problem(
            422,
            "Unprocessable Content",
            f"signing_secret: required for kind {kind}",
            errors=[{"field": "signing_secret", "reason": f"required for kind {kind}"}],
        )
    platform_id = "plt_" + uuid.uuid4().hex[:16]
    outbound_secret = new_whsec()
    inbound_secret = signing_secret if kind != "standard" and signing_secret else outbound_secret
    client_id = "cli_" + uuid.uuid4().hex[:20]
    client_secret = secrets.token_urlsafe(32)
    now = utcnow()
    session.add(
        Platform(
            id=platform_id,
            name=name,
            kind=kind,
            signing_secret_enc=cipher.encrypt(inbound_secret),
            outbound_secret_enc=cipher.encrypt(outbound_secret),
            app_key=app_key,
            push_url=push_url,
            outbound_url=outbound_url,
            created_at=now,
        )
    )
    session.flush()
    session.add(
        ApiClient(
            client_id=client_id,
            platform_id=platform_id,
            secret_hash=hash_client_secret(client_secret),
            created_at=now,
        )
    )
    return NewPlatform(platform_id, outbound_secret, client_id, client_secret)


@dataclass(frozen=True)
class Receipt:
    http_status: int
    delivery_id: int
    duplicate: bool
    event_id: str | None


def _platform_secrets(cipher: DataCipher, platform: Platform) -> list[str]:
    out = [cipher.decrypt(platform.signing_secret_enc)]
    if platform.signing_secret_previous_enc:
        out.append(cipher.decrypt(platform.signing_secret_previous_enc))
    return out


def _reject(
    factory: sessionmaker[Session],
    platform_id: str,
    headers: dict[str, str],
    body: bytes,
    http_status: int,
    error: str,
) -> int:
    # Rejected deliveries are kept (in their own transaction) for inspection and replay.
    with factory() as session, session.begin():
        row = InboundDelivery(
            platform_id=platform_id,
            delivery_key=None,
            status="rejected",
            http_status=http_status,
            error=error,
            headers=headers,
            body=body,
            received_at=utcnow(),
        )
        session.add(row)
        session.flush()
        return row.id


def receive_standard_webhook(
    factory: sessionmaker[Session],
    cipher: DataCipher,
    platform_id: str,
    headers: dict[str, str],
    body: bytes,
    tolerance_s: int,
) -> Receipt:
    with factory() as session:
        platform = session.get(Platform, platform_id)
        if platform is None:
            raise not_found("platform")
        secrets_ = _platform_secrets(cipher, platform)
        kind = platform.kind
        notify = platform.status_notifications
    if kind != "standard":
        raise Problem(501, "Not Implemented", f"webhooks of kind {kind} are not accepted yet")
    kept = {k: v for k, v in headers.items() if k.startswith("webhook-") or k == "content-type"}
    try:
        msg_id = verify_standard_webhooks(secrets_, headers, body, tolerance_s=tolerance_s)
    except SignatureError as exc:
        _reject(factory, platform_id, kept, body, 401, str(exc))
        raise Problem(401, "Unauthorized", f"signature rejected: {exc}") from exc
    try:
        doc: Any = json.loads(body)
        parsed = StandardOrderEvent.model_validate(doc)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        _reject(factory, platform_id, kept, body, 400, f"body is not JSON: {exc}")
        raise Problem(400, "Bad Request", "body is not valid JSON") from exc
    except ValidationError as exc:
        errors = validation_errors(exc.errors())
        delivery = _reject(factory, platform_id, kept, body, 422, json.dumps(errors))
        first = errors[0]
        raise Problem(
            422,
            "Unprocessable Content",
            f"{first['field']}: {first['reason']}",
            errors=errors,
            delivery_id=delivery,
        ) from exc
    order = parsed.data
    oid = order_id(platform_id, order.order_code)
    event = build_event(
        source=SOURCE,
        event_type="order.status_changed",
        subject=oid,
        data=OrderStatusChangedV1(
            order_id=oid,
            platform_id=platform_id,
            platform_kind=kind,
            order_code=order.order_code,
            status=order.status,
            status_at=order.status_at,
            buyer=order.buyer,
            seller=order.seller,
            items=order.items,
            total_amount=order.total_amount,
            currency=order.currency,
            delivery_id=msg_id,
            status_notifications=notify,
        ),
    )
    try:
        with factory() as session, session.begin():
            row = InboundDelivery(
                platform_id=platform_id,
                delivery_key=msg_id,
                status="accepted",
                http_status=202,
                headers=kept,
                body=body,
                order_id=oid,
                event_id=event.id,
                received_at=utcnow(),
            )
            session.add(row)
            session.flush()
            add_to_outbox(session, ORDERS_TOPIC, oid, event)
            return Receipt(202, row.id, False, event.id)
    except IntegrityError:
        # Same webhook-id again: one effect, the same answer.
        with factory() as session:
            existing = session.execute(
                select(InboundDelivery).where(
                    InboundDelivery.platform_id == platform_id,
                    InboundDelivery.delivery_key == msg_id,
                )
            ).scalar_one()
            return Receipt(202, existing.id, True, existing.event_id)
