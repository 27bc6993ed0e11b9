"""Lazada Open Platform push: `Authorization` = hex HMAC-SHA256(app secret, app_key + body)."""

from __future__ import annotations

from collections.abc import Mapping as MappingABC
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from gateway.adapters.base import (
    AppKeySignedAdapter,
    PlatformConfig,
    from_unix,
    load_object,
    validate,
)
from gateway.domain import Mapping, OrderUpdate, body_digest, event_key, field_error
from odr_shared.events import OrderStatus

TRADE_ORDER_MESSAGE = 0

STATUS_MAP: dict[str, OrderStatus | None] = {
    "unpaid": OrderStatus.CREATED,
    # "pending" is Lazada's "paid, waiting for the seller to pack".
    "pending": OrderStatus.PAID,
    "topack": OrderStatus.PAID,
    "packed": OrderStatus.READY_TO_SHIP,
    "repacked": OrderStatus.READY_TO_SHIP,
    "ready_to_ship_pending": OrderStatus.READY_TO_SHIP,
    "ready_to_ship": OrderStatus.READY_TO_SHIP,
    "toship": OrderStatus.READY_TO_SHIP,
    "shipped": OrderStatus.SHIPPED,
    "delivered": OrderStatus.DELIVERED,
    "confirmed": OrderStatus.COMPLETED,
    "canceled": OrderStatus.CANCELLED,
    "cancelled": OrderStatus.CANCELLED,
    "returned": OrderStatus.RETURNED,
    "shipped_back": OrderStatus.RETURNED,
    "shipped_back_success": OrderStatus.RETURNED,
    # Logistics incidents: the order stays in its last status until Lazada resolves it.
    "failed_delivery": None,
    "lost_by_3pl": None,
    "damaged_by_3pl": None,
    "package_scrapped": None,
}


class LazadaPush(BaseModel):
    model_config = ConfigDict(extra="ignore")

    seller_id: str | int
    message_type: int
    data: dict[str, Any] = Field(default_factory=dict)
    timestamp: int | None = None
    site: str | None = None


class LazadaTradeOrder(BaseModel):
    model_config = ConfigDict(extra="ignore")

    order_status: str = Field(min_length=1)
    trade_order_id: str | int
    trade_order_line_id: str | int | None = None
    status_update_time: int = Field(gt=0)


class LazadaAdapter(AppKeySignedAdapter):
    kind = "lazada"

    def map(self, cfg: PlatformConfig, headers: MappingABC[str, str], body: bytes) -> Mapping:
        push = validate(LazadaPush, load_object(body))
        key = body_digest(body)  # Lazada sends no delivery id
        if push.message_type != TRADE_ORDER_MESSAGE:
            return Mapping(key, ignored=f"message_type {push.message_type} is not a trade order")
        data = validate(LazadaTradeOrder, push.data, prefix="data")
        raw = data.order_status.lower()
        if raw not in STATUS_MAP:
            raise field_error("data.order_status", f"unknown Lazada order status {raw!r}")
        status = STATUS_MAP[raw]
        if status is None:
            return Mapping(key, ignored=f"Lazada status {raw} has no canonical status")
        code = str(data.trade_order_id)
        # Lazada pushes once per order line; lines that change together are one event.
        return Mapping(
            key,
            updates=[
                OrderUpdate(
                    order_code=code,
                    status=status,
                    status_at=from_unix(data.status_update_time),
                    event_key=event_key(code, raw, data.status_update_time),
                )
            ],
        )
