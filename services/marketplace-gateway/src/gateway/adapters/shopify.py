"""Shopify and its Vietnamese cousins Haravan and Sapo: orders/* topics, base64 HMAC of the body."""

from __future__ import annotations

from collections.abc import Mapping as MappingABC
from datetime import datetime
from decimal import Decimal, InvalidOperation

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from gateway.adapters.base import Adapter, PlatformConfig, load_object, validate
from gateway.domain import (
    Mapping,
    MappingError,
    OrderUpdate,
    Redaction,
    body_digest,
    event_key,
    field_error,
)
from gateway.signatures import verify_base64_hmac
from odr_shared.events import Buyer, OrderItem, OrderStatus, Seller

Money = str | int | float


class ShopPerson(BaseModel):
    model_config = ConfigDict(extra="ignore")

    name: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    phone: str | None = None
    email: str | None = None

    @property
    def full_name(self) -> str | None:
        if self.name:
            return self.name.strip() or None
        joined = " ".join(p for p in (self.last_name, self.first_name) if p)
        return joined.strip() or None


class ShopLineItem(BaseModel):
    model_config = ConfigDict(extra="ignore")

    id: int | str | None = None
    variant_id: int | str | None = None
    product_id: int | str | None = None
    sku: str | None = None
    title: str | None = None
    name: str | None = None
    quantity: int = Field(ge=1)
    price: Money


class ShopFulfillment(BaseModel):
    model_config = ConfigDict(extra="ignore")

    shipment_status: str | None = None
    status: str | None = None


class ShopOrder(BaseModel):
    """An order as Shopify, Haravan and Sapo send it (Sapo says *_on where the others say *_at)."""

    model_config = ConfigDict(extra="ignore")

    id: int | str
    name: str | None = None
    order_number: int | str | None = None
    email: str | None = None
    phone: str | None = None
    created_at: AwareDatetime | None = None
    updated_at: AwareDatetime | None = None
    cancelled_at: AwareDatetime | None = None
    closed_at: AwareDatetime | None = None
    created_on: AwareDatetime | None = None
    modified_on: AwareDatetime | None = None
    cancelled_on: AwareDatetime | None = None
    closed_on: AwareDatetime | None = None
    status: str | None = None  # Sapo: open | closed | cancelled
    cancelled_status: str | None = None  # Haravan
    closed_status: str | None = None  # Haravan
    carrier_status_code: str | None = None  # Haravan shipment: delivering, delivered ...
    financial_status: str | None = None
    fulfillment_status: str | None = None
    currency: str | None = Field(None, min_length=3, max_length=3)
    total_price: Money | None = None
    customer: ShopPerson | None = None
    shipping_address: ShopPerson | None = None
    billing_address: ShopPerson | None = None
    line_items: list[ShopLineItem] | None = None
    fulfillments: list[ShopFulfillment] = Field(default_factory=list)

    @property
    def order_code(self) -> str:
        # The number the buyer sees on the receipt ("#1001" -> "1001").
        if self.order_number is not None:
            return str(self.order_number)
        if self.name:
            return self.name.lstrip("#").strip()
        return str(self.id)

    @property
    def changed_at(self) -> datetime | None:
        return (
            self.updated_at
            or self.modified_on
            or self.cancelled_at
            or self.cancelled_on
            or self.created_at
            or self.created_on
        )


class ShopCustomerRef(BaseModel):
    model_config = ConfigDict(extra="ignore")

    id: int | str | None = None
    email: str | None = None
    phone: str | None = None


class ShopCustomerRequest(BaseModel):
    """Shopify's mandatory compliance webhooks `customers/redact` (orders_to_redact) and
    `customers/data_request` (orders_requested, data_request.id): the shop, the customer as
    Shopify knows them, and the ids of their orders."""

    model_config = ConfigDict(extra="ignore")

    shop_id: int | str | None = None
    shop_domain: str | None = None
    customer: ShopCustomerRef = Field(default_factory=ShopCustomerRef)
    orders_to_redact: list[int | str] = Field(default_factory=list, max_length=10_000)
    orders_requested: list[int | str] = Field(default_factory=list, max_length=10_000)


# Compliance topic -> the kind of data-subject request it starts.
CUSTOMER_REQUEST_TOPICS = {"customers/redact": "erasure", "customers/data_request": "access"}


def canonical_status(topic: str, order: ShopOrder) -> OrderStatus:
    """Shopify-family orders carry a financial and a fulfillment status; fold them into one."""
    financial = (order.financial_status or "").lower()
    fulfillment = (order.fulfillment_status or "").lower()
    cancelled = (
        topic == "orders/cancelled"
        or order.cancelled_at is not None
        or order.cancelled_on is not None
        or (order.status or "").lower() == "cancelled"
        or (order.cancelled_status or "").lower() == "cancelled"
    )
    closed = (
        order.closed_at is not None
        or order.closed_on is not None
        or (order.status or "").lower() == "closed"
        or (order.closed_status or "").lower() == "closed"
    )
    delivered = (order.carrier_status_code or "").lower() == "delivered" or any(
        (f.shipment_status or "").lower() == "delivered" for f in order.fulfillments
    )
    if cancelled:
        return OrderStatus.CANCELLED
    if financial == "refunded":
        return OrderStatus.REFUNDED
    if fulfillment == "fulfilled" and closed:
        return OrderStatus.COMPLETED
    if delivered:
        return OrderStatus.DELIVERED
    if fulfillment in ("fulfilled", "partial", "partially_fulfilled"):
        return OrderStatus.SHIPPED
    if financial in ("paid", "partially_paid", "partially_refunded"):
        return OrderStatus.PAID
    return OrderStatus.CREATED


def _money(value: Money, where: str) -> int:
    try:
        return int(Decimal(str(value)).quantize(Decimal(1)))
    except InvalidOperation as exc:
        raise field_error(where, f"not an amount: {value!r}") from exc


class ShopifyFamilyAdapter(Adapter):
    def __init__(
        self,
        kind: str,
        hmac_header: str,
        topic_header: str,
        id_header: str | None,
        shop_header: str,
    ) -> None:
        self.kind = kind
        self.hmac_header = hmac_header
        self.topic_header = topic_header
        self.id_header = id_header
        self.shop_header = shop_header

    def verify(
        self,
        cfg: PlatformConfig,
        headers: MappingABC[str, str],
        body: bytes,
        now: float | None = None,
    ) -> None:
        name = self.hmac_header
        verify_base64_hmac(cfg.secrets, body, headers.get(name.lower()), name)

    def map(self, cfg: PlatformConfig, headers: MappingABC[str, str], body: bytes) -> Mapping:
        topic = (headers.get(self.topic_header.lower()) or "").strip().lower()
        if not topic:
            raise MappingError(
                [{"field": self.topic_header, "reason": "header is required"}], http_status=400
            )
        delivery_id = headers.get(self.id_header.lower()) if self.id_header else None
        key = delivery_id or body_digest(topic.encode() + b"\n" + body)
        if topic in CUSTOMER_REQUEST_TOPICS:
            return Mapping(key, redaction=self._redaction(topic, body))
        if not topic.startswith("orders/") or topic == "orders/delete":
            load_object(body)
            return Mapping(key, ignored=f"topic {topic} is not an order status")
        order = validate(ShopOrder, load_object(body))
        changed = order.changed_at
        if changed is None:
            raise field_error("updated_at", "an order needs updated_at (or created_at)")
        status = canonical_status(topic, order)
        return Mapping(
            key,
            updates=[
                OrderUpdate(
                    order_code=order.order_code,
                    status=status,
                    status_at=changed,
                    # orders/updated and orders/paid for one change are one event.
                    event_key=event_key(order.id, status.value, changed.isoformat()),
                    buyer=self._buyer(order),
                    seller=self._seller(cfg, headers),
                    items=self._items(order),
                    total_amount=(
                        _money(order.total_price, "total_price")
                        if order.total_price is not None
                        else None
                    ),
                    currency=order.currency.upper() if order.currency else None,
                )
            ],
        )

    @staticmethod
    def _redaction(topic: str, body: bytes) -> Redaction:
        """A compliance webhook as a data-subject request: erase (redact) or export (access)."""
        doc = validate(ShopCustomerRequest, load_object(body))
        kind = CUSTOMER_REQUEST_TOPICS[topic]
        refs = doc.orders_to_redact if kind == "erasure" else doc.orders_requested
        customer = doc.customer
        return Redaction(
            kind=kind,
            phone=(customer.phone or "").strip() or None,
            email=(customer.email or "").strip() or None,
            customer_ref=str(customer.id) if customer.id is not None else None,
            order_refs=tuple(dict.fromkeys(str(r) for r in refs)),
        )

    @staticmethod
    def _buyer(order: ShopOrder) -> Buyer | None:
        people = [p for p in (order.shipping_address, order.customer, order.billing_address) if p]
        phone = next((p.phone for p in people if p.phone), None) or order.phone
        name = next((p.full_name for p in people if p.full_name), None)
        email = next((p.email for p in people if p.email), None) or order.email
        if not phone or not name or len(phone.strip()) < 6:
            return None  # merged from what the gateway already knows
        return Buyer(name=name, phone=phone.strip(), email=email)

    def _seller(self, cfg: PlatformConfig, headers: MappingABC[str, str]) -> Seller:
        # One Shopify/Haravan/Sapo platform registration is one shop: the shop is the seller.
        shop = headers.get(self.shop_header.lower())
        return Seller(id=shop or cfg.platform_id, name=cfg.name)

    @staticmethod
    def _items(order: ShopOrder) -> list[OrderItem] | None:
        if order.line_items is None:
            return None
        items = []
        for i, line in enumerate(order.line_items):
            sku = line.sku or str(line.variant_id or line.product_id or line.id or i + 1)
            items.append(
                OrderItem(
                    sku=sku[:100],
                    name=(line.title or line.name or sku)[:500],
                    quantity=line.quantity,
                    unit_price=_money(line.price, f"line_items.{i}.price"),
                )
            )
        return items


def shopify() -> ShopifyFamilyAdapter:
    return ShopifyFamilyAdapter(
        "shopify",
        hmac_header="X-Shopify-Hmac-Sha256",
        topic_header="X-Shopify-Topic",
        id_header="X-Shopify-Webhook-Id",
        shop_header="X-Shopify-Shop-Domain",
    )


def haravan() -> ShopifyFamilyAdapter:
    return ShopifyFamilyAdapter(
        "haravan",
        hmac_header="X-Haravan-Hmacsha256",
        topic_header="X-Haravan-Topic",
        id_header=None,
        shop_header="X-Haravan-Org-Id",
    )


def sapo() -> ShopifyFamilyAdapter:
    return ShopifyFamilyAdapter(
        "sapo",
        hmac_header="X-Sapo-Hmac-Sha256",
        topic_header="X-Sapo-Topic",
        id_header=None,
        shop_header="X-Sapo-Shop-Domain",
    )
