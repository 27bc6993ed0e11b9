"""Worker parts against a real broker: mediation.events move cases, the outbox relays."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from kafka import KafkaConsumer, KafkaProducer

from complaints import service
from complaints.consumer import handlers
from complaints.service import Deps
from odr_shared.auth import Party
from odr_shared.events import (
    CASES_TOPIC,
    MEDIATION_TOPIC,
    ORDERS_TOPIC,
    Actor,
    MediationEventV1,
    build_event,
)
from odr_shared.kafka import EventConsumer, ensure_topics, make_producer
from odr_shared.outbox import OutboxRelay
from odr_shared.testing import TansuBroker

pytestmark = pytest.mark.kafka


def wait_for(fn: Callable[[], Any], timeout_s: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        result = fn()
        if result:
            return result
        time.sleep(0.1)
    raise AssertionError("condition not met in time")


@pytest.fixture
def worker(deps: Deps, broker: TansuBroker) -> Iterator[Deps]:
    deps.settings.kafka_bootstrap_servers = broker.bootstrap
    ensure_topics(broker.bootstrap, [ORDERS_TOPIC, CASES_TOPIC, MEDIATION_TOPIC])
    producer = make_producer(broker.bootstrap, "complaints-test")
    consumer = EventConsumer(
        settings=deps.settings,
        group_id=f"complaints-{uuid.uuid4().hex[:6]}",
        handlers=handlers(deps),
        topics=[ORDERS_TOPIC, MEDIATION_TOPIC],
        session_factory=deps.sessions,
        producer=producer,
    )
    relay = OutboxRelay(deps.sessions.kw["bind"], producer, name="complaints-test")
    threads = [threading.Thread(target=p.run, daemon=True) for p in (consumer, relay)]
    for t in threads:
        t.start()
    yield deps
    consumer.stop()
    relay.stop()
    for t in threads:
        t.join(timeout=15)
    producer.close()


def test_mediation_events_from_the_broker_move_the_case_once(
    worker: Deps, broker: TansuBroker, seed_order: Callable[..., str]
) -> None:
    deps = worker
    order = seed_order(f"DHK{uuid.uuid4().hex[:6]}")
    consumer = Party("consumer", "c", platform_id="plat-a", order_id=order)
    rec = service.open_case(
        deps,
        consumer,
        order_code=order.split(":")[1],
        category="damaged",
        description="Hàng vỡ khi giao tới.",
        desired_outcome="refund",
        claimed_amount=None,
        language="vi",
    )
    service.escalate(deps, Party("platform", "p", platform_id="plat-a"), rec.id, None)

    # cases.events leave through the outbox relay, keyed by the case id.
    reader = KafkaConsumer(
        CASES_TOPIC,
        bootstrap_servers=broker.bootstrap,
        group_id=f"r-{uuid.uuid4().hex[:6]}",
        auto_offset_reset="earliest",
        session_timeout_ms=6000,
        heartbeat_interval_ms=1000,
    )
    seen: list[str] = []

    def escalated_published() -> bool:
        for records in reader.poll(timeout_ms=500).values():
            for r in records:
                if r.key == rec.id.encode():
                    seen.append(json.loads(r.value)["type"])
        return "case.escalated" in seen

    try:
        wait_for(escalated_published)
    finally:
        reader.close()
    assert seen[0] == "case.opened"

    producer = KafkaProducer(
        bootstrap_servers=broker.bootstrap, acks="all", enable_idempotence=True
    )
    assigned = build_event(
        source="urn:odr:mediation",
        event_type="case.assigned",
        subject=rec.id,
        data=MediationEventV1(
            case_id=rec.id, neutral_id="med-9", neutral_role="mediator", actor=Actor(role="system")
        ),
    )
    # The same event twice: the inbox makes the second a no-op.
    for _ in range(2):
        producer.send(MEDIATION_TOPIC, key=rec.id.encode(), value=assigned.to_json_bytes()).get(
            timeout=10
        )
    producer.close()
    view = wait_for(
        lambda: (v := service.get_case(deps, consumer, rec.id))["status"] == "in_mediation" and v
    )
    assert view["neutral_id"] == "med-9"
    time.sleep(1.0)  # give a duplicate the chance to do harm
    view = service.get_case(deps, consumer, rec.id)
    assert [e["kind"] for e in view["timeline"]].count("neutral_assigned") == 1
    assert [e.get("to_status") for e in view["timeline"]].count("in_mediation") == 1
