"""Reliability suite kit: its own platform stack, counted results, the test data."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import bindparam, inspect, text
from sqlalchemy.engine import Engine

from odr_cli.stack import Ports, Stack, database_from_env
from odr_shared.auth import TokenService
from odr_shared.db import READ_ONLY, make_engine
from odr_shared.settings import ServiceSettings
from odr_shared.testing import POSTGRES_ADMIN_URL, free_port, standard_webhook_headers

ROOT = Path(__file__).resolve().parents[2]
RESULTS_FILE = ROOT / "test-artifacts" / "reliability.json"

# What each scenario counted; written to test-artifacts/reliability.json at the end.
RESULTS: dict[str, dict[str, Any]] = {}
# Every phone number and email address the suite puts into the platform (for the PII scan).
TEST_PHONES: set[str] = set()
TEST_EMAILS: set[str] = set()

# Small limits so the abuse scenarios hit them with few requests; short retry delays so
# poison messages reach the dead-letter topic quickly; a fast outbound schedule.
STACK_ENV = {
    "ENVIRONMENT": "test",
    "LOG_FORMAT": "json",
    "CONSUMER_MAX_ATTEMPTS": "2",
    "CONSUMER_BACKOFF_INITIAL_S": "0.1",
    "COMPLAINTS_OTP_PER_PHONE_PER_HOUR": "3",
    "COMPLAINTS_OTP_PER_IP_PER_HOUR": "12",
    "GATEWAY_OUTBOUND_SCHEDULE_SCALE": "0.001",
    "GATEWAY_OUTBOUND_JITTER": "0",
    "COMPLAINTS_DEADLINE_CHECK_INTERVAL_S": "3600",
    "GATEWAY_WEBHOOK_RATE_LIMIT": "150",
    # A killed notifications worker's claimed messages wait for their lease to run out; the
    # lease outlasts a round of sends (630 s with the defaults): short timeouts keep it ~24 s.
    "NOTIFICATIONS_SMS_TIMEOUT_S": "2",
    "NOTIFICATIONS_SMTP_TIMEOUT_S": "2",
    "NOTIFICATIONS_DISPATCH_BATCH_SIZE": "16",
    "NOTIFICATIONS_DISPATCH_LEASE_S": "5",
    "NOTIFICATIONS_BACKOFF_INITIAL_S": "1",
    "NOTIFICATIONS_BACKOFF_MAX_S": "5",
}


def record(section: str, **counts: Any) -> None:
    """Keep a scenario's counts and print them (make test-reliability runs with -s)."""
    RESULTS[section] = counts
    text = ", ".join(f"{k}={v}" for k, v in counts.items())
    print(f"\n[reliability] {section}: {text}", flush=True)


def wait_for(fn: Callable[[], Any], timeout_s: float = 60.0, interval: float = 0.25) -> Any:
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"condition not met in {timeout_s}s (last: {last!r})")


def token(role: str, **claims: Any) -> str:
    return TokenService(
        ServiceSettings()
    ).issue(
        role=role,  # type: ignore[arg-type]
        subject=claims.pop("subject", f"{role}-{uuid.uuid4().hex[:6]}"),
        ttl=timedelta(minutes=30),
        **claims,
    )


def bearer(tok: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {tok}"}


def admin() -> dict[str, str]:
    return bearer(token("admin", subject="reliability"))


_phone_counter = iter(range(10_000_000))


def new_phone() -> str:
    """A Vietnamese mobile number (098xxxxxxx) that only this run uses."""
    phone = f"098{os.getpid() % 10}{next(_phone_counter):06d}"
    TEST_PHONES.add(phone)
    return phone


def new_email(tag: str) -> str:
    email = f"{tag}.{uuid.uuid4().hex[:6]}@example.vn"
    TEST_EMAILS.add(email)
    return email


def order(code: str, status: str, minute: int, phone: str, email: str) -> dict[str, Any]:
    return {
        "order_code": code,
        "status": status,
        "status_at": f"2026-11-20T03:{minute:02d}:00Z",
        "buyer": {"name": "Trần Thị Bình", "phone": phone, "email": email},
        "seller": {"id": "seller-r", "name": "Cửa hàng Reliability"},
        "items": [{"sku": "SP-1", "name": "Áo khoác", "quantity": 1, "unit_price": 250000}],
        "total_amount": 250000,
        "currency": "VND",
    }


@dataclass
class PlatformHandle:
    stack: Stack
    platform_id: str
    secret: str
    client_id: str
    client_secret: str

    def post(self, data: dict[str, Any], msg_id: str | None = None) -> httpx.Response:
        body = json.dumps(
            {"type": "order.updated", "timestamp": "2026-11-20T03:00:00Z", "data": data}
        ).encode()
        headers = standard_webhook_headers(self.secret, body, msg_id=msg_id)
        return httpx.post(
            f"{self.stack.url('gateway')}/v1/webhooks/{self.platform_id}",
            content=body,
            headers=headers,
            timeout=30,
        )

    def post_batch(self, datas: list[dict[str, Any]]) -> httpx.Response:
        body = json.dumps(
            {
                "events": [
                    {"type": "order.updated", "timestamp": "2026-11-20T03:00:00Z", "data": d}
                    for d in datas
                ]
            }
        ).encode()
        headers = standard_webhook_headers(self.secret, body)
        return httpx.post(
            f"{self.stack.url('gateway')}/v1/webhooks/{self.platform_id}/batch",
            content=body,
            headers=headers,
            timeout=60,
        )

    def token(self) -> str:
        return token("platform", platform_id=self.platform_id)


def make_platform(stack: Stack, name: str, **extra: Any) -> PlatformHandle:
    r = httpx.post(
        f"{stack.url('gateway')}/v1/platforms",
        json={"name": name, "kind": "standard", **extra},
        headers=admin(),
        timeout=30,
    )
    assert r.status_code == 201, r.text
    doc = r.json()
    return PlatformHandle(
        stack, doc["platform_id"], doc["webhook_secret"], doc["client_id"], doc["client_secret"]
    )


class Receiver:
    """A marketplace's webhook endpoint: keeps every outbound delivery it receives."""

    def __init__(self, folder: Path) -> None:
        self.path = folder / "received.jsonl"
        self.count = 0
        lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length)
                with lock, outer.path.open("ab") as f:
                    f.write(body + b"\n")
                    outer.count += 1
                self.send_response(204)
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                return

        self.port = free_port()
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@dataclass
class ReliabilityStack:
    stack: Stack
    receiver: Receiver
    platforms: dict[str, PlatformHandle] = field(default_factory=dict)
    engines: dict[str, Engine] = field(default_factory=dict)

    def engine(self, service: str) -> Engine:
        """An engine on `service`'s database, whichever the stack runs on (made once)."""
        if service not in self.engines:
            self.engines[service] = make_engine(
                self.stack.database_url(service), pool_size=1, max_overflow=1
            )
        return self.engines[service]

    def rows(self, service: str, sql: str, **params: Any) -> list[tuple[Any, ...]]:
        """One read of `service`'s database: `:name` parameters; a list or tuple value is
        expanded (`IN :ids`). A read never holds SQLite's write lock."""
        query = text(sql).bindparams(
            *(
                bindparam(k, expanding=True)
                for k, v in params.items()
                if isinstance(v, list | tuple)
            )
        )
        with self.engine(service).connect().execution_options(**{READ_ONLY: True}) as conn:
            return [tuple(r) for r in conn.execute(query, params)]

    def one(self, service: str, sql: str, **params: Any) -> tuple[Any, ...] | None:
        found = self.rows(service, sql, **params)
        return found[0] if found else None

    def scalar(self, service: str, sql: str, **params: Any) -> int:
        return int(self.rows(service, sql, **params)[0][0] or 0)

    def tables(self, service: str) -> list[str]:
        return sorted(inspect(self.engine(service)).get_table_names())

    def close(self) -> None:
        for engine in self.engines.values():
            engine.dispose()

    def pause(self, name: str) -> None:
        proc = self.stack.procs[name].popen
        assert proc is not None
        os.killpg(proc.pid, signal.SIGSTOP)

    def resume(self, name: str) -> None:
        proc = self.stack.procs[name].popen
        assert proc is not None
        os.killpg(proc.pid, signal.SIGCONT)

    def sms_lines(self) -> list[dict[str, Any]]:
        path = self.stack.var / "sms" / "messages.jsonl"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    def mail_count(self) -> int:
        folder = self.stack.var / "mail"
        return sum(1 for p in folder.rglob("*") if p.is_file()) if folder.exists() else 0


@pytest.fixture(scope="session")
def rstack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ReliabilityStack]:
    """The whole platform on free ports, for this suite only: its kills disturb nobody else.

    On SQLite files, or on throwaway PostgreSQL databases with ODR_DATABASE=postgres.
    """
    var = tmp_path_factory.mktemp("reliability")
    receiver = Receiver(var)
    stack = Stack(
        var / "stack",
        Ports.free(),
        database=database_from_env(),
        postgres_url=POSTGRES_ADMIN_URL,
        database_prefix=f"odr_rel_{uuid.uuid4().hex[:8]}",
        drop_databases=True,
        extra_env=STACK_ENV,
    )
    rs = ReliabilityStack(stack, receiver)
    try:
        stack.start()
        yield rs
    finally:
        rs.close()
        stack.stop()
        receiver.close()


@pytest.fixture(scope="session", autouse=True)
def _write_results() -> Iterator[None]:
    yield
    if RESULTS:
        RESULTS_FILE.parent.mkdir(exist_ok=True)
        doc = {"generated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **RESULTS}
        RESULTS_FILE.write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n")


# -- Kafka: committed offsets, end offsets, dead letters ---------------------------------------

GROUP_WORKERS = {
    "complaints": "complaints-worker",
    "notifications": "notifications-worker",
    "gateway": "gateway-worker",
    "mediation": "mediation-worker",
}

# Who consumes what (the contract, and each worker's topics).
CONSUMERS = {
    "orders.events": {"complaints", "notifications"},
    "cases.events": {"mediation", "notifications", "gateway"},
    "mediation.events": {"complaints", "notifications", "gateway"},
    "notifications.commands": {"notifications"},
}


def committed(bootstrap: str, group: str) -> dict[Any, int]:
    """The group's committed offset per partition (partitions it never committed are absent)."""
    from kafka import KafkaAdminClient

    admin_client = KafkaAdminClient(bootstrap_servers=[bootstrap])
    try:
        offsets = admin_client.list_group_offsets(group).get(group, {})
    finally:
        admin_client.close()
    return {tp: om.offset for tp, om in offsets.items() if om.offset is not None and om.offset >= 0}


def end_offsets(bootstrap: str, tps: list[Any]) -> dict[Any, int]:
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(bootstrap_servers=[bootstrap])
    try:
        return {tp: int(o) for tp, o in consumer.end_offsets(tps).items()}
    finally:
        consumer.close()


def read_topic(bootstrap: str, topic: str, timeout_s: float = 5.0) -> list[Any]:
    """Every record of a topic, from the beginning (no consumer group)."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=[bootstrap], enable_auto_commit=False)
    try:
        parts = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in parts]
        if not tps:
            return []
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        ends = consumer.end_offsets(tps)
        records: list[Any] = []
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and any(consumer.position(tp) < ends[tp] for tp in tps):
            for batch in consumer.poll(timeout_ms=300).values():
                records.extend(batch)
        return records
    finally:
        consumer.close()


def list_topics(bootstrap: str) -> list[str]:
    from kafka import KafkaAdminClient

    admin_client = KafkaAdminClient(bootstrap_servers=[bootstrap])
    try:
        return sorted(admin_client.list_topics())
    finally:
        admin_client.close()
