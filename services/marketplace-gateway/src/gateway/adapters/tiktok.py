"""TikTok Shop webhooks: `Authorization` = hex HMAC-SHA256(app secret, app_key + body)."""

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

ORDER_STATUS_CHANGE = 1
RETURN_STATUS_CHANGE = 12

ORDER_STATUS_MAP: dict[str, OrderStatus | None] = {
    "UNPAID": OrderStatus.CREATED,
    # ON_HOLD: paid, inside the buyer's short cancellation window.
    "ON_HOLD": OrderStatus.PAID,
    "AWAITING_SHIPMENT": OrderStatus.PAID,
    "PARTIALLY_SHIPPING": OrderStatus.SHIPPED,
    "AWAITING_COLLECTION": OrderStatus.READY_TO_SHIP,
    "IN_TRANSIT": OrderStatus.SHIPPED,
    "DELIVERED": OrderStatus.DELIVERED,
    "COMPLETED": OrderStatus.COMPLETED,
    "CANCELLED": OrderStatus.CANCELLED,
}

# return_status -> canonical; SUCCESS depends on whether goods travel back (see _return_status).
RETURN_STATUS_MAP: dict[str, OrderStatus | None] = {
    "RETURN_OR_REFUND_REQUEST_PENDING": OrderStatus.RETURN_REQUESTED,
    "AWAITING_BUYER_SHIP": OrderStatus.RETURN_REQUESTED,
    "BUYER_SHIPPED_ITEM": OrderStatus.RETURN_REQUESTED,
    "RETURN_OR_REFUND_REQUEST_SUCCESS": OrderStatus.RETURNED,
    "RETURN_OR_REFUND_REQUEST_COMPLETE": OrderStatus.REFUNDED,
    # The request ended without a return: the order keeps its last status.
    "REFUND_OR_RETURN_REQUEST_REJECT": None,
    "RETURN_OR_REFUND_REQUEST_CANCEL": None,
    "REJECT_RECEIVE_PACKAGE": None,
}


class TikTokPush(BaseModel):
    model_config = ConfigDict(extra="ignore")

    type: int
    tts_notification_id: str | None = None
    shop_id: str | int
    timestamp: int | None = None
    data: dict[str, Any] = Field(default_factory=dict)


class TikTokOrderStatus(BaseModel):
    model_config = ConfigDict(extra="ignore")

    order_id: str | int
    order_status: str = Field(min_length=1)
    update_time: int = Field(gt=0)


class TikTokReturnStatus(BaseModel):
    model_config = ConfigDict(extra="ignore")

    order_id: str | int
    return_id: str | int
    return_status: str = Field(min_length=1)
    return_type: str | None = None  # REFUND | RETURN_AND_REFUND | REPLACEMENT
    update_time: int = Field(gt=0)


class TikTokAdapter(AppKeySignedAdapter):
    kind = "tiktok"

    def map(self, cfg: PlatformConfig, headers: MappingABC[str, str], body: bytes) -> Mapping:
        push = validate(TikTokPush, load_object(body))
        key = push.tts_notification_id or body_digest(body)
        if push.type == ORDER_STATUS_CHANGE:
            order = validate(TikTokOrderStatus, push.data, prefix="data")
            if order.order_status not in ORDER_STATUS_MAP:
                raise field_error(
                    "data.order_status", f"unknown TikTok order status {order.order_status!r}"
                )
            status = ORDER_STATUS_MAP[order.order_status]
            code = str(order.order_id)
            ek = event_key(code, order.order_status, order.update_time)
            time = order.update_time
            raw = order.order_status
        elif push.type == RETURN_STATUS_CHANGE:
            ret = validate(TikTokReturnStatus, push.data, prefix="data")
            if ret.return_status not in RETURN_STATUS_MAP:
                raise field_error(
                    "data.return_status", f"unknown TikTok return status {ret.return_status!r}"
                )
            status = _return_status(ret)
            code = str(ret.order_id)
            ek = event_key(code, ret.return_id, ret.return_status, ret.update_time)
            time = ret.update_time
            raw = ret.return_status
        else:
            return Mapping(key, ignored=f"webhook type {push.type} is not an order or return")
        if status is None:
            return Mapping(key, ignored=f"TikTok status {raw} has no canonical status")
        return Mapping(
            key,
            updates=[
                OrderUpdate(order_code=code, status=status, status_at=from_unix(time), event_key=ek)
            ],
        )


def _return_status(ret: TikTokReturnStatus) -> OrderStatus | None:
    status = RETURN_STATUS_MAP[ret.return_status]
    # A refund-only request that succeeds moves money, not goods.
    if status is OrderStatus.RETURNED and ret.return_type == "REFUND":
        return OrderStatus.REFUNDED
    return status
