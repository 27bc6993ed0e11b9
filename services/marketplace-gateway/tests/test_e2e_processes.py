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

from gateway.settings import GatewaySettings
from gateway.signatures import verify_standard_webhooks
from odr_shared.events import Actor, CaseEventV1, CaseStatus, Contact, build_event, parse_event
from odr_shared.privacy import KeyClient, Opener
from odr_shared.testing import (
    TansuBroker,
    free_port,
    sample_order,
    standard_webhook_headers,
    wait_http,
)

pytestmark = [pytest.mark.e2e, pytest.mark.kafka]


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TansuBroker]:
    """A broker of this module's own. Its worker reads cases.events from the start, where the
    session's broker holds other tests' events sealed by services not running here: their
    keys' owners never answer, so those events (rightly) hold their partitions back."""
    with TansuBroker(log_path=tmp_path_factory.mktemp("tansu") / "tansu.log") as b:
        yield b


@pytest.fixture(scope="module")
def gateway(broker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    tmp_path: Path = tmp_path_factory.mktemp("gateway-e2e")
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
        "GATEWAY_MAX_BODY_BYTES": "4096",
        "GATEWAY_WEBHOOK_RATE_LIMIT": "25",
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

    sealed = consume_until(gateway["bootstrap"], "orders.events", order_event)
    assert sealed.type == "order.status_changed"
    assert sealed.version == 2  # the buyer travels sealed
    # A consumer that needs the buyer opens it with the key the gateway's API hands to services.
    caller = GatewaySettings(environment="test", service_urls=f"gateway={gateway['url']}")
    opener = Opener(service="complaints", client=KeyClient(caller, "complaints"))
    try:
        event = opener.open(sealed)
    finally:
        opener.client.close()  # type: ignore[union-attr]
    assert event is not None
    assert event.data.buyer.phone == "0912345678"  # type: ignore[attr-defined]
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


def _register(gateway, kind: str, **extra: Any) -> dict[str, Any]:
    body = {"name": f"Real {kind}", "kind": kind, **extra}
    if kind != "standard":
        body["signing_secret"] = f"{kind}-secret-0123456789"
    if kind in ("lazada", "tiktok"):
        body["app_key"] = "app-key-42"
    r = httpx.post(
        f"{gateway['url']}/v1/platforms",
        json=body,
        headers={"Authorization": "Bearer " + _admin_token(gateway)},
    )
    assert r.status_code == 201, r.text
    return {**r.json(), **body}


def _hex(secret: str, message: bytes) -> str:
    import hashlib
    import hmac

    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def _b64(secret: str, message: bytes) -> str:
    import base64
    import hashlib
    import hmac

    return base64.b64encode(hmac.new(secret.encode(), message, hashlib.sha256).digest()).decode()


def _signed(gateway, p: dict[str, Any], body: bytes, *, tamper: bool = False) -> dict[str, str]:
    """Headers as each marketplace would sign `body`; with tamper, a signature of other bytes."""
    signed = body + b" " if tamper else body
    kind = p["kind"]
    if kind == "standard":
        return standard_webhook_headers(p["webhook_secret"], signed)
    if kind == "shopee":
        url = f"{gateway['url']}/v1/webhooks/{p['platform_id']}"
        return {"Authorization": _hex(p["signing_secret"], url.encode() + b"|" + signed)}
    if kind in ("lazada", "tiktok"):
        return {"Authorization": _hex(p["signing_secret"], p["app_key"].encode() + signed)}
    header = {
        "shopify": "X-Shopify-Hmac-Sha256",
        "haravan": "X-Haravan-Hmacsha256",
        "sapo": "X-Sapo-Hmac-Sha256",
    }[kind]
    topic = header.split("-Hmac")[0] + "-Topic"
    return {header: _b64(p["signing_secret"], signed), topic: "orders/paid"}


BODIES: dict[str, dict[str, Any]] = {
    "standard": {
        "type": "order.created",
        "timestamp": "2026-11-20T03:00:00Z",
        "data": sample_order("RH-1"),
    },
    "shopee": {
        "msg_id": "m1",
        "code": 3,
        "shop_id": 1,
        "timestamp": 1795219201,
        "data": {"ordersn": "RH-1", "status": "SHIPPED", "update_time": 1795219200},
    },
    "lazada": {
        "seller_id": "1",
        "message_type": 0,
        "site": "lazada_vn",
        "data": {
            "order_status": "shipped",
            "trade_order_id": "RH-1",
            "status_update_time": 1795219200,
        },
    },
    "tiktok": {
        "type": 1,
        "shop_id": "1",
        "tts_notification_id": "n1",
        "data": {"order_id": "RH-1", "order_status": "IN_TRANSIT", "update_time": 1795219200},
    },
    "shopify": {
        "id": 1,
        "order_number": 1001,
        "updated_at": "2026-11-20T03:00:00Z",
        "financial_status": "paid",
        "total_price": "1000",
        "customer": {"first_name": "An", "last_name": "Nguyễn", "phone": "0912345678"},
        "line_items": [{"sku": "A", "title": "A", "quantity": 1, "price": "1000"}],
    },
}
BODIES["haravan"] = BODIES["sapo"] = BODIES["shopify"]


@pytest.mark.parametrize(
    "kind", ["standard", "shopee", "lazada", "tiktok", "shopify", "haravan", "sapo"]
)
def test_every_kind_over_real_http_accepts_and_rejects(gateway, kind: str) -> None:
    p = _register(gateway, kind)
    url = f"{gateway['url']}/v1/webhooks/{p['platform_id']}"
    body = json.dumps(BODIES[kind], ensure_ascii=False).encode()
    ok = httpx.post(url, content=body, headers=_signed(gateway, p, body))
    assert ok.status_code == (202 if kind == "standard" else 200), ok.text
    if kind != "standard":
        assert ok.content == b""
    bad = httpx.post(url, content=body, headers=_signed(gateway, p, body, tamper=True))
    assert bad.status_code == 401
    assert bad.headers["content-type"].startswith("application/problem+json")
    malformed = b'{"unexpected": true}' if kind != "standard" else b'{"type": "order.created"}'
    r = httpx.post(url, content=malformed, headers=_signed(gateway, p, malformed))
    assert r.status_code == 422, r.text
    assert r.json()["errors"][0]["field"]
    log = httpx.get(
        f"{gateway['url']}/v1/platforms/{p['platform_id']}/inbound-deliveries",
        headers={"Authorization": "Bearer " + _admin_token(gateway)},
    ).json()
    assert [d["status"] for d in log][:2] == ["rejected", "rejected"]
    assert [d["http_status"] for d in log][:2] == [422, 401]


def test_stale_oversize_and_rate_limited_over_real_http(gateway) -> None:
    p = _register(gateway, "standard")
    url = f"{gateway['url']}/v1/webhooks/{p['platform_id']}"
    body = json.dumps(BODIES["standard"]).encode()
    stale = standard_webhook_headers(p["webhook_secret"], body, timestamp=int(time.time()) - 301)
    assert httpx.post(url, content=body, headers=stale).status_code == 401
    big = json.dumps({**BODIES["standard"], "padding": "x" * 5000}).encode()
    r = httpx.post(url, content=big, headers=standard_webhook_headers(p["webhook_secret"], big))
    assert r.status_code == 413
    # Chunked upload with no Content-Length is cut off just the same.
    r = httpx.post(
        url,
        content=iter([big[:3000], big[3000:]]),
        headers=standard_webhook_headers(p["webhook_secret"], big),
    )
    assert r.status_code == 413
    # The limiter's windows are clock-aligned: start with enough of this one left that the
    # 25 hits below cannot straddle two windows (which would reset the count).
    window = GatewaySettings.model_fields["webhook_rate_window_s"].default
    left = window - time.time() % window
    if left < 15:
        time.sleep(left + 0.1)
    codes = []
    for i in range(30):
        doc = {**BODIES["standard"], "data": sample_order(f"RL-{i}")}
        b = json.dumps(doc).encode()
        resp = httpx.post(url, content=b, headers=standard_webhook_headers(p["webhook_secret"], b))
        codes.append(resp.status_code)
        if resp.status_code == 429:
            assert int(resp.headers["retry-after"]) >= 1
            break
    assert codes[-1] == 429
