"""Pure rules: merging updates into known orders, the retry schedule, what platforms may see."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from gateway.domain import (
    RETRY_SCHEDULE_S,
    KnownOrder,
    OrderUpdate,
    merge,
    next_delay,
    parse_retry_after,
    redact_for_platform,
)
from odr_shared.events import Buyer, OrderItem, OrderStatus, Seller

T0 = datetime(2026, 11, 20, 3, tzinfo=UTC)
BUYER = Buyer(name="Nguyễn Văn An", phone="0912345678")
SELLER = Seller(id="s1", name="Minh Anh")
ITEMS = [OrderItem(sku="A", name="Áo", quantity=1, unit_price=100)]


def full(status: OrderStatus = OrderStatus.PAID, at: datetime = T0) -> KnownOrder:
    return KnownOrder("DH1", status, at, BUYER, SELLER, ITEMS, 100, "VND")


def push(status: OrderStatus, at: datetime) -> OrderUpdate:
    return OrderUpdate("DH1", status, at, event_key=f"{status}{at}")


def test_a_status_push_keeps_buyer_items_and_money_from_the_known_order() -> None:
    result = merge(full(), push(OrderStatus.SHIPPED, T0 + timedelta(hours=1)))
    assert result.order.status is OrderStatus.SHIPPED
    assert result.order.buyer == BUYER
    assert result.order.items == ITEMS
    assert result.order.total_amount == 100
    assert result.order.complete
    assert not result.stale


def test_an_older_status_arriving_late_is_stale_and_changes_nothing() -> None:
    result = merge(full(OrderStatus.SHIPPED, T0), push(OrderStatus.PAID, T0 - timedelta(hours=1)))
    assert result.stale
    assert result.order.status is OrderStatus.SHIPPED


def test_a_push_for_an_unknown_order_is_incomplete_until_the_order_arrives() -> None:
    held = merge(None, push(OrderStatus.SHIPPED, T0 + timedelta(hours=2))).order
    assert not held.complete
    assert held.missing() == ["buyer", "seller", "total_amount"]
    # The full order, older than the push, completes it; the newer pushed status is kept.
    later = OrderUpdate("DH1", OrderStatus.PAID, T0, "k", BUYER, SELLER, ITEMS, 100, "VND")
    result = merge(held, later)
    assert result.order.complete
    assert not result.stale
    assert result.order.status is OrderStatus.SHIPPED


def test_the_schedule_is_the_standard_webhooks_one() -> None:
    assert RETRY_SCHEDULE_S == (0, 5, 300, 1800, 7200, 18000, 36000, 50400, 72000, 86400)
    rng = random.Random(1)
    for step, base in enumerate(RETRY_SCHEDULE_S):
        delay = next_delay(step, rng=rng)
        assert delay is not None
        assert base <= delay <= base * 1.1
    assert next_delay(len(RETRY_SCHEDULE_S)) is None


def test_retry_after_is_a_floor_and_scale_shrinks_the_schedule() -> None:
    assert next_delay(1, scale=0.001, jitter=0, retry_after_s=7) == 7
    assert next_delay(3, scale=0.001, jitter=0) == 1.8
    assert next_delay(1, jitter=0, retry_after_s=10**9) == 86400


def test_retry_after_header_forms() -> None:
    now = datetime(2026, 11, 20, 3, tzinfo=UTC)
    assert parse_retry_after("120", now) == 120
    assert parse_retry_after("Fri, 20 Nov 2026 03:01:00 GMT", now) == 60
    assert parse_retry_after("soon", now) is None
    assert parse_retry_after(None, now) is None


def test_platforms_never_see_consumer_or_neutral_contact() -> None:
    payload = {
        "case_id": "c1",
        "consumer": {"name": "An", "phone": "0912345678", "email": "a@x.vn", "language": "vi"},
        "neutral_contact": {"name": "Hoà giải viên B", "phone": "0988", "email": "b@x.vn"},
    }
    out = redact_for_platform(payload)
    assert out == {
        "case_id": "c1",
        "consumer": {"language": "vi"},
        "neutral_contact": {"name": "Hoà giải viên B"},
    }


def test_kept_headers_drop_signatures_credentials_and_client_addresses() -> None:
    from gateway.ingest import kept_headers

    kept = kept_headers(
        {
            "authorization": "abc",
            "webhook-signature": "v1,x",
            "webhook-id": "msg_1",
            "x-shopify-hmac-sha256": "zz",
            "x-shopify-topic": "orders/paid",
            "x-forwarded-for": "203.0.113.9",
            "cookie": "s=1",
            "content-type": "application/json",
            "accept": "*/*",
        }
    )
    assert kept == {
        "webhook-id": "msg_1",
        "x-shopify-topic": "orders/paid",
        "content-type": "application/json",
    }
