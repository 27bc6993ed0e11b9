"""Each marketplace adapter on realistic payloads: every status mapping, ignores, bad fields."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from gateway.adapters import ADAPTERS, PlatformConfig
from gateway.adapters.lazada import STATUS_MAP as LAZADA
from gateway.adapters.shopee import STATUS_MAP as SHOPEE
from gateway.adapters.tiktok import ORDER_STATUS_MAP as TIKTOK_ORDER
from gateway.adapters.tiktok import RETURN_STATUS_MAP as TIKTOK_RETURN
from gateway.domain import MappingError
from odr_shared.events import OrderStatus

CFG = PlatformConfig(
    platform_id="plt_1",
    name="Shop Minh Anh",
    kind="x",
    secrets=("s",),
    app_key="k",
    push_url="https://gw/v1/webhooks/plt_1",
    tolerance_s=300,
)


def body(doc: Any) -> bytes:
    return json.dumps(doc).encode()


def shopee_push(status: str, code: int = 3, **data: Any) -> bytes:
    # As Shopee sends it (order_status push, v2).
    return body(
        {
            "msg_id": "64ca21a145e29bda3a6e31203c800e00",
            "data": {
                "completed_scenario": None,
                "items": [],
                "ordersn": "251214B9XAB0ST",
                "status": status,
                "update_time": 1765689439,
                **data,
            },
            "shop_id": 336094210,
            "code": code,
            "timestamp": 1765689440,
        }
    )


EXPECTED_SHOPEE = {
    "UNPAID": "created",
    "READY_TO_SHIP": "paid",
    "PROCESSED": "ready_to_ship",
    "RETRY_SHIP": "ready_to_ship",
    "SHIPPED": "shipped",
    "TO_CONFIRM_RECEIVE": "delivered",
    "COMPLETED": "completed",
    "CANCELLED": "cancelled",
    "TO_RETURN": "return_requested",
    "IN_CANCEL": None,
    "INVOICE_PENDING": None,
}


@pytest.mark.parametrize(("raw", "expected"), EXPECTED_SHOPEE.items())
def test_shopee_order_status_push_maps_every_status(raw: str, expected: str | None) -> None:
    mapping = ADAPTERS["shopee"].map(CFG, {}, shopee_push(raw))
    assert mapping.delivery_key == "64ca21a145e29bda3a6e31203c800e00"
    if expected is None:
        assert mapping.updates == []
        assert raw in (mapping.ignored or "")
        return
    (update,) = mapping.updates
    assert update.order_code == "251214B9XAB0ST"
    assert update.status == OrderStatus(expected)
    assert update.status_at == datetime(2025, 12, 14, 5, 17, 19, tzinfo=UTC)
    # The push carries no buyer or items: they come from the gateway's snapshot.
    assert update.buyer is None
    assert update.items is None


def test_shopee_table_is_fully_covered() -> None:
    assert set(EXPECTED_SHOPEE) == set(SHOPEE)


def test_shopee_other_push_codes_are_ignored() -> None:
    mapping = ADAPTERS["shopee"].map(CFG, {}, shopee_push("SHIPPED", code=4))
    assert mapping.updates == []
    assert "code 4" in (mapping.ignored or "")


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        (
            body({"code": 3, "shop_id": 1, "data": {"status": "SHIPPED", "update_time": 1}}),
            "data.ordersn",
        ),
        (shopee_push("WHATEVER"), "data.status"),
        (shopee_push("SHIPPED", update_time="yesterday"), "data.update_time"),
        (body({"shop_id": 1, "data": {}}), "code"),
    ],
)
def test_shopee_malformed_pushes_name_the_field(payload: bytes, field: str) -> None:
    with pytest.raises(MappingError) as err:
        ADAPTERS["shopee"].map(CFG, {}, payload)
    assert err.value.http_status == 422
    assert err.value.errors[0]["field"] == field


def test_a_body_that_is_not_json_is_a_400() -> None:
    with pytest.raises(MappingError) as err:
        ADAPTERS["shopee"].map(CFG, {}, b"{not json")
    assert err.value.http_status == 400
    assert err.value.errors[0]["field"] == "body"


def lazada_push(status: str, message_type: int = 0, line: str = "260422900298363") -> bytes:
    return body(
        {
            "seller_id": "1234567",
            "message_type": message_type,
            "data": {
                "order_status": status,
                "trade_order_id": "260422900198363",
                "trade_order_line_id": line,
                "status_update_time": 1603698638,
            },
            "timestamp": 1603766859530,
            "site": "lazada_vn",
        }
    )


EXPECTED_LAZADA = {
    "unpaid": "created",
    "pending": "paid",
    "topack": "paid",
    "packed": "ready_to_ship",
    "repacked": "ready_to_ship",
    "ready_to_ship_pending": "ready_to_ship",
    "ready_to_ship": "ready_to_ship",
    "toship": "ready_to_ship",
    "shipped": "shipped",
    "delivered": "delivered",
    "confirmed": "completed",
    "canceled": "cancelled",
    "cancelled": "cancelled",
    "returned": "returned",
    "shipped_back": "returned",
    "shipped_back_success": "returned",
    "failed_delivery": None,
    "lost_by_3pl": None,
    "damaged_by_3pl": None,
    "package_scrapped": None,
}


@pytest.mark.parametrize(("raw", "expected"), EXPECTED_LAZADA.items())
def test_lazada_trade_order_push_maps_every_status(raw: str, expected: str | None) -> None:
    mapping = ADAPTERS["lazada"].map(CFG, {}, lazada_push(raw))
    if expected is None:
        assert mapping.updates == []
        assert mapping.ignored
        return
    (update,) = mapping.updates
    assert update.order_code == "260422900198363"
    assert update.status == OrderStatus(expected)
    assert update.status_at == datetime.fromtimestamp(1603698638, UTC)


def test_lazada_table_is_fully_covered() -> None:
    assert set(EXPECTED_LAZADA) == set(LAZADA)


def test_lazada_pushes_for_two_lines_of_one_change_are_one_event() -> None:
    a = ADAPTERS["lazada"].map(CFG, {}, lazada_push("shipped", line="1")).updates[0]
    b = ADAPTERS["lazada"].map(CFG, {}, lazada_push("shipped", line="2")).updates[0]
    assert a.event_key == b.event_key


def test_lazada_other_message_types_are_ignored_and_unknown_statuses_rejected() -> None:
    assert ADAPTERS["lazada"].map(CFG, {}, lazada_push("shipped", message_type=10)).ignored
    with pytest.raises(MappingError) as err:
        ADAPTERS["lazada"].map(CFG, {}, lazada_push("teleported"))
    assert err.value.errors[0]["field"] == "data.order_status"


def tiktok_order(status: str) -> bytes:
    return body(
        {
            "type": 1,
            "tts_notification_id": "7327112393057371910",
            "shop_id": "7494049642642441621",
            "timestamp": 1644412885,
            "data": {
                "order_id": "576461413038785752",
                "order_status": status,
                "is_on_hold_order": False,
                "update_time": 1627587600,
            },
        }
    )


def tiktok_return(status: str, return_type: str = "RETURN_AND_REFUND") -> bytes:
    return body(
        {
            "type": 12,
            "tts_notification_id": "7327112393057371911",
            "shop_id": "7494049642642441621",
            "timestamp": 1644412885,
            "data": {
                "order_id": "576461413038785752",
                "return_role": "BUYER",
                "return_type": return_type,
                "return_status": status,
                "return_id": "4035246029464310398",
                "create_time": 1627587500,
                "update_time": 1627587700,
            },
        }
    )


EXPECTED_TIKTOK_ORDER = {
    "UNPAID": "created",
    "ON_HOLD": "paid",
    "AWAITING_SHIPMENT": "paid",
    "PARTIALLY_SHIPPING": "shipped",
    "AWAITING_COLLECTION": "ready_to_ship",
    "IN_TRANSIT": "shipped",
    "DELIVERED": "delivered",
    "COMPLETED": "completed",
    "CANCELLED": "cancelled",
}
EXPECTED_TIKTOK_RETURN = {
    "RETURN_OR_REFUND_REQUEST_PENDING": "return_requested",
    "AWAITING_BUYER_SHIP": "return_requested",
    "BUYER_SHIPPED_ITEM": "return_requested",
    "RETURN_OR_REFUND_REQUEST_SUCCESS": "returned",
    "RETURN_OR_REFUND_REQUEST_COMPLETE": "refunded",
    "REFUND_OR_RETURN_REQUEST_REJECT": None,
    "RETURN_OR_REFUND_REQUEST_CANCEL": None,
    "REJECT_RECEIVE_PACKAGE": None,
}


@pytest.mark.parametrize(("raw", "expected"), EXPECTED_TIKTOK_ORDER.items())
def test_tiktok_type_1_maps_every_order_status(raw: str, expected: str) -> None:
    mapping = ADAPTERS["tiktok"].map(CFG, {}, tiktok_order(raw))
    assert mapping.delivery_key == "7327112393057371910"
    (update,) = mapping.updates
    assert update.order_code == "576461413038785752"
    assert update.status == OrderStatus(expected)


@pytest.mark.parametrize(("raw", "expected"), EXPECTED_TIKTOK_RETURN.items())
def test_tiktok_type_12_maps_every_return_status(raw: str, expected: str | None) -> None:
    mapping = ADAPTERS["tiktok"].map(CFG, {}, tiktok_return(raw))
    if expected is None:
        assert mapping.ignored
        return
    (update,) = mapping.updates
    assert update.status == OrderStatus(expected)
    assert update.status_at == datetime.fromtimestamp(1627587700, UTC)


def test_tiktok_tables_are_fully_covered() -> None:
    assert set(EXPECTED_TIKTOK_ORDER) == set(TIKTOK_ORDER)
    assert set(EXPECTED_TIKTOK_RETURN) == set(TIKTOK_RETURN)


def test_tiktok_a_successful_refund_only_request_is_refunded_not_returned() -> None:
    mapping = ADAPTERS["tiktok"].map(
        CFG, {}, tiktok_return("RETURN_OR_REFUND_REQUEST_SUCCESS", return_type="REFUND")
    )
    assert mapping.updates[0].status is OrderStatus.REFUNDED


def test_tiktok_other_types_are_ignored() -> None:
    doc = json.loads(tiktok_order("DELIVERED"))
    doc["type"] = 3
    assert "type 3" in (ADAPTERS["tiktok"].map(CFG, {}, body(doc)).ignored or "")


def shop_order(**fields: Any) -> dict[str, Any]:
    """A Shopify orders/* webhook body (Haravan's and Sapo's have the same shape)."""
    order: dict[str, Any] = {
        "id": 820982911946154508,
        "name": "#1001",
        "order_number": 1001,
        "email": "an.nguyen@example.vn",
        "created_at": "2026-11-20T10:00:00+07:00",
        "updated_at": "2026-11-20T11:00:00+07:00",
        "cancelled_at": None,
        "closed_at": None,
        "financial_status": "pending",
        "fulfillment_status": None,
        "currency": "VND",
        "total_price": "300000.00",
        "customer": {"first_name": "An", "last_name": "Nguyễn Văn", "phone": "+84912345678"},
        "shipping_address": {"name": "Nguyễn Văn An", "phone": "0912345678"},
        "line_items": [
            {"id": 1, "sku": "AO-01", "title": "Áo thun", "quantity": 2, "price": "150000.00"}
        ],
        "fulfillments": [],
    }
    order.update(fields)
    return order


SHOP_HEADERS = {
    "shopify": (
        "x-shopify-topic",
        {"x-shopify-webhook-id": "b54557e4-bdd9-4b37-8a5f-bf7d70bcd043"},
    ),
    "haravan": ("x-haravan-topic", {"x-haravan-org-id": "200000123"}),
    "sapo": ("x-sapo-topic", {"x-sapo-shop-domain": "minhanh.mysapo.net"}),
}

SHOP_CASES = [
    ("orders/create", {}, "created"),
    ("orders/paid", {"financial_status": "paid"}, "paid"),
    (
        "orders/fulfilled",
        {"financial_status": "paid", "fulfillment_status": "fulfilled"},
        "shipped",
    ),
    ("orders/partially_fulfilled", {"fulfillment_status": "partial"}, "shipped"),
    (
        "orders/updated",
        {"fulfillment_status": "fulfilled", "fulfillments": [{"shipment_status": "delivered"}]},
        "delivered",
    ),
    ("orders/updated", {"carrier_status_code": "delivered"}, "delivered"),
    (
        "orders/updated",
        {"fulfillment_status": "fulfilled", "closed_at": "2026-11-25T08:00:00+07:00"},
        "completed",
    ),
    ("orders/updated", {"fulfillment_status": "fulfilled", "status": "closed"}, "completed"),
    ("orders/cancelled", {"cancelled_at": "2026-11-20T12:00:00+07:00"}, "cancelled"),
    ("orders/updated", {"cancelled_status": "cancelled"}, "cancelled"),
    ("orders/updated", {"status": "cancelled"}, "cancelled"),
    ("orders/updated", {"financial_status": "refunded"}, "refunded"),
]


@pytest.mark.parametrize("kind", ["shopify", "haravan", "sapo"])
@pytest.mark.parametrize(("topic", "fields", "expected"), SHOP_CASES)
def test_shopify_family_maps_orders_topics(
    kind: str, topic: str, fields: dict[str, Any], expected: str
) -> None:
    topic_header, extra = SHOP_HEADERS[kind]
    mapping = ADAPTERS[kind].map(CFG, {topic_header: topic, **extra}, body(shop_order(**fields)))
    (update,) = mapping.updates
    assert update.status == OrderStatus(expected)
    assert update.order_code == "1001"
    # These webhooks carry the whole order: buyer, items and money come with them.
    assert update.buyer is not None
    assert update.buyer.phone == "0912345678"
    assert update.buyer.name == "Nguyễn Văn An"
    assert update.items is not None
    assert update.items[0].sku == "AO-01"
    assert update.items[0].unit_price == 150000
    assert update.total_amount == 300000
    assert update.seller is not None
    assert update.seller.name == "Shop Minh Anh"


def test_shopify_delivery_id_and_sapo_timestamps() -> None:
    mapping = ADAPTERS["shopify"].map(
        CFG,
        {"x-shopify-topic": "orders/paid", "x-shopify-webhook-id": "abc"},
        body(shop_order(financial_status="paid")),
    )
    assert mapping.delivery_key == "abc"
    sapo = shop_order(updated_at=None, created_at=None, modified_on="2026-11-21T09:00:00Z")
    update = ADAPTERS["sapo"].map(CFG, {"x-sapo-topic": "orders/updated"}, body(sapo)).updates[0]
    assert update.status_at == datetime(2026, 11, 21, 9, tzinfo=UTC)


def test_shopify_paid_and_updated_for_one_change_share_an_event_key() -> None:
    doc = body(shop_order(financial_status="paid"))
    a = ADAPTERS["shopify"].map(CFG, {"x-shopify-topic": "orders/paid"}, doc).updates[0]
    b = ADAPTERS["shopify"].map(CFG, {"x-shopify-topic": "orders/updated"}, doc).updates[0]
    assert a.event_key == b.event_key


def test_shopify_family_ignores_other_topics_and_needs_a_topic() -> None:
    doc = body(shop_order())
    assert ADAPTERS["haravan"].map(CFG, {"x-haravan-topic": "products/update"}, doc).ignored
    assert ADAPTERS["shopify"].map(CFG, {"x-shopify-topic": "orders/delete"}, doc).ignored
    with pytest.raises(MappingError) as err:
        ADAPTERS["sapo"].map(CFG, {}, doc)
    assert err.value.errors[0]["field"] == "X-Sapo-Topic"


def test_shopify_family_without_a_phone_leaves_the_buyer_to_the_snapshot() -> None:
    doc = shop_order(customer=None, shipping_address=None)
    update = ADAPTERS["shopify"].map(CFG, {"x-shopify-topic": "orders/paid"}, body(doc)).updates[0]
    assert update.buyer is None


def test_shopify_family_bad_amount_names_the_field() -> None:
    doc = shop_order(line_items=[{"sku": "A", "title": "A", "quantity": 1, "price": "lots"}])
    with pytest.raises(MappingError) as err:
        ADAPTERS["haravan"].map(CFG, {"x-haravan-topic": "orders/create"}, body(doc))
    assert err.value.errors[0]["field"] == "line_items.0.price"
