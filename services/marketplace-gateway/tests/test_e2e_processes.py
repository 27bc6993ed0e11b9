"""End to end on real processes: gateway API (uvicorn) and worker, a Tansu broker, the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from kafka import KafkaConsumer, KafkaProducer

from gateway.signatures import verify_standard_webhooks
from odr_shared.events import Actor, CaseEventV1, CaseStatus, Contact, build_event, parse_event
from odr_shared.testing import free_port, sample_order, standard_webhook_headers, wait_http

pytestmark = [pytest.mark.e2e, pytest.mark.kafka]


@pytest.fixture
def gateway(broker, tmp_path: Path) -> Iterator[dict[str, Any]]:
    port = free_port()
    env = {
        **os.environ,
        "ENVIRONMENT": "test",
        "LOG_FORMAT": "json",
        "KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap,
        "GATEWAY_DATABASE_URL": f"sqlite:///{tmp_path}/gateway.db",
        "GATEWAY_PUBLIC_BASE_URL": f"http://127.0.0.1:{port}",
        "GATEWAY_OUTBOUND_SCHEDULE_SCALE": "0.001",
        "GATEWAY_OUTBOUND_POLL_INTERVAL_S": "0.1",
        "GATEWAY_URL": f"http://127.0.0.1:{port}",
    }
    py = sys.executable
    subprocess.run([py, "-c", "from gateway.main import migrate; migrate()"], env=env, check=True)
    procs = []
    for argv in (
        [py, "-c", "from gateway.main import api; api()", "--port", str(port)],
        [py, "-c", "from gateway.main import worker; worker()"],
    ):
        log = open(tmp_path / f"{len(procs)}.log", "wb")  # noqa: SIM115 - closed below
        procs.append((subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT), log))
    try:
        wait_http(f"http://127.0.0.1:{port}/readyz", timeout_s=60)
        yield {"url": f"http://127.0.0.1:{port}", "env": env, "bootstrap": broker.bootstrap}
    finally:
        for proc, log in procs:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            log.close()


def odr(gateway, *args: str) -> Any:
    out = subprocess.run(
        [sys.executable, "-m", "odr_cli.main", "platform", *args],
        env=gateway["env"],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout)


def consume_until(bootstrap: str, topic: str, match, timeout_s: float = 30) -> Any:
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=f"t-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest",
        session_timeout_ms=6000,
        heartbeat_interval_ms=1000,
    )
    try:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=500).values():
                for rec in records:
                    found = match(rec)
                    if found:
                        return found
    finally:
        consumer.close()
    raise AssertionError(f"nothing matched on {topic}")


def test_cli_registers_webhook_reaches_kafka_and_case_events_reach_the_platform(
    gateway, endpoint
) -> None:
    platform = odr(
        gateway, "add", "--name", "Sàn E2E", "--kind", "standard", "--outbound-url", endpoint.url
    )
    pid = platform["platform_id"]
    assert pid in [p["platform_id"] for p in odr(gateway, "list")]

    # Inbound: a signed delivery over real HTTP lands on orders.events through the outbox.
    code = f"DH{uuid.uuid4().hex[:8].upper()}"
    body = json.dumps(
        {"type": "order.created", "timestamp": "2026-11-20T03:00:00Z", "data": sample_order(code)}
    ).encode()
    r = httpx.post(
        f"{gateway['url']}/v1/webhooks/{pid}",
        content=body,
        headers=standard_webhook_headers(platform["webhook_secret"], body),
    )
    assert r.status_code == 202, r.text

    def order_event(rec):
        if rec.key == f"{pid}:{code}".encode():
            return parse_event(rec.value)
        return None

    event = consume_until(gateway["bootstrap"], "orders.events", order_event)
    assert event.type == "order.status_changed"
    assert event.data.buyer.phone == "0912345678"
    assert event.id == r.json()["event_id"]

    # Outbound: a case event on cases.events is delivered to the platform, signed.
    case = build_event(
        source="odr/complaints",
        event_type="case.opened",
        subject="case-e2e",
        data=CaseEventV1(
            case_id="case-e2e",
            reference="KN-2026-000001",
            order_id=f"{pid}:{code}",
            platform_id=pid,
            order_code=code,
            status=CaseStatus.AWAITING_MERCHANT,
            category="not_delivered",
            actor=Actor(role="consumer"),
            consumer=Contact(name="Nguyễn Văn An", phone="0912345678"),
        ),
    )
    producer = KafkaProducer(
        bootstrap_servers=gateway["bootstrap"], acks="all", enable_idempotence=True
    )
    producer.send("cases.events", key=b"case-e2e", value=case.to_json_bytes()).get(timeout=15)
    producer.send("cases.events", key=b"bad", value=b"{not an event").get(timeout=15)
    producer.close()
    deadline = time.monotonic() + 45
    while not endpoint.received and time.monotonic() < deadline:
        time.sleep(0.1)
    assert endpoint.received, "the case event never reached the platform"
    got = endpoint.received[0]
    verify_standard_webhooks([platform["webhook_secret"]], got.headers, got.body)
    assert json.loads(got.body)["data"]["reference"] == "KN-2026-000001"
    assert b"0912345678" not in got.body

    # What the gateway cannot parse goes to the dead-letter topic with its error.
    def dead(rec):
        headers = dict(rec.headers)
        if rec.key == b"bad" and headers.get("dlq-consumer-group") == b"gateway":
            return headers
        return None

    headers = consume_until(gateway["bootstrap"], "cases.events.dlq", dead)
    assert b"not JSON" in headers["dlq-error"]

    log = httpx.get(
        f"{gateway['url']}/v1/platforms/{pid}/deliveries",
        headers={"Authorization": "Bearer " + _admin_token(gateway)},
    ).json()
    assert log[0]["status"] == "delivered"


def _admin_token(gateway) -> str:
    out = subprocess.run(
        [sys.executable, "-m", "odr_cli.main", "token", "--role", "admin"],
        env=gateway["env"],
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.strip()
