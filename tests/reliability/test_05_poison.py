"""Poison messages: every consumer group dead-letters them with the error and keeps flowing."""

from __future__ import annotations

import json
import uuid

import pytest
from kafka import KafkaProducer, TopicPartition
from reliability_kit import (
    CONSUMERS,
    GROUP_WORKERS,
    ReliabilityStack,
    committed,
    make_platform,
    new_email,
    new_phone,
    order,
    read_topic,
    record,
    wait_for,
)

from odr_shared.events import dead_letter_topic

pytestmark = [pytest.mark.reliability, pytest.mark.e2e]

TOPICS = ["orders.events", "cases.events", "mediation.events", "notifications.commands"]
# What a producer can get wrong: a type each topic's consumers handle, with data that fails it.
BAD_DATA = {
    "orders.events": ("order.status_changed", {"order_id": "x:y", "status": "teleported"}),
    "cases.events": ("case.opened", {"case_id": 42, "status": "nowhere"}),
    "mediation.events": ("case.assigned", {"neutral_role": "oracle"}),
    "notifications.commands": ("notification.send", {"template": "otp", "channel": "pigeon"}),
}


def poison_for(topic: str) -> list[tuple[str, bytes]]:
    kind, data = BAD_DATA[topic]
    envelope = {
        "specversion": "1.0",
        "id": str(uuid.uuid4()),
        "source": "reliability",
        "type": kind,
        "time": "2026-11-20T03:00:00Z",
        "subject": "x",
        "datacontenttype": "application/json",
        "data": data,
    }
    return [
        ("truncated-json", b'{"specversion": "1.0", "type": "case.opened", "id": "'),
        ("not-a-cloudevent", json.dumps({"hello": "world"}).encode()),
        ("binary-garbage", bytes(range(256))),
        ("invalid-payload", json.dumps(envelope).encode()),
    ]


def test_poison_messages_are_dead_lettered_with_the_error_and_topics_keep_flowing(
    rstack: ReliabilityStack,
) -> None:
    bootstrap = rstack.stack.bootstrap
    consumers = CONSUMERS
    producer = KafkaProducer(bootstrap_servers=[bootstrap], acks="all", enable_idempotence=True)
    sent: dict[bytes, tuple[str, str, TopicPartition, int]] = {}
    try:
        for topic in TOPICS:
            for label, value in poison_for(topic):
                key = f"poison-{label}-{uuid.uuid4().hex[:8]}".encode()
                meta = producer.send(topic, key=key, value=value).get(timeout=15)
                sent[key] = (topic, label, TopicPartition(topic, meta.partition), meta.offset)
    finally:
        producer.close()

    # The main topic keeps flowing: an order event sent after the poison is applied.
    platform = make_platform(rstack.stack, "Sàn Sau Độc")
    code = f"RP{uuid.uuid4().hex[:8].upper()}"
    assert (
        platform.post(order(code, "paid", 1, new_phone(), new_email("poison"))).status_code == 202
    )
    wait_for(
        lambda: rstack.scalar(
            "complaints",
            "SELECT count(*) FROM orders WHERE platform_id = :p",
            p=platform.platform_id,
        ),
        timeout_s=60,
    )

    expected = {(key, g) for key, (topic, *_r) in sent.items() for g in consumers[topic]}

    def dead_letters() -> dict[tuple[bytes, str], dict[str, bytes]]:
        found: dict[tuple[bytes, str], dict[str, bytes]] = {}
        for topic in TOPICS:
            for rec in read_topic(bootstrap, dead_letter_topic(topic)):
                headers = dict(rec.headers)
                group = headers.get("dlq-consumer-group", b"").decode()
                if (rec.key, group) in expected:
                    found[(rec.key, group)] = headers | {"value": rec.value}
        return found

    found = wait_for(lambda: (d := dead_letters()) and len(d) >= len(expected) and d, 90, 1.0)
    for (key, _group), headers in found.items():
        topic, _label, _tp, _off = sent[key]
        assert headers["dlq-error"], key
        assert headers["dlq-source-topic"] == topic.encode()
    # Every group's committed offset moved past its poison: nothing is stuck behind it.
    passed = 0
    for group in GROUP_WORKERS:
        offsets = wait_for(lambda g=group: committed(bootstrap, g), 30)
        for _key, (topic, _label, tp, off) in sent.items():
            if group in consumers[topic]:
                wait_for(
                    lambda g=group, tp=tp, off=off: committed(bootstrap, g).get(tp, -1) > off, 60
                )
                passed += 1
        assert offsets
    record(
        "poison_messages",
        injected=len(sent),
        kinds=sorted({label for _t, label, _tp, _o in sent.values()}),
        topics=len(TOPICS),
        expected_dead_letters=len(expected),
        dead_lettered_with_error=len(found),
        groups_past_poison=passed,
        consumers_per_topic={t: sorted(g) for t, g in consumers.items()},
    )
    assert set(found) == expected
