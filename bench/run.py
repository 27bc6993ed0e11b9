"""`make bench`: start the platform on this machine, measure, write bench/results/.

Every figure is measured in the same run as its baseline, so ratios hold on a noisy machine.
Loads are bounded in count and time and only target 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from bench.report import percentile, summary_ms, top_frames, write_outputs
from odr_cli.stack import Ports, Stack
from odr_shared.auth import TokenService
from odr_shared.settings import ServiceSettings
from odr_shared.testing import free_port, sample_order, standard_webhook_headers, wait_http

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
LOCAL = "127.0.0.1"
# Frames worth a line in the report's profile tables: our code and the costly library calls.
PROFILE_FRAMES = (
    "gateway/",
    "odr_shared/",
    "fernet.py",
    "do_execute",
    "do_commit",
    "_connection_for_bind",
    "model_validate",
    "send_all",
    "run_endpoint_function",
)
PHASES = ("ingest", "curve", "lookup", "batch", "sms", "routing")


# ---------------------------------------------------------------------------------------------
# helpers


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def tokens() -> TokenService:
    # The bench process has the stack's environment, so the same JWT secret.
    return TokenService(ServiceSettings())


def admin_token() -> str:
    return tokens().issue(role="admin", subject="bench", ttl=timedelta(hours=2))


def unique_phone() -> str:
    return "09" + "".join(random.choices("0123456789", k=8))  # test data, not a secret


def order_event(code: str, status: str = "delivered", phone: str | None = None) -> dict[str, Any]:
    order = sample_order(code, status)
    if phone:
        order["buyer"] = {**order["buyer"], "phone": phone}  # type: ignore[dict-item]
    return {"type": "order.updated", "timestamp": datetime.now(UTC).isoformat(), "data": order}


def compact(doc: Any) -> bytes:
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode()


def order_body(code: str, status: str = "delivered") -> bytes:
    return compact(order_event(code, status))


def db_time(value: str | None) -> float | None:
    """A UTC time as SQLite stores it (naive ISO text) -> epoch seconds."""
    if value is None:
        return None
    t = datetime.fromisoformat(value)
    return (t if t.tzinfo else t.replace(tzinfo=UTC)).timestamp()


def sql(db: Path, query: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    with contextlib.closing(sqlite3.connect(db, timeout=30)) as conn:
        return conn.execute(query, params).fetchall()


@dataclass
class Ctx:
    stack: Stack
    admin: dict[str, str]
    platform_id: str
    secret: str
    quick: bool
    profile: bool
    results: dict[str, Any] = field(default_factory=dict)
    curves: dict[str, list[dict[str, float]]] = field(default_factory=dict)
    profiles: dict[str, list[tuple[str, float]]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def webhook_url(self) -> str:
        return f"{self.stack.url('gateway')}/v1/webhooks/{self.platform_id}"


@contextlib.contextmanager
def paused(ctx: Ctx, names: tuple[str, ...]) -> Iterator[None]:
    """SIGSTOP some of the stack's processes (they share the two cores) for a closed-loop run."""
    pids = [ctx.stack.procs[n].popen.pid for n in names if ctx.stack.procs[n].popen]  # type: ignore[union-attr]
    for pid in pids:
        os.killpg(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        for pid in pids:
            os.killpg(pid, signal.SIGCONT)


@contextlib.contextmanager
def profiled(ctx: Ctx, name: str, proc: str, seconds: float) -> Iterator[None]:
    """py-spy the stack process `proc` while the block runs (--profile); top frames -> report."""
    spy = shutil.which("py-spy") or str(Path.home() / ".local/bin/py-spy")
    if not ctx.profile or not Path(spy).exists():
        yield
        return
    out = RESULTS / "profiles"
    out.mkdir(parents=True, exist_ok=True)
    raw = out / f"{name}.txt"
    pid = ctx.stack.procs[proc].popen.pid  # type: ignore[union-attr]
    argv = [spy, "record", "--pid", str(pid), "--rate", "200", "--format", "raw"]
    spy_proc = subprocess.Popen(
        [*argv, "--duration", str(int(seconds)), "--output", str(raw), "--nonblocking"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield
    finally:
        try:
            spy_proc.wait(timeout=seconds + 30)
        except subprocess.TimeoutExpired:
            spy_proc.kill()
            spy_proc.wait()
        if raw.exists():
            ctx.profiles[name] = top_frames(raw.read_text(), 20, PROFILE_FRAMES)


# ---------------------------------------------------------------------------------------------
# closed-loop throughput with wrk


def write_requests(path: Path, url_path: str, secret: str, count: int) -> None:
    ts = int(time.time())
    with path.open("w", encoding="utf-8") as f:
        for _ in range(count):
            body = order_body(f"B{uuid.uuid4().hex[:12].upper()}")
            signed = standard_webhook_headers(secret, body, timestamp=ts)
            msg_id, sig = signed["webhook-id"], signed["webhook-signature"]
            f.write(f"{url_path}\t{msg_id}\t{ts}\t{sig}\t{body.decode()}\n")


def wrk(url: str, req_file: Path, seconds: int, conns: int, threads: int = 1) -> dict[str, float]:
    out = subprocess.run(
        [
            "wrk",
            f"-t{threads}",
            f"-c{conns}",
            f"-d{seconds}s",
            "--latency",
            "-s",
            str(ROOT / "bench" / "replay.lua"),
            url,
            "--",
            str(req_file),
            str(threads),
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=seconds + 60,
    ).stdout
    return parse_wrk(out)


def parse_wrk(out: str) -> dict[str, float]:
    """wrk's text summary -> requests, non-2xx, 2xx answers per second, p99 latency."""
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    bad = int(non2xx.group(1)) if non2xx else 0
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)\b", out)
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}
    return {
        "requests": total,
        "non_2xx": bad,
        # Only 2xx answers count: a 429 or 500 is not an accepted webhook.
        "ok_per_s": round(rps * (total - bad) / total, 1) if total else 0.0,
        "p99_ms": round(float(p99.group(1)) * scale[p99.group(2)], 1) if p99 else float("nan"),
    }


def start_bare_app(workers: int) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "bench.bare_app:app",
            "--host",
            LOCAL,
            "--port",
            str(port),
            "--workers",
            str(workers),
            "--log-level",
            "warning",
            "--no-access-log",
        ],
        cwd=ROOT,
        start_new_session=True,
    )
    url = f"http://{LOCAL}:{port}"
    wait_http(f"{url}/docs")
    return proc, url


def stop_proc(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


DOWNSTREAM = ("complaints-worker", "notifications-worker", "mediation-worker")


def bench_ingest(ctx: Ctx, seconds: int, conns: int) -> None:
    """Signed single-event webhooks/s: gateway (stored + outbox) vs bare FastAPI parse-only."""
    log("ingest: signing requests")
    tmp = Path(tempfile.mkdtemp(prefix="odr-bench-"))
    path = f"/v1/webhooks/{ctx.platform_id}"
    budget = 4000 * seconds  # unique deliveries: more than the gateway takes in the window
    req_file, warm_file = tmp / "requests.tsv", tmp / "warm.tsv"
    write_requests(req_file, path, ctx.secret, budget)
    write_requests(warm_file, path, ctx.secret, 2000)
    # The consumers downstream of the gateway would take CPU from both sides on two cores;
    # they are paused for both runs (they catch up afterwards, nothing is lost).
    with paused(ctx, DOWNSTREAM):
        bare, bare_url = start_bare_app(workers=1)
        try:
            wrk(bare_url + path, warm_file, 2, conns)
            log("ingest: bare FastAPI baseline")
            base = wrk(bare_url + path, req_file, seconds, conns)
        finally:
            stop_proc(bare)
        gw_url = ctx.stack.url("gateway")
        log("ingest: gateway")
        wrk(gw_url + path, warm_file, 2, conns)
        before = sql(ctx.stack.var / "gateway.db", "SELECT COUNT(*) FROM inbound_deliveries")[0][0]
        with profiled(ctx, "gateway_single_webhooks", "gateway-api", seconds):
            started = time.monotonic()
            gw = wrk(gw_url + path, req_file, seconds, conns)
        drained = wait_outbox_drained(ctx)
        published_s = time.monotonic() - started
    stored = sql(ctx.stack.var / "gateway.db", "SELECT COUNT(*) FROM inbound_deliveries")[0][0]
    if gw["requests"] > budget:
        ctx.notes.append("ingest: wrk replayed some deliveries (duplicates are cheaper)")
    ratio = gw["ok_per_s"] / base["ok_per_s"] if base["ok_per_s"] else float("nan")
    accepted = stored - before
    ctx.results.update(
        {
            "ingest_ratio_vs_bare_fastapi": round(ratio, 3),
            "ingest_bare_fastapi_rps": base["ok_per_s"],
            "ingest_gateway_rps": gw["ok_per_s"],
            "ingest_gateway_p99_ms": gw["p99_ms"],
            "ingest_bare_fastapi_p99_ms": base["p99_ms"],
            "ingest_gateway_non_2xx": gw["non_2xx"],
            "ingest_gateway_deliveries_stored": accepted,
            # Stored and published to the broker (outbox drained) over the whole window.
            "ingest_gateway_published_rps": round(accepted / published_s, 1),
            "ingest_outbox_drain_after_load_s": round(drained, 2),
            "ingest_load": {
                "tool": "wrk",
                "connections": conns,
                "seconds": seconds,
                "uvicorn_workers": 1,
                "downstream_consumers": "paused",
            },
        }
    )
    shutil.rmtree(tmp, ignore_errors=True)


def wait_until(done: Callable[[], bool], timeout_s: float, every_s: float) -> float | None:
    """Seconds until `done()` held, checking every `every_s`; None if not within `timeout_s`."""
    start = time.monotonic()
    while time.monotonic() - start < timeout_s:
        if done():
            return time.monotonic() - start
        time.sleep(every_s)
    return None


def wait_outbox_drained(ctx: Ctx, timeout_s: float = 180) -> float:
    def drained() -> bool:
        query = "SELECT COUNT(*) FROM outbox_messages WHERE published_at IS NULL"
        return bool(sql(ctx.stack.var / "gateway.db", query)[0][0] == 0)

    took = wait_until(drained, timeout_s, every_s=0.2)
    if took is None:
        raise TimeoutError("gateway outbox did not drain")
    return took


# ---------------------------------------------------------------------------------------------
# open-loop latency against offered load


class RawHttp:
    """A minimal HTTP/1.1 keep-alive client for the open-loop load (127.0.0.1 only).

    httpx costs about a millisecond of CPU per request; on two cores shared with the platform
    the load generator then competes with what it measures. Pre-built request bytes over a
    pool of plain asyncio connections cost a small fraction of that.
    """

    def __init__(self, url: str, size: int) -> None:
        parsed = httpx.URL(url)
        if parsed.host != LOCAL:
            raise ValueError("the bench only loads 127.0.0.1")
        self.host, self.port, self.path = parsed.host, parsed.port or 80, parsed.raw_path.decode()
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        self.gate = asyncio.Semaphore(size)
        self.opened: list[asyncio.StreamWriter] = []

    def build(self, headers: dict[str, str], body: bytes) -> bytes:
        head = [f"POST {self.path} HTTP/1.1", f"host: {self.host}:{self.port}"]
        head += [f"{k}: {v}" for k, v in headers.items()]
        head.append(f"content-length: {len(body)}")
        return ("\r\n".join(head) + "\r\n\r\n").encode() + body

    async def send(self, raw: bytes, timeout_s: float = 60) -> tuple[int, bytes]:
        async with self.gate:
            if self.idle:
                reader, writer = self.idle.pop()
            else:
                reader, writer = await asyncio.open_connection(self.host, self.port)
                self.opened.append(writer)
            status, body = await asyncio.wait_for(self._exchange(reader, writer, raw), timeout_s)
            self.idle.append((reader, writer))
            return status, body

    @staticmethod
    async def _exchange(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, raw: bytes
    ) -> tuple[int, bytes]:
        writer.write(raw)
        status = int((await reader.readline()).split()[1])
        length, chunked = 0, False
        while (line := await reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"transfer-encoding" and b"chunked" in value.lower():
                chunked = True
        if not chunked:
            return status, await reader.readexactly(length)
        parts = []
        while size := int((await reader.readline()).strip(), 16):
            parts.append(await reader.readexactly(size))
            await reader.readline()
        await reader.readline()
        return status, b"".join(parts)

    def close(self) -> None:
        for writer in self.opened:
            writer.close()


async def open_loop(
    url: str,
    make_request: Callable[[int], tuple[dict[str, str], bytes]],
    rate: float,
    seconds: float,
    on_done: Callable[[int, float, int, bytes], None] | None = None,
    max_in_flight: int = 128,
) -> dict[str, float]:
    """Send at a fixed rate regardless of answers (no coordinated omission); latency per request.

    Latency counts from each request's scheduled time, so time spent waiting for one of the
    `max_in_flight` connections is the server's fault too.
    """
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    total = int(rate * seconds)
    client = RawHttp(url, max_in_flight)
    prepared = [client.build(*make_request(i)) for i in range(total)]  # not part of the load
    try:
        start = time.perf_counter()

        async def one(i: int, scheduled: float) -> None:
            try:
                status, body = await client.send(prepared[i])
            except (OSError, ValueError, IndexError, asyncio.IncompleteReadError, TimeoutError):
                statuses[0] = statuses.get(0, 0) + 1
                return
            done = time.perf_counter()
            latencies.append((done - scheduled) * 1000)
            statuses[status] = statuses.get(status, 0) + 1
            if on_done:
                on_done(i, time.time(), status, body)

        tasks = []
        for i in range(total):
            scheduled = start + i / rate
            delay = scheduled - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(i, scheduled)))
        await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - start
    finally:
        client.close()
    ok = sum(v for k, v in statuses.items() if 200 <= k < 300)
    return {
        "offered_rps": rate,
        "achieved_rps": round(ok / elapsed, 1),
        "p50_ms": round(percentile(latencies, 50), 2),
        "p99_ms": round(percentile(latencies, 99), 2),
        "ok": ok,
        "errors": total - ok,
    }


def webhook_request(
    ctx: Ctx, codes: dict[int, str], prefix: str
) -> Callable[[int], tuple[dict[str, str], bytes]]:
    def make(i: int) -> tuple[dict[str, str], bytes]:
        code = f"{prefix}{uuid.uuid4().hex[:12].upper()}"
        codes[i] = code
        body = order_body(code)
        return standard_webhook_headers(ctx.secret, body), body

    return make


def bench_latency_curve(ctx: Ctx, rates: list[int], seconds: float) -> None:
    """Gateway webhook latency at increasing offered loads (the plot), whole platform running."""
    curve = []
    for rate in rates:
        log(f"latency curve: gateway at {rate}/s")
        make = webhook_request(ctx, {}, "C")
        point = asyncio.run(open_loop(ctx.webhook_url, make, rate, seconds))
        curve.append(point)
        wait_outbox_drained(ctx)
    ctx.curves["gateway_webhook"] = curve


def bench_webhook_to_lookup(ctx: Ctx, rate: int, seconds: float) -> None:
    """From webhook accepted (202) to the order committed in complaints, at a steady rate."""
    # A steady load, not the backlog earlier phases left (their events, taken while the
    # consumers were paused, are still being read): wait until complaints has them all.
    drained = wait_downstream_drained(ctx)
    log(f"webhook -> lookup at a steady {rate}/s for {seconds:.0f}s")
    codes: dict[int, str] = {}
    accepted: dict[str, float] = {}

    def done(i: int, at: float, status: int, _body: bytes) -> None:
        if status == 202:
            accepted[codes[i]] = at

    point = asyncio.run(
        open_loop(ctx.webhook_url, webhook_request(ctx, codes, "L"), rate, seconds, done)
    )
    db = ctx.stack.var / "complaints.db"
    seen: dict[str, float] = {}
    deadline = time.monotonic() + 120
    while len(seen) < len(accepted) and time.monotonic() < deadline:
        rows = sql(db, "SELECT order_code, first_seen_at FROM orders WHERE order_code LIKE 'L%'")
        seen = {c: t for c, raw in rows if (t := db_time(raw)) is not None}
        time.sleep(0.5)
    lags = [(seen[c] - t) * 1000 for c, t in accepted.items() if c in seen]
    s = summary_ms(lags)
    ctx.results.update(
        {
            "webhook_to_lookup_p99_ms": s["p99_ms"],
            "webhook_to_lookup_p50_ms": s["p50_ms"],
            "webhook_to_lookup_events": len(accepted),
            "webhook_to_lookup_missing": len(accepted) - len(lags),
            "webhook_to_lookup_rate_per_s": rate,
            "webhook_to_lookup_ingest_p99_ms": point["p99_ms"],
            "webhook_to_lookup_backlog_drain_s": round(drained, 1),
        }
    )


def wait_downstream_drained(ctx: Ctx, timeout_s: float = 300) -> float:
    """Seconds until complaints holds every order the gateway has published."""

    def caught_up() -> bool:
        sent = sql(ctx.stack.var / "gateway.db", "SELECT COUNT(*) FROM order_snapshots")[0][0]
        have = sql(ctx.stack.var / "complaints.db", "SELECT COUNT(*) FROM orders")[0][0]
        return bool(have >= sent)

    took = wait_until(caught_up, timeout_s, every_s=0.5)
    if took is None:
        ctx.notes.append("lookup: complaints had not caught up with earlier phases when it started")
        return timeout_s
    return took


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


def bench_batch(ctx: Ctx, events: int, concurrency: int = 2) -> None:
    """Events/s through POST .../batch into orders.events vs kafka-python straight to the broker.

    As for ingest, the consumers downstream of orders.events are paused for both runs: on two
    cores their catching up (5 s of CPU for 20,000 events) took the gateway's share, and only
    the gateway's, since they do not consume the baseline's topic. They catch up afterwards.
    """
    with paused(ctx, DOWNSTREAM):
        _bench_batch(ctx, events, concurrency)


def _bench_batch(ctx: Ctx, events: int, concurrency: int) -> None:
    from odr_shared.events import ORDERS_TOPIC
    from odr_shared.kafka import OutgoingMessage, ensure_topics, make_producer, send_all

    bootstrap = ctx.stack.bootstrap
    per_batch = 1000
    bodies = []
    all_codes: list[str] = []
    for _ in range(events // per_batch):
        codes = [f"K{uuid.uuid4().hex[:12].upper()}" for _ in range(per_batch)]
        all_codes += codes
        body = compact({"events": [order_event(c) for c in codes]})
        bodies.append((standard_webhook_headers(ctx.secret, body), body))
    total = len(bodies) * per_batch
    url = f"{ctx.webhook_url}/batch"

    log(f"batch: {total} events through the gateway's batch endpoint")
    keys = {f"{ctx.platform_id}:{c}".encode() for c in all_codes}
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

    with profiled(ctx, "gateway_batch_api", "gateway-api", 8 if ctx.quick else 15):
        started = time.monotonic()
        posted = asyncio.run(post_all())
    arrived = arrivals.wait(timeout_s=300)
    gw_seconds = arrived - started
    if any(s != 202 for s in statuses):
        ctx.notes.append(f"batch: non-202 answers {sorted(set(statuses))}")

    # Baseline: the same payloads (the gateway's own CloudEvents), same sizes, same broker.
    rows = sql(
        ctx.stack.var / "gateway.db",
        "SELECT key, payload FROM outbox_messages WHERE topic = ? ORDER BY id DESC LIMIT ?",
        (ORDERS_TOPIC, total),
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
                "downstream_consumers": "paused",
                "batch_size": per_batch,
                "concurrent_posts": concurrency,
            },
        }
    )


# ---------------------------------------------------------------------------------------------
# case opened -> SMS delivery recorded


def bench_case_to_sms(ctx: Ctx, rate: float, seconds: float) -> None:
    """From POST /v1/cases answered 201 to the case.opened SMS delivery's sent_at."""
    count = int(rate * seconds)
    log(f"case -> SMS: {count} orders, then cases at {rate}/s")
    codes = [f"S{uuid.uuid4().hex[:12].upper()}" for _ in range(count)]
    body = compact({"events": [order_event(c, phone=unique_phone()) for c in codes]})
    headers = standard_webhook_headers(ctx.secret, body)
    r = httpx.post(f"{ctx.webhook_url}/batch", content=body, headers=headers, timeout=60)
    r.raise_for_status()
    db = ctx.stack.var / "complaints.db"
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
            order_id=f"{ctx.platform_id}:{code}",
            platform_id=ctx.platform_id,
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

    url = f"{ctx.stack.url('complaints')}/v1/cases"
    point = asyncio.run(open_loop(url, make, rate, seconds, done))
    ndb = ctx.stack.var / "notifications.db"
    sent: dict[str, float] = {}
    deadline = time.monotonic() + 120
    while len(sent) < len(opened) and time.monotonic() < deadline:
        rows = sql(
            ndb,
            "SELECT case_id, sent_at FROM deliveries WHERE channel = 'sms' "
            "AND event_type = 'case.opened' AND sent_at IS NOT NULL",
        )
        sent = {c: t for c, raw in rows if c in opened and (t := db_time(raw)) is not None}
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


def git_commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def bench_routing(ctx: Ctx, decisions: int) -> None:
    try:
        from bench.routing import run_routing_bench  # type: ignore[import-not-found,unused-ignore]
    except ImportError as exc:
        ctx.notes.append(f"routing: not measured ({exc})")
        return
    log("routing: seeding 1,000 neutrals and 10,000 open cases")
    ctx.results.update(run_routing_bench(ctx.stack.var / "routing-bench.db", decisions))


def document(ctx: Ctx, t_start: float) -> dict[str, Any]:
    doc = {
        **ctx.results,
        "curves": ctx.curves,
        "profiles": ctx.profiles,
        "cpu_count": os.cpu_count(),
        "git_commit": git_commit(),
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "python": sys.version.split()[0],
        "mode": "quick" if ctx.quick else "full",
        "duration_s": round(time.monotonic() - t_start),
        "notes": ctx.notes,
    }
    previous = ROOT / "bench" / "before.json"
    if previous.exists():
        doc["before"] = json.loads(previous.read_text())
    return doc


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="short loads (a smoke run)")
    parser.add_argument("--out", default=str(RESULTS))
    parser.add_argument("--only", help=f"comma-separated phases of {','.join(PHASES)}")
    parser.add_argument("--profile", action="store_true", help="py-spy the gateway (ingest, batch)")
    args = parser.parse_args()
    # `timeout` or a CI runner stopping the bench: unwind so the stack is stopped too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    phases = set(args.only.split(",")) if args.only else set(PHASES)
    q = args.quick
    seconds = 4 if q else 10
    t_start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="odr-bench-stack-") as var:
        stack = Stack(
            Path(var),
            Ports.free(),
            extra_env={
                "ENVIRONMENT": "test",
                "LOG_LEVEL": "WARNING",
                "LOG_FORMAT": "json",
                # One bench platform sends far more than a marketplace's default allowance.
                "GATEWAY_WEBHOOK_RATE_LIMIT": "100000000",
            },
        )
        log("starting the platform")
        stack.start()
        try:
            admin = {"Authorization": f"Bearer {admin_token()}"}
            created = httpx.post(
                f"{stack.url('gateway')}/v1/platforms",
                json={"name": "Bench", "kind": "standard"},
                headers=admin,
            ).json()
            pid, secret = created["platform_id"], created["webhook_secret"]
            ctx = Ctx(stack, admin, pid, secret, q, args.profile)
            runs: list[tuple[str, Callable[[], None]]] = [
                ("ingest", lambda: bench_ingest(ctx, seconds=seconds, conns=32)),
                ("curve", lambda: bench_latency_curve(ctx, rates, seconds=3 if q else 5)),
                ("lookup", lambda: bench_webhook_to_lookup(ctx, rate=200, seconds=seconds)),
                ("batch", lambda: bench_batch(ctx, events=5000 if q else 20000)),
                (
                    "sms",
                    lambda: bench_case_to_sms(ctx, rate=5 if q else 10, seconds=6 if q else 20),
                ),
                ("routing", lambda: bench_routing(ctx, decisions=100 if q else 300)),
            ]
            rates = [50, 100, 200, 400] if q else [50, 100, 200, 400, 800]
            for name, run in runs:
                if name in phases:
                    run()
                    # Written after every phase: an interrupted run still leaves its figures.
                    write_outputs(document(ctx, t_start), Path(args.out))
            log(f"wrote {args.out}/latest.json, report.md, latency_vs_load.png")
        finally:
            stack.stop()


if __name__ == "__main__":
    main()
