"""The `standard` kind: Standard Webhooks signatures and the platform's canonical ORDER."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping as MappingABC
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from gateway.adapters.base import Adapter, PlatformConfig, load_object, validate
from gateway.domain import Mapping, MappingError, OrderUpdate, Redaction, event_key
from gateway.signatures import verify_standard_webhooks
from odr_shared.events import Buyer, OrderItem, OrderStatus, Seller

STANDARD_EVENT_TYPES = ("order.created", "order.updated", "order.status_changed")
# A platform's data-subject requests about one of its buyers: erase, or export.
CUSTOMER_REQUEST_TYPES = {"customer.redact": "erasure", "customer.data_request": "access"}


class CanonicalOrder(BaseModel):
    """ORDER of the public contract. For an order the gateway already knows, buyer, seller,
    items and total may be left out: they are merged from what it knows."""

    model_config = ConfigDict(extra="ignore")

    order_code: str = Field(min_length=1, max_length=100)
    status: OrderStatus
    status_at: AwareDatetime
    buyer: Buyer | None = None
    seller: Seller | None = None
    items: list[OrderItem] | None = None
    total_amount: int | None = Field(None, ge=0)
    currency: str | None = Field(None, min_length=3, max_length=3)

    def to_update(self, key: str | None = None) -> OrderUpdate:
        return OrderUpdate(
            order_code=self.order_code,
            status=self.status,
            status_at=self.status_at,
            event_key=key or content_key(self),
            buyer=self.buyer,
            seller=self.seller,
            items=self.items,
            total_amount=self.total_amount,
            currency=self.currency.upper() if self.currency else None,
        )


class StandardOrderEvent(BaseModel):
    model_config = ConfigDict(extra="ignore")

    type: Literal["order.created", "order.updated", "order.status_changed"]
    timestamp: AwareDatetime
    data: CanonicalOrder


class CustomerRef(BaseModel):
    model_config = ConfigDict(extra="ignore")

    id: str | None = Field(None, max_length=200)
    phone: str | None = Field(None, max_length=40)
    email: str | None = Field(None, max_length=254)


class CustomerRequestData(BaseModel):
    """`customer.redact` / `customer.data_request` data: the buyer as the platform knows them
    and the codes of their orders; the phone or at least one order code is needed."""

    model_config = ConfigDict(extra="ignore")

    customer: CustomerRef = Field(default_factory=CustomerRef)
    order_codes: list[str] = Field(default_factory=list, max_length=1000)


class StandardCustomerRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    type: Literal["customer.redact", "customer.data_request"]
    timestamp: AwareDatetime
    data: CustomerRequestData


class StandardBatch(BaseModel):
    events: list[StandardOrderEvent] = Field(min_length=1, max_length=1000)


def content_key(order: CanonicalOrder) -> str:
    # The same order content sent twice (under two webhook-ids) is one event; a correction
    # (other content, same status) is a new one.
    doc = order.model_dump(mode="json", exclude_none=True)
    digest = hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:40]
    return event_key(order.order_code, order.status.value, digest)


class StandardAdapter(Adapter):
    kind = "standard"
    ack_status = 202

    def verify(
        self,
        cfg: PlatformConfig,
        headers: MappingABC[str, str],
        body: bytes,
        now: float | None = None,
    ) -> None:
        verify_standard_webhooks(cfg.secrets, headers, body, tolerance_s=cfg.tolerance_s, now=now)

    def map(self, cfg: PlatformConfig, headers: MappingABC[str, str], body: bytes) -> Mapping:
        doc = load_object(body)
        if doc.get("type") in CUSTOMER_REQUEST_TYPES:
            request = validate(StandardCustomerRequest, doc)
            customer = request.data.customer
            phone = (customer.phone or "").strip() or None
            codes = tuple(dict.fromkeys(c.strip() for c in request.data.order_codes if c.strip()))
            if phone is None and not codes:
                raise MappingError(
                    [{"field": "data.customer.phone", "reason": "a phone or order_codes needed"}]
                )
            redaction = Redaction(
                kind=CUSTOMER_REQUEST_TYPES[request.type],
                phone=phone,
                email=(customer.email or "").strip() or None,
                customer_ref=customer.id,
                order_refs=codes,
            )
            return Mapping(delivery_key=headers["webhook-id"], redaction=redaction)
        event = validate(StandardOrderEvent, doc)
        return Mapping(delivery_key=headers["webhook-id"], updates=[event.data.to_update()])

    def map_batch(self, headers: MappingABC[str, str], body: bytes) -> Mapping:
        doc = load_object(body)
        if "events" in doc and isinstance(doc["events"], list) and len(doc["events"]) > 1000:
            raise MappingError([{"field": "events", "reason": "at most 1000 events per batch"}])
        batch = validate(StandardBatch, doc)
        return Mapping(
            delivery_key=headers["webhook-id"],
            updates=[e.data.to_update() for e in batch.events],
        )
