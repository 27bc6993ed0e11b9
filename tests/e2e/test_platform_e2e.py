"""End to end on the running platform: health, webhook -> Kafka -> complaints, dead letters."""

from __future__ import annotations

import json
import time
import uuid

import httpx
import pytest
from kafka import KafkaConsumer, KafkaProducer

from odr_cli.stack import SERVICES, Stack
from odr_shared.auth import TokenService
from odr_shared.settings import ServiceSettings
from odr_shared.testing import sample_order, standard_webhook_headers

pytestmark = pytest.mark.e2e


def admin_headers() -> dict[str, str]:
    from datetime import timedelta

    token = TokenService(ServiceSettings()).issue(
        role="admin", subject="e2e", ttl=timedelta(minutes=10)
    )
    return {"Authorization": f"Bearer {token}"}


def wait_for(fn, timeout_s: float = 20.0, interval: float = 0.1):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        result = fn()
        if result:
            return result
        time.sleep(interval)
    raise AssertionError("condition not met in time")


def test_every_service_is_ready_and_exposes_ops_endpoints(stack: Stack) -> None:
    for name in SERVICES:
        base = stack.url(name)
        assert httpx.get(f"{base}/healthz").json()["status"] == "ok"
        ready = httpx.get(f"{base}/readyz")
        assert ready.status_code == 200, ready.text
        assert ready.json()["checks"] == {"database": "ok", "broker": "ok"}
        assert "odr_http_requests_total" in httpx.get(f"{base}/metrics").text
        assert httpx.get(f"{base}/openapi.json").json()["info"]["title"]


def test_order_event_posted_to_gateway_is_stored_by_complaints(stack: Stack) -> None:
    gw, complaints = stack.url("gateway"), stack.url("complaints")
    created = httpx.post(
        f"{gw}/v1/platforms", json={"name": "Sàn Demo", "kind": "standard"}, headers=admin_headers()
    )
    assert created.status_code == 201, created.text
    platform = created.json()
    code = f"DH{uuid.uuid4().hex[:8].upper()}"
    body = json.dumps(
        {"type": "order.updated", "timestamp": "2026-11-20T03:00:00Z", "data": sample_order(code)}
    ).encode()
    headers = standard_webhook_headers(platform["webhook_secret"], body)
    r = httpx.post(
        f"{gw}/v1/webhooks/{platform['platform_id']}", content=body, headers=headers, timeout=60
    )
    assert r.status_code == 202, r.text

    def order_visible() -> dict[str, object] | None:
        resp = httpx.get(
            f"{complaints}/v1/orders/{code}",
            params={"platform_id": platform["platform_id"]},
            headers=admin_headers(),
        )
        return resp.json() if resp.status_code == 200 else None

    order = wait_for(order_visible)
    assert order["status"] == "delivered"
    assert order["total_amount"] == 300000
    # Buyer data is masked on the way out.
    assert "0912345678" not in json.dumps(order)
    assert order["buyer"]["phone"].endswith("678")

    # The same delivery again (same webhook-id) has one effect.
    again = httpx.post(f"{gw}/v1/webhooks/{platform['platform_id']}", content=body, headers=headers)
    assert again.status_code == 202
    assert again.json()["duplicate"] is True
    time.sleep(1.0)
    history = order_visible()["history"]  # type: ignore[index]
    assert len(history) == 1


def test_unparseable_message_lands_in_dead_letter_topic_with_its_error(stack: Stack) -> None:
    producer = KafkaProducer(bootstrap_servers=stack.bootstrap, acks="all", enable_idempotence=True)
    poison = b'{"specversion": "1.0", "type": "order.status_changed", "id": "x"'  # truncated JSON
    key = f"poison-{uuid.uuid4().hex}".encode()
    producer.send("orders.events", key=key, value=poison).get(timeout=10)
    producer.close()
    consumer = KafkaConsumer(
        "orders.events.dlq",
        bootstrap_servers=stack.bootstrap,
        group_id=f"e2e-dlq-{uuid.uuid4().hex[:6]}",
        auto_offset_reset="earliest",
        session_timeout_ms=6000,
        heartbeat_interval_ms=1000,
    )
    found: dict[str, dict[str, bytes]] = {}
    deadline = time.monotonic() + 30
    try:
        # Complaints and notifications both consume orders.events: each dead-letters it.
        while time.monotonic() < deadline and len(found) < 2:
            for records in consumer.poll(timeout_ms=500).values():
                for rec in records:
                    if rec.key == key:
                        headers = dict(rec.headers)
                        found[headers["dlq-consumer-group"].decode()] = headers
                        assert rec.value == poison
    finally:
        consumer.close()
    assert set(found) == {"complaints", "notifications"}
    for headers in found.values():
        assert b"not JSON" in headers["dlq-error"]
        assert headers["dlq-source-topic"] == b"orders.events"
