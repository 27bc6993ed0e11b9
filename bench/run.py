"""`make bench`: the platform on PostgreSQL on this machine, measured against same-run baselines.

Every ratio's two sides are measured in the same run, with the same process count and the same
durability (fsync as the server has it, a commit per request), the consumers running and the
production rate limits. Loads are bounded in count and time and only target 127.0.0.1.
Results go to bench/results/ (latest.json, report.md) after every phase.

Phases: ingest, batch, sms (on one shared stack), soak (same stack), outage, lookup, routing
(these start what they need themselves). --only picks some, --quick shortens every load.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import secrets
import signal
import sys
import tempfile
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from bench.common import (
    DEFAULT_POSTGRES_URL,
    RESULTS,
    StatisticsKeeper,
    compact,
    dispose_engines,
    epoch,
    git_commit,
    log,
    order_event,
    process_tree,
    register_platform,
    sql,
    tokens,
    unique_phone,
    wait_until,
)
from bench.load import open_loop
from bench.lookup import run_lookup_bench
from bench.report import summary_ms, write_outputs
from bench.routing import run_routing_bench
from bench.soak import run_outage, run_soak
from odr_cli.stack import SERVICES, Ports, Stack
from odr_shared.testing import standard_webhook_headers

PHASES = ("ingest", "batch", "sms", "soak", "outage", "lookup", "routing")
STACK_PHASES = {"ingest", "batch", "sms", "soak"}
DOWNSTREAM = ("complaints-worker", "notifications-worker", "mediation-worker")


@dataclass
class Settings:
    """The loads of a run: --quick keeps the whole run under ten minutes."""

    quick: bool
    ingest_seconds: float = 10
    ingest_repeats: int = 3
    batch_events: int = 20_000
    sms_rate: float = 10
    sms_seconds: float = 20
    soak_rate: float = 1000
    soak_seconds: float = 600
    outage_rate: float = 200
    outage_s: float = 300
    lookup_orders: int = 10_000_000
    lookup_rate: float = 200
    lookup_seconds: float = 60
    routing_decisions: int = 2000

    @classmethod
    def of(cls, quick: bool) -> Settings:
        if not quick:
            return cls(quick=False)
        return cls(
            quick=True,
            ingest_seconds=4,
            ingest_repeats=2,
            batch_events=5000,
            sms_rate=5,
            sms_seconds=6,
            soak_rate=200,
            soak_seconds=60,
            outage_rate=50,
            outage_s=20,
            lookup_orders=200_000,
            lookup_rate=100,
            lookup_seconds=15,
            routing_decisions=300,
        )


@dataclass
class Ctx:
    settings: Settings
    postgres_url: str
    prefix: str
    out: Path
    stack: Stack | None = None
    keeper: StatisticsKeeper | None = None
    results: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    phases_run: list[str] = field(default_factory=list)
    platforms: dict[str, tuple[str, str]] = field(default_factory=dict)

    @property
    def s(self) -> Stack:
        assert self.stack is not None, "this phase needs the shared stack"
        return self.stack

    def platform(self, name: str) -> tuple[str, str]:
        """A platform of its own per phase (production defaults): (platform_id, secret)."""
        if name not in self.platforms:
            self.platforms[name] = register_platform(self.s.url("gateway"), f"Bench {name}")
        return self.platforms[name]

    def webhook_url(self, name: str) -> str:
        return f"{self.s.url('gateway')}/v1/webhooks/{self.platform(name)[0]}"

    def pids(self, name: str) -> Callable[[], list[int]]:
        popen = self.s.procs[name].popen
        return lambda: process_tree(popen.pid) if popen else []


# ---------------------------------------------------------------------------------------------
# ingest


def wait_outbox_drained(ctx: Ctx, timeout_s: float = 300) -> float | None:
    url = ctx.s.database_url("gateway")

    def drained() -> bool:
        query = "SELECT COUNT(*) FROM outbox_messages WHERE published_at IS NULL"
        return bool(sql(url, query)[0][0] == 0)

    return wait_until(drained, timeout_s, every_s=0.2)


def bench_ingest(ctx: Ctx) -> None:
    from bench.ingest import run_ingest

    st = ctx.settings
    others = {
        "gateway_relay": ctx.pids("gateway-worker"),
        "consumers": lambda: [p for n in DOWNSTREAM for p in ctx.pids(n)()],
        "tansu": ctx.pids("tansu"),
    }
    results, notes = run_ingest(
        env=ctx.s.env,
        postgres_url=ctx.postgres_url,
        database_prefix=ctx.prefix,
        seconds=st.ingest_seconds,
        repeats=st.ingest_repeats,
        log=log,
        other_groups=others,
    )
    ctx.results.update(results)
    ctx.notes.extend(notes)
    drained = wait_outbox_drained(ctx)
    ctx.results["pg_ingest_outbox_drain_after_load_s"] = (
        None if drained is None else round(drained, 2)
    )
    if drained is None:
        ctx.notes.append("ingest: the gateway outbox had not drained 300 s after the load")


# ---------------------------------------------------------------------------------------------
# batch endpoint against kafka-python straight to the broker


class Arrivals:
    """Watches a topic until every expected key has arrived; the time it saw the last one.

    Counted by consuming, not from end offsets: Tansu's ListOffsets answer can trail the log
    by a few records (seen here: 33 short of 28,868 consumed).
    """

    def __init__(self, bootstrap: str, topic: str, keys: set[bytes]) -> None:
        from kafka import KafkaConsumer, TopicPartition

        self.consumer = KafkaConsumer(
            bootstrap_servers=bootstrap, client_id="odr-bench-arrivals", enable_auto_commit=False
        )
        parts = [TopicPartition(topic, p) for p in self.consumer.partitions_for_topic(topic) or ()]
        self.consumer.assign(parts)
        ends = self.consumer.end_offsets(parts)
        for tp in parts:
            # A little before the reported end: older records are filtered out by key anyway.
            self.consumer.seek(tp, max(0, ends[tp] - 200))
        self.remaining = set(keys)
        self.done_at: float | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while self.remaining and not self._stop.is_set():
            for records in self.consumer.poll(timeout_ms=100, max_records=5000).values():
                for record in records:
                    self.remaining.discard(record.key)
        if not self.remaining:
            self.done_at = time.monotonic()

    def wait(self, timeout_s: float) -> float:
        self._thread.join(timeout_s)
        self._stop.set()
        self._thread.join(5)
        self.consumer.close()
        if self.done_at is None:
            raise TimeoutError(f"{len(self.remaining)} messages did not arrive")
        return self.done_at


def bench_batch(ctx: Ctx, concurrency: int = 2) -> None:
    """Events/s through POST .../batch into orders.events vs kafka-python straight to the broker.

    The consumers downstream of orders.events keep running (they share the cores with the
    gateway's side only: they do not consume the baseline's topic).
    """
    events = ctx.settings.batch_events
    platform_id, secret = ctx.platform("batch")
    from odr_shared.events import ORDERS_TOPIC
    from odr_shared.kafka import OutgoingMessage, ensure_topics, make_producer, send_all

    bootstrap = ctx.s.bootstrap
    per_batch = 1000
    bodies = []
    all_codes: list[str] = []
    for _ in range(events // per_batch):
        codes = [f"K{uuid.uuid4().hex[:12].upper()}" for _ in range(per_batch)]
        all_codes += codes
        body = compact({"events": [order_event(c) for c in codes]})
        bodies.append((standard_webhook_headers(secret, body), body))
    total = len(bodies) * per_batch
    url = f"{ctx.webhook_url('batch')}/batch"

    log(f"batch: {total} events through the gateway's batch endpoint")
    keys = {f"{platform_id}:{c}".encode() for c in all_codes}
    arrivals = Arrivals(bootstrap, ORDERS_TOPIC, keys)
    statuses: list[int] = []

    async def post_all() -> float:
        sem = asyncio.Semaphore(concurrency)
        async with httpx.AsyncClient(timeout=120) as client:

            async def one(headers: dict[str, str], body: bytes) -> None:
                async with sem:
                    r = await client.post(url, content=body, headers=headers)
                    statuses.append(r.status_code)

            await asyncio.gather(*(one(h, b) for h, b in bodies))
        return time.monotonic()

    started = time.monotonic()
    posted = asyncio.run(post_all())
    arrived = arrivals.wait(timeout_s=300)
    gw_seconds = arrived - started
    if any(s != 202 for s in statuses):
        ctx.notes.append(f"batch: non-202 answers {sorted(set(statuses))}")

    # Baseline: the same payloads (the gateway's own CloudEvents), same sizes, same broker.
    rows = sql(
        ctx.s.database_url("gateway"),
        "SELECT key, payload FROM outbox_messages WHERE topic = :topic ORDER BY id DESC LIMIT :n",
        topic=ORDERS_TOPIC,
        n=total,
    )
    raw_topic = "bench.raw-producer"
    ensure_topics(bootstrap, [raw_topic], with_dead_letter=False)
    producer = make_producer(bootstrap, client_id="odr-bench-raw")
    try:
        # One warm-up message: metadata and the idempotent producer id are not the load.
        send_all(producer, [OutgoingMessage(raw_topic, "warm-up", bytes(rows[0][1]))])
        arrivals = Arrivals(bootstrap, raw_topic, {k.encode() for k, _v in rows})
        log(f"batch: {len(rows)} events with kafka-python straight to the broker")
        t0 = time.monotonic()
        send_all(
            producer,
            (
                OutgoingMessage(raw_topic, k, bytes(v), [("ce_type", b"order.status_changed")])
                for k, v in rows
            ),
            timeout_s=120,
        )
        acked = time.monotonic()
        raw_arrived = arrivals.wait(timeout_s=120)
    finally:
        producer.close()
    raw_seconds = raw_arrived - t0
    gw_rate = total / gw_seconds
    raw_rate = len(rows) / raw_seconds
    sizes = [len(v) for _k, v in rows]
    ctx.results.update(
        {
            "batch_ratio_vs_raw_producer": round(gw_rate / raw_rate, 3),
            "batch_gateway_events_per_s": round(gw_rate, 1),
            "batch_raw_producer_events_per_s": round(raw_rate, 1),
            "batch_events": total,
            "batch_gateway_api_seconds": round(posted - started, 2),
            "batch_gateway_to_topic_seconds": round(gw_seconds, 2),
            "batch_raw_producer_acked_seconds": round(acked - t0, 2),
            "batch_event_bytes_avg": round(sum(sizes) / len(sizes)),
            "batch_load": {
                "downstream_consumers": "running",
                "batch_size": per_batch,
                "concurrent_posts": concurrency,
            },
        }
    )


# ---------------------------------------------------------------------------------------------
# case opened -> SMS delivery recorded


def bench_case_to_sms(ctx: Ctx) -> None:
    """From POST /v1/cases answered 201 to the case.opened SMS delivery's sent_at."""
    rate, seconds = ctx.settings.sms_rate, ctx.settings.sms_seconds
    platform_id, secret = ctx.platform("cases")
    count = int(rate * seconds)
    log(f"case -> SMS: {count} orders, then cases at {rate}/s")
    codes = [f"S{uuid.uuid4().hex[:12].upper()}" for _ in range(count)]
    body = compact({"events": [order_event(c, phone=unique_phone()) for c in codes]})
    headers = standard_webhook_headers(secret, body)
    r = httpx.post(f"{ctx.webhook_url('cases')}/batch", content=body, headers=headers, timeout=60)
    r.raise_for_status()
    db = ctx.s.database_url("complaints")
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        n = sql(db, "SELECT COUNT(*) FROM orders WHERE order_code LIKE 'S%'")[0][0]
        if n >= count:
            break
        time.sleep(0.3)
    svc = tokens()
    auth: list[dict[str, str]] = []
    for code in codes:
        token = svc.issue(
            role="consumer",
            subject=f"bench-{code}",
            order_id=f"{platform_id}:{code}",
            platform_id=platform_id,
            ttl=timedelta(hours=1),
        )
        auth.append({"Authorization": f"Bearer {token}", "content-type": "application/json"})
    opened: dict[str, float] = {}

    def make(i: int) -> tuple[dict[str, str], bytes]:
        case = {
            "order_code": codes[i],
            "category": "not_received",
            "description": "Đơn hàng chưa được giao (benchmark)",
            "desired_outcome": "refund",
            "claimed_amount": 300000,
        }
        return auth[i], compact(case)

    def done(_i: int, at: float, status: int, body: bytes) -> None:
        if status == 201:
            opened[json.loads(body)["case_id"]] = at

    url = f"{ctx.s.url('complaints')}/v1/cases"
    point = asyncio.run(open_loop(url, make, rate, seconds, done))
    ndb = ctx.s.database_url("notifications")
    sent: dict[str, float] = {}
    deadline = time.monotonic() + 120
    while len(sent) < len(opened) and time.monotonic() < deadline:
        rows = sql(
            ndb,
            "SELECT case_id, sent_at FROM deliveries WHERE channel = 'sms' "
            "AND event_type = 'case.opened' AND sent_at IS NOT NULL",
        )
        sent = {c: t for c, raw in rows if c in opened and (t := epoch(raw)) is not None}
        time.sleep(0.3)
    lags = [(sent[c] - t) * 1000 for c, t in opened.items() if c in sent]
    s = summary_ms(lags)
    ctx.results.update(
        {
            "case_to_sms_p99_ms": s["p99_ms"],
            "case_to_sms_p50_ms": s["p50_ms"],
            "case_to_sms_cases": len(opened),
            "case_to_sms_missing": len(opened) - len(lags),
            "case_to_sms_rate_per_s": rate,
            "case_open_p99_ms": point["p99_ms"],
        }
    )


# ---------------------------------------------------------------------------------------------
# phases in modules of their own


def bench_soak(ctx: Ctx) -> None:
    st = ctx.settings
    platform_id, secret = ctx.platform("soak")
    got = run_soak(
        stack=ctx.s,
        platform_id=platform_id,
        secret=secret,
        rate=st.soak_rate,
        seconds=st.soak_seconds,
        out_dir=ctx.out,
        log=log,
    )
    ctx.results.update(got or {})


def bench_outage(ctx: Ctx) -> None:
    st = ctx.settings
    got = run_outage(
        postgres_url=ctx.postgres_url,
        rate=st.outage_rate,
        outage_s=st.outage_s,
        out_dir=ctx.out,
        log=log,
    )
    ctx.results.update(got or {})


def bench_lookup(ctx: Ctx) -> None:
    st = ctx.settings
    got = run_lookup_bench(
        postgres_url=ctx.postgres_url,
        orders=st.lookup_orders,
        rate=st.lookup_rate,
        seconds=st.lookup_seconds,
        log=log,
    )
    ctx.results.update(got or {})


def bench_routing(ctx: Ctx) -> None:
    with tempfile.TemporaryDirectory(prefix="odr-bench-routing-") as tmp:
        got = run_routing_bench(
            postgres_url=ctx.postgres_url,
            sqlite_file=Path(tmp) / "routing.db",
            decisions=ctx.settings.routing_decisions,
            routers=8,
            neutrals=1000,
            open_cases=100_000,
            log=log,
        )
    ctx.results.update(got or {})


# ---------------------------------------------------------------------------------------------
# the run


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def postgres_facts(url: str) -> dict[str, Any]:
    """The server's version and the durability settings both sides of every ratio ran with."""
    try:
        facts = {"version": sql(url, "SHOW server_version")[0][0]}
        for name in ("fsync", "synchronous_commit", "wal_sync_method", "max_connections"):
            facts[name] = sql(url, f"SHOW {name}")[0][0]
        return facts
    except Exception as exc:  # noqa: BLE001 - a fact we could not read is reported as such
        return {"error": str(exc)}


def document(ctx: Ctx, t_start: float) -> dict[str, Any]:
    return {
        **ctx.results,
        "machine": {
            "cpu_count": os.cpu_count(),
            "cpu_model": cpu_model(),
            "postgres": postgres_facts(ctx.postgres_url),
            "python": sys.version.split()[0],
            "kernel": platform.release(),
        },
        "git_commit": git_commit(),
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "mode": "quick" if ctx.settings.quick else "full",
        "phases": ctx.phases_run,
        "duration_s": round(time.monotonic() - t_start),
        "notes": ctx.notes,
    }


def start_stack(ctx: Ctx, var: Path) -> Stack:
    stack = Stack(
        var,
        Ports.free(),
        database="postgres",
        postgres_url=ctx.postgres_url,
        database_prefix=ctx.prefix,
        drop_databases=True,
        # Production rate limits and pool sizes: nothing here raises a limit.
        extra_env={"ENVIRONMENT": "test", "LOG_LEVEL": "WARNING", "LOG_FORMAT": "json"},
    )
    ctx.stack = stack
    log(f"starting the platform on PostgreSQL (databases {ctx.prefix}_*)")
    stack.start()
    ctx.keeper = StatisticsKeeper([stack.database_url(s) for s in SERVICES]).start()
    if ctx.keeper.active:
        ctx.notes.append(
            "PostgreSQL runs with autovacuum off here: the bench ANALYZEs the stack's databases "
            "every 20 s, as autovacuum would in production"
        )
    return stack


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="short loads (under ten minutes)")
    parser.add_argument("--out", default=str(RESULTS))
    parser.add_argument("--only", help=f"comma-separated phases of {','.join(PHASES)}")
    parser.add_argument("--postgres-url", default=DEFAULT_POSTGRES_URL, help="admin URL")
    args = parser.parse_args(argv)
    # `timeout` or a CI runner stopping the bench: unwind so the stack is stopped too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    phases = [p for p in PHASES if not args.only or p in args.only.split(",")]
    unknown = set(args.only.split(",")) - set(PHASES) if args.only else set()
    if unknown:
        parser.error(f"unknown phases {sorted(unknown)}; choose from {','.join(PHASES)}")
    out = Path(args.out)
    ctx = Ctx(
        settings=Settings.of(args.quick),
        postgres_url=args.postgres_url,
        prefix=f"odr_bn_{secrets.token_hex(4)}",
        out=out,
    )
    runs: dict[str, Callable[[Ctx], None]] = {
        "ingest": bench_ingest,
        "batch": bench_batch,
        "sms": bench_case_to_sms,
        "soak": bench_soak,
        "outage": bench_outage,
        "lookup": bench_lookup,
        "routing": bench_routing,
    }
    t_start = time.monotonic()
    failed = False
    with tempfile.TemporaryDirectory(prefix="odr-bench-stack-") as var:
        try:
            if STACK_PHASES & set(phases):
                start_stack(ctx, Path(var))
            for name in phases:
                if name not in STACK_PHASES and ctx.stack is not None:
                    # The phases after these start what they need: give them the cores.
                    stop_stack(ctx)
                log(f"phase {name}")
                t0 = time.monotonic()
                try:
                    runs[name](ctx)
                except Exception as exc:  # noqa: BLE001 - one phase failing keeps the others
                    failed = True
                    traceback.print_exc()
                    ctx.notes.append(f"{name}: failed ({type(exc).__name__}: {exc})")
                ctx.phases_run.append(name)
                ctx.results.setdefault("phase_seconds", {})[name] = round(time.monotonic() - t0)
                # Written after every phase: an interrupted run still leaves its figures.
                write_outputs(document(ctx, t_start), out)
        finally:
            stop_stack(ctx)
    log(f"wrote {out}/latest.json and report.md in {time.monotonic() - t_start:.0f} s")
    return 1 if failed else 0


def stop_stack(ctx: Ctx) -> None:
    if ctx.keeper is not None:
        ctx.keeper.stop()
        ctx.keeper = None
    dispose_engines()  # the bench's own connections, before the stack drops its databases
    if ctx.stack is not None:
        ctx.stack.stop()
        ctx.stack = None


if __name__ == "__main__":
    sys.exit(main())
