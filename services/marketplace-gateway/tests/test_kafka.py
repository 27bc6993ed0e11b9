"""The worker's parts against a real broker, on SQLite and PostgreSQL: outbox and consumer."""

from __future__ import annotations

import json
import threading
import uuid

import pytest
from kafka import KafkaConsumer, KafkaProducer

from gateway.outbound import OutboundDispatcher, handlers
from odr_shared.events import Actor, CaseEventV1, CaseStatus, build_event, parse_event
from odr_shared.kafka import EventConsumer, ensure_topics, make_producer
from odr_shared.outbox import OutboxRelay
from odr_shared.testing import sample_order, standard_webhook_headers

pytestmark = pytest.mark.kafka


def test_accepted_delivery_is_relayed_to_orders_events(gw, client, broker) -> None:
    p = gw.register()
    code = f"K{uuid.uuid4().hex[:8]}"
    body = json.dumps(
        {"type": "order.created", "timestamp": "2026-11-20T03:00:00Z", "data": sample_order(code)}
    ).encode()
    r = gw.client.post(
        f"/v1/webhooks/{p['platform_id']}",
        content=body,
        headers=standard_webhook_headers(p["webhook_secret"], body),
    )
    assert r.status_code == 202
    ensure_topics(broker.bootstrap, ["orders.events"])
    producer = make_producer(broker.bootstrap, "test-relay")
    try:
        with OutboxRelay(client.app.state.engine, producer, name="gateway-test") as relay:
            assert relay.publish_batch() == 1
            assert relay.publish_batch() == 0  # marked sent
    finally:
        producer.close()
    consumer = KafkaConsumer(
        "orders.events",
        bootstrap_servers=broker.bootstrap,
        group_id=f"t-{uuid.uuid4().hex[:6]}",
        auto_offset_reset="earliest",
        session_timeout_ms=6000,
        heartbeat_interval_ms=1000,
    )
    try:
        found = None
        for _ in range(60):
            for records in consumer.poll(timeout_ms=500).values():
                for rec in records:
                    if rec.key == f"{p['platform_id']}:{code}".encode():
                        found = parse_event(rec.value)
            if found:
                break
    finally:
        consumer.close()
    assert found is not None
    assert found.id == r.json()["event_id"]
    assert found.data.order_code == code  # type: ignore[attr-defined]


def test_case_events_consumed_from_the_broker_reach_the_platform(
    gw, client, settings, broker, endpoint, until
) -> None:
    p = gw.register(outbound_url=endpoint.url)
    ensure_topics(broker.bootstrap, ["cases.events", "mediation.events"])
    event = build_event(
        source="odr/complaints",
        event_type="case.resolved",
        subject="case-k",
        data=CaseEventV1(
            case_id="case-k",
            reference="KN-2026-000777",
            order_id=f"{p['platform_id']}:DH1",
            platform_id=p["platform_id"],
            order_code="DH1",
            status=CaseStatus.RESOLVED,
            category="damaged",
            actor=Actor(role="platform"),
        ),
    )
    producer = KafkaProducer(
        bootstrap_servers=broker.bootstrap, acks="all", enable_idempotence=True
    )
    producer.send("cases.events", key=b"case-k", value=event.to_json_bytes()).get(timeout=15)
    producer.close()
    consumer = EventConsumer(
        settings=settings.model_copy(update={"kafka_bootstrap_servers": broker.bootstrap}),
        # A fresh group per test: the shared broker keeps other tests' messages.
        group_id=f"gateway-test-{uuid.uuid4().hex[:6]}",
        handlers=handlers(),
        topics=["cases.events", "mediation.events"],
        session_factory=client.app.state.sessions,
    )
    thread = threading.Thread(target=consumer.run, daemon=True)
    thread.start()
    dispatcher = OutboundDispatcher(client.app.state.sessions, client.app.state.cipher, settings)
    try:
        until(
            lambda: any(json.loads(r.body)["type"] == "case.resolved" for r in endpoint.received),
            step=dispatcher.run_once,
            timeout_s=60,
        )
    finally:
        consumer.stop()
        thread.join(timeout=15)
        dispatcher.close()
        if consumer._producer is not None:
            consumer._producer.close()
    got = next(r for r in endpoint.received if json.loads(r.body)["type"] == "case.resolved")
    assert got.headers["webhook-id"] == "msg_" + event.id.replace("-", "")
