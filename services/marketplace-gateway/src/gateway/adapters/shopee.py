"""Shopee Open Platform push: `Authorization` = hex HMAC-SHA256(partner key, push_url|body)."""

from __future__ import annotations

from collections.abc import Mapping as MappingABC
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from gateway.adapters.base import Adapter, PlatformConfig, from_unix, load_object, validate
from gateway.domain import Mapping, OrderUpdate, body_digest, event_key, field_error
from gateway.signatures import verify_hex_hmac
from odr_shared.events import OrderStatus

ORDER_STATUS_PUSH = 3

# Shopee order_status -> canonical status; None: no canonical equivalent (acknowledged, ignored).
STATUS_MAP: dict[str, OrderStatus | None] = {
    "UNPAID": OrderStatus.CREATED,
    # READY_TO_SHIP is Shopee's "paid, the seller may arrange shipment".
    "READY_TO_SHIP": OrderStatus.PAID,
    "PROCESSED": OrderStatus.READY_TO_SHIP,
    "RETRY_SHIP": OrderStatus.READY_TO_SHIP,
    "SHIPPED": OrderStatus.SHIPPED,
    "TO_CONFIRM_RECEIVE": OrderStatus.DELIVERED,
    "COMPLETED": OrderStatus.COMPLETED,
    "CANCELLED": OrderStatus.CANCELLED,
    "TO_RETURN": OrderStatus.RETURN_REQUESTED,
    # A cancellation the seller has not answered yet; CANCELLED follows if it goes through.
    "IN_CANCEL": None,
    "INVOICE_PENDING": None,
}


class ShopeePush(BaseModel):
    model_config = ConfigDict(extra="ignore")

    code: int
    shop_id: int | str
    timestamp: int | None = None
    msg_id: str | None = None
    data: dict[str, Any] = Field(default_factory=dict)


class ShopeeOrderStatus(BaseModel):
    model_config = ConfigDict(extra="ignore")

    ordersn: str = Field(min_length=1, max_length=100)
    status: str = Field(min_length=1)
    update_time: int = Field(gt=0)
    completed_scenario: str | None = None


class ShopeeAdapter(Adapter):
    kind = "shopee"

    def verify(
        self,
        cfg: PlatformConfig,
        headers: MappingABC[str, str],
        body: bytes,
        now: float | None = None,
    ) -> None:
        message = cfg.push_url.encode() + b"|" + body
        verify_hex_hmac(cfg.secrets, message, headers.get("authorization"), "Authorization")

    def map(self, cfg: PlatformConfig, headers: MappingABC[str, str], body: bytes) -> Mapping:
        push = validate(ShopeePush, load_object(body))
        key = push.msg_id or body_digest(body)
        if push.code != ORDER_STATUS_PUSH:
            return Mapping(key, ignored=f"push code {push.code} is not an order status push")
        data = validate(ShopeeOrderStatus, push.data, prefix="data")
        if data.status not in STATUS_MAP:
            raise field_error("data.status", f"unknown Shopee order status {data.status!r}")
        status = STATUS_MAP[data.status]
        if status is None:
            return Mapping(key, ignored=f"Shopee status {data.status} has no canonical status")
        return Mapping(
            key,
            updates=[
                OrderUpdate(
                    order_code=data.ordersn,
                    status=status,
                    status_at=from_unix(data.update_time),
                    event_key=event_key(data.ordersn, data.status, data.update_time),
                )
            ],
        )
