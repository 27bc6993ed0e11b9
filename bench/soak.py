"""The soak and the broker-outage benchmarks (`bench/run.py` calls `run_soak` and `run_outage`).

Both offer order webhooks open-loop from a separate load process: each request is scheduled at
the rate and its latency counts from that scheduled time, whatever the answers, so a slow
platform cannot slow the load down (no coordinated omission). A 429 or 503 answer is not an
acceptance; the sender retries it after its Retry-After, as a marketplace would.

The soak keeps every consumer running and measures, for one order in ten, the time from the
webhook's scheduled send to the order being visible to the buyer: a probe polls the complaints
database every 20 ms, so it only sees the order once the consumer's transaction committed.
Every ~5 s it samples throughput, p99s, consumer lag, the outboxes' backlog and each process's
RSS and CPU; the series is plotted to `<out_dir>/soak.png`.

The outage benchmark starts its own PostgreSQL stack with a cuttable TCP link in front of the
broker, cuts it for `outage_s` under load (the gateway keeps accepting webhooks into its
outbox), restores it and stops the load, then measures how long until every consumer group
has caught up and every outbox is drained.

Consumer lag is committed group offsets against what was produced. Tansu's ListOffsets answer
can trail the log, so what was produced is counted from the outboxes instead (rows with
`published_at` set, per topic, across the four services' databases); a row the relay had to
publish twice after a lost acknowledgement can make a topic look ahead, so each topic's lag is
floored at zero.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any

import httpx
from sqlalchemy import bindparam, create_engine, text
from sqlalchemy.engine import Engine

from bench.common import StatisticsKeeper
from bench.report import percentile
from odr_cli.stack import SERVICES, Ports, Stack
from odr_shared.events import CASES_TOPIC, MEDIATION_TOPIC, NOTIFICATIONS_TOPIC, ORDERS_TOPIC
from odr_shared.testing import BrokerLink, free_port, sample_order, standard_webhook_headers

ROOT = Path(__file__).resolve().parents[1]
LOCAL = "127.0.0.1"
SAMPLE_EVERY_S = 5.0
PROBE_EVERY_S = 0.02
# Every 10th order's buyer visibility is probed.
PROBE_ONE_IN = 10
# The consumer groups and the topics each subscribes to (the services' worker.py).
GROUP_TOPICS: dict[str, tuple[str, ...]] = {
    "gateway": (CASES_TOPIC, MEDIATION_TOPIC),
    "complaints": (ORDERS_TOPIC, MEDIATION_TOPIC),
    "mediation": (CASES_TOPIC,),
    "notifications": (NOTIFICATIONS_TOPIC, ORDERS_TOPIC, CASES_TOPIC, MEDIATION_TOPIC),
}
SECRET_ENV = "ODR_SOAK_WEBHOOK_SECRET"
# A marketplace's retries of one delivery: after this many answers of 429/503 it gives up.
MAX_ATTEMPTS = 8
PAGE = os.sysconf("SC_PAGE_SIZE")
TICKS = os.sysconf("SC_CLK_TCK")


def _r(value: float, digits: int = 1) -> float | None:
    return None if value is None or math.isnan(value) else round(value, digits)


# ---------------------------------------------------------------------------------------------
# the load process


class HttpConn:
    """One HTTP/1.1 keep-alive connection over plain asyncio streams (127.0.0.1 only).

    httpx costs about a millisecond of CPU per request; pre-built request bytes over a few
    hundred plain connections cost a small fraction of that, so one core offers 1,000
    webhooks/s. A kept-alive connection the server closed meanwhile is replaced once.
    """

    def __init__(self, url: str) -> None:
        parsed = httpx.URL(url)
        if parsed.host != LOCAL:
            raise ValueError("the bench only loads 127.0.0.1")
        self.host, self.port, self.path = parsed.host, parsed.port or 80, parsed.raw_path.decode()
        self.rw: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    def build(self, headers: dict[str, str], body: bytes) -> bytes:
        head = [f"POST {self.path} HTTP/1.1", f"host: {self.host}:{self.port}"]
        head += [f"{k}: {v}" for k, v in headers.items()]
        head.append(f"content-length: {len(body)}")
        return ("\r\n".join(head) + "\r\n\r\n").encode() + body

    async def send(self, raw: bytes, timeout_s: float = 30) -> tuple[int, dict[bytes, bytes]]:
        """The answer's status and headers."""
        for _ in range(2):
            fresh = self.rw is None
            if self.rw is None:
                self.rw = await asyncio.open_connection(self.host, self.port)
            try:
                return await asyncio.wait_for(self._exchange(*self.rw, raw), timeout_s)
            except TimeoutError:
                self.close()  # an answer may still come on it: not to be reused
                raise
            except (OSError, ValueError, IndexError, asyncio.IncompleteReadError):
                self.close()
                if fresh:
                    raise
        raise ConnectionError("the server closed two connections in a row")

    @staticmethod
    async def _exchange(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, raw: bytes
    ) -> tuple[int, dict[bytes, bytes]]:
        writer.write(raw)
        status = int((await reader.readline()).split()[1])
        headers: dict[bytes, bytes] = {}
        while (line := await reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.partition(b":")
            headers[name.strip().lower()] = value.strip()
        if b"chunked" in headers.get(b"transfer-encoding", b"").lower():
            while size := int((await reader.readline()).strip(), 16):
                await reader.readexactly(size)
                await reader.readline()
            await reader.readline()
        else:
            await reader.readexactly(int(headers.get(b"content-length", b"0")))
        if headers.get(b"connection", b"").lower() == b"close":
            raise ValueError("server closed the connection")
        return status, headers

    def close(self) -> None:
        if self.rw is not None:
            self.rw[1].close()
            self.rw = None


def order_code(tag: str, i: int) -> str:
    return f"{tag}{i:08d}"


def order_body(code: str, i: int) -> bytes:
    order = sample_order(code)
    order["buyer"] = {**order["buyer"], "phone": f"09{i % 10**8:08d}"}  # type: ignore[dict-item]
    doc = {"type": "order.updated", "timestamp": datetime.now(UTC).isoformat(), "data": order}
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode()


# (index, scheduled perf_counter time, attempt, request bytes once built)
Job = tuple[int, float, int, bytes | None]


@dataclass
class Loader:
    """Offers order webhooks open-loop and reports on stdout, one JSON object a line:

    `s` a probed order scheduled (code, wall time), `x` a probed order given up, `t` a tick
    (counts since the last tick, 2xx latencies in ms, requests not yet answered), `end` the
    totals. Requests wait in one queue for the first of `connections` free connections (a
    marketplace's sender pool); one still waiting at the deadline (the load's end plus a grace
    period) is given up unsent.
    """

    url: str
    secret: str
    rate: float
    seconds: float
    tag: str
    probe_one_in: int = PROBE_ONE_IN
    retry_grace_s: float = 30.0
    connections: int = 256
    out: IO[str] = field(default_factory=lambda: sys.stdout)
    stop: threading.Event = field(default_factory=threading.Event)
    statuses: dict[int, int] = field(default_factory=dict)
    tick_statuses: dict[int, int] = field(default_factory=dict)
    tick_latencies: list[float] = field(default_factory=list)
    accepted: int = 0
    retries: int = 0
    abandoned: int = 0
    unsent: int = 0
    failed: int = 0
    offered: int = 0
    done: int = 0
    deadline: float = math.inf

    def emit(self, doc: dict[str, Any]) -> None:
        self.out.write(json.dumps(doc, separators=(",", ":")) + "\n")

    def tick(self) -> None:
        self.emit(
            {
                "k": "t",
                "t": time.time(),
                "o": self.offered,
                "q": self.offered - self.done,
                "st": self.tick_statuses,
                "lat": [round(v, 1) for v in self.tick_latencies],
            }
        )
        self.out.flush()
        self.tick_statuses, self.tick_latencies = {}, []

    async def run(self) -> None:
        queue: asyncio.Queue[Job] = asyncio.Queue()
        conns = [HttpConn(self.url) for _ in range(self.connections)]
        workers = [asyncio.create_task(self.worker(c, queue)) for c in conns]
        self.deadline = time.perf_counter() + self.seconds + self.retry_grace_s
        start = time.perf_counter()
        wall0 = time.time() - start
        self.emit({"k": "start", "t": time.time()})
        total = int(self.rate * self.seconds)
        last_tick = start
        try:
            while self.offered < total and not self.stop.is_set():
                now = time.perf_counter()
                due = min(total, int((now - start) * self.rate) + 1)
                while self.offered < due:
                    i = self.offered
                    scheduled = start + i / self.rate
                    if i % self.probe_one_in == 0:
                        self.emit({"k": "s", "c": order_code(self.tag, i), "t": wall0 + scheduled})
                    queue.put_nowait((i, scheduled, 1, None))
                    self.offered += 1
                if now - last_tick >= 0.25:
                    self.tick()
                    last_tick = now
                nxt = start + self.offered / self.rate
                await asyncio.sleep(min(max(0.0, nxt - time.perf_counter()), 0.01))
            load_s = time.perf_counter() - start
            # Retries and waiting requests go on for a grace period after the load, then give up.
            self.deadline = min(self.deadline, time.perf_counter() + self.retry_grace_s)
            while self.done < self.offered:
                await asyncio.sleep(0.25)
                self.tick()
        finally:
            for w in workers:
                w.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
            for c in conns:
                c.close()
        self.tick()
        self.emit(
            {
                "k": "end",
                "offered": self.offered,
                "accepted": self.accepted,
                "statuses": self.statuses,
                "retries": self.retries,
                "abandoned": self.abandoned,
                "unsent": self.unsent,
                "failed": self.failed,
                "load_s": round(load_s, 3),
                "elapsed_s": round(time.perf_counter() - start, 3),
                "cpu_s": round(time.process_time(), 3),
            }
        )
        self.out.flush()

    def count(self, status: int) -> None:
        self.statuses[status] = self.statuses.get(status, 0) + 1
        self.tick_statuses[status] = self.tick_statuses.get(status, 0) + 1

    def give_up(self, i: int) -> None:
        self.done += 1
        if i % self.probe_one_in == 0:
            self.emit({"k": "x", "c": order_code(self.tag, i)})

    async def worker(self, conn: HttpConn, queue: asyncio.Queue[Job]) -> None:
        loop = asyncio.get_running_loop()
        while True:
            i, scheduled, attempt, raw = await queue.get()
            if time.perf_counter() > self.deadline:
                if attempt == 1:
                    self.unsent += 1
                else:
                    self.abandoned += 1
                self.give_up(i)
                continue
            if raw is None:
                body = order_body(order_code(self.tag, i), i)
                raw = conn.build(standard_webhook_headers(self.secret, body), body)
            headers: dict[bytes, bytes] = {}
            try:
                status, headers = await conn.send(raw)
            except (OSError, ValueError, IndexError, asyncio.IncompleteReadError, TimeoutError):
                status = 0
            self.count(status)
            if 200 <= status < 300:
                self.accepted += 1
                self.done += 1
                self.tick_latencies.append((time.perf_counter() - scheduled) * 1000)
                continue
            if status not in (0, 429, 503):
                self.failed += 1
                self.give_up(i)
                continue
            wait_s = _retry_after(headers.get(b"retry-after"))
            if attempt == MAX_ATTEMPTS or time.perf_counter() + wait_s > self.deadline:
                self.abandoned += 1
                self.give_up(i)
                continue
            self.retries += 1
            loop.call_later(wait_s, queue.put_nowait, (i, scheduled, attempt + 1, raw))


def _retry_after(value: bytes | None) -> float:
    try:
        return max(0.1, float(value)) if value else 1.0
    except ValueError:
        return 1.0


def load_main(args: argparse.Namespace) -> None:
    loader = Loader(
        url=args.url,
        secret=os.environ[SECRET_ENV],
        rate=args.rate,
        seconds=args.seconds,
        tag=args.tag,
        probe_one_in=args.probe_one_in,
        retry_grace_s=args.retry_grace_s,
    )

    def stop_on_stdin() -> None:
        # A line (or the parent going away) on stdin ends the load early.
        sys.stdin.readline()
        loader.stop.set()

    threading.Thread(target=stop_on_stdin, daemon=True).start()
    asyncio.run(loader.run())


class LoadRun:
    """The load process, seen from the benchmark: its reports, aggregated per interval."""

    def __init__(
        self,
        url: str,
        secret: str,
        rate: float,
        seconds: float,
        tag: str,
        on_probe: Callable[[str, float], None] | None = None,
        on_give_up: Callable[[str], None] | None = None,
        retry_grace_s: float = 30.0,
    ) -> None:
        self.on_probe, self.on_give_up = on_probe, on_give_up
        self.lock = threading.Lock()
        self.offered = 0
        self.statuses: dict[int, int] = {}
        self.latencies: list[float] = []
        self.all_latencies: list[float] = []
        self.started_at: float | None = None
        self.end: dict[str, Any] | None = None
        argv = [sys.executable, "-m", "bench.soak", "load", "--url", url, "--rate", str(rate)]
        argv += ["--seconds", str(seconds), "--tag", tag, "--retry-grace-s", str(retry_grace_s)]
        self.proc = subprocess.Popen(
            argv,
            cwd=ROOT,
            env={**os.environ, SECRET_ENV: secret, "PYTHONPATH": str(ROOT)},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            doc = json.loads(line)
            kind = doc["k"]
            if kind == "s" and self.on_probe:
                self.on_probe(doc["c"], doc["t"])
            elif kind == "x" and self.on_give_up:
                self.on_give_up(doc["c"])
            elif kind == "t":
                with self.lock:
                    self.offered = doc["o"]
                    for status, n in doc["st"].items():
                        self.statuses[int(status)] = self.statuses.get(int(status), 0) + n
                    self.latencies += doc["lat"]
            elif kind == "start":
                self.started_at = doc["t"]
            elif kind == "end":
                self.end = doc

    def take(self) -> tuple[int, dict[int, int], list[float]]:
        """Offered so far, and the answers and 2xx latencies since the last call."""
        with self.lock:
            out = (self.offered, self.statuses, self.latencies)
            self.all_latencies += self.latencies
            self.statuses, self.latencies = {}, []
            return out

    def wait_started(self, timeout_s: float = 60) -> float:
        deadline = time.monotonic() + timeout_s
        while self.started_at is None:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the load process did not start")
            time.sleep(0.05)
        return self.started_at

    def stop(self) -> None:
        """End the load now (in-flight requests and their retries still finish)."""
        if self.proc.poll() is None and self.proc.stdin is not None:
            with contextlib.suppress(OSError):
                self.proc.stdin.write("stop\n")
                self.proc.stdin.flush()

    @property
    def finished(self) -> bool:
        return self.end is not None

    def wait(self, timeout_s: float) -> dict[str, Any]:
        try:
            self.proc.wait(timeout=timeout_s)
        finally:
            self.kill()
        self.reader.join(5)
        if self.end is None:
            raise RuntimeError(
                f"the load process ended without its totals ({self.proc.returncode})"
            )
        return self.end

    def kill(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        if self.proc.stdin is not None:
            with contextlib.suppress(OSError):
                self.proc.stdin.close()


# ---------------------------------------------------------------------------------------------
# what the benchmark watches


class Probe:
    """Polls the complaints database every 20 ms for the probed orders not seen yet.

    An order shows in `orders` only once the consumer's transaction has committed, which is
    when the buyer's lookup can find it; the time is taken when the poll that saw it returns.
    """

    def __init__(self, complaints_url: str, platform_id: str) -> None:
        self.engine = create_engine(complaints_url, pool_size=1, max_overflow=0)
        self.platform_id = platform_id
        self.pending: dict[str, float] = {}
        self.seen: list[tuple[float, float]] = []  # (seen at, ms from the scheduled send)
        self.lock = threading.Lock()
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.query = text("SELECT id FROM orders WHERE id IN :ids").bindparams(
            bindparam("ids", expanding=True)
        )

    def start(self) -> Probe:
        self.thread.start()
        return self

    def watch(self, code: str, scheduled_at: float) -> None:
        with self.lock:
            self.pending[f"{self.platform_id}:{code}"] = scheduled_at

    def forget(self, code: str) -> None:
        with self.lock:
            self.pending.pop(f"{self.platform_id}:{code}", None)

    def _run(self) -> None:
        while not self._stop.is_set():
            with self.lock:
                ids = list(self.pending)[:1000]  # the oldest: the newer are behind them
            if ids:
                with self.engine.connect() as conn:
                    found = conn.execute(self.query, {"ids": ids}).scalars().all()
                at = time.time()
                with self.lock:
                    for order_id in found:
                        scheduled = self.pending.pop(order_id, None)
                        if scheduled is not None:
                            self.seen.append((at, (at - scheduled) * 1000))
            self._stop.wait(PROBE_EVERY_S)

    def since(self, t: float) -> list[float]:
        with self.lock:
            return [ms for at, ms in self.seen if at >= t]

    def waiting(self) -> int:
        with self.lock:
            return len(self.pending)

    def stop(self) -> None:
        self._stop.set()
        if self.thread.is_alive():
            self.thread.join(5)
        self.engine.dispose()


class Pipeline:
    """Consumer lag per group and the outboxes' backlog, from the four databases and the broker."""

    def __init__(self, bootstrap: str, database_urls: dict[str, str]) -> None:
        self.bootstrap = bootstrap
        self.engines: dict[str, Engine] = {
            name: create_engine(url, pool_size=1, max_overflow=0)
            for name, url in database_urls.items()
        }
        self._admin: Any = None
        # Per database: every row below this id is published, and how many per topic.
        self._counted: dict[str, tuple[int, dict[str, int]]] = {}

    def _rows(self, query: str) -> Iterable[tuple[Any, ...]]:
        for engine in self.engines.values():
            with engine.connect() as conn:
                yield from conn.execute(text(query)).all()

    def backlog(self) -> int:
        """Outbox rows not yet published, all services together."""
        query = "SELECT COUNT(*) FROM outbox_messages WHERE published_at IS NULL"
        return sum(int(n) for (n,) in self._rows(query))

    def produced(self) -> dict[str, int]:
        """Rows published per topic, all services together, counted incrementally: every row
        below the lowest unpublished id is published, so that range is counted once and kept;
        only the tail above it is counted again each time. (Counting the whole table every
        5 s cost PostgreSQL a second per sample by the end of a 10-minute soak.)"""
        out: dict[str, int] = {}
        for name, engine in self.engines.items():
            with engine.connect() as conn:
                low = conn.execute(
                    text(
                        "SELECT COALESCE((SELECT MIN(id) FROM outbox_messages "
                        "WHERE published_at IS NULL), (SELECT COALESCE(MAX(id), 0) + 1 "
                        "FROM outbox_messages))"
                    )
                ).scalar_one()
                done_below, counted = self._counted.get(name, (0, {}))
                if low > done_below:
                    counted = dict(counted)
                    for topic, n in conn.execute(
                        text(
                            "SELECT topic, COUNT(*) FROM outbox_messages "
                            "WHERE id >= :a AND id < :b GROUP BY topic"
                        ),
                        {"a": done_below, "b": low},
                    ):
                        counted[topic] = counted.get(topic, 0) + int(n)
                    self._counted[name] = (low, counted)
                tail = conn.execute(
                    text(
                        "SELECT topic, COUNT(*) FROM outbox_messages "
                        "WHERE id >= :b AND published_at IS NOT NULL GROUP BY topic"
                    ),
                    {"b": low},
                ).all()
            for topic, n in [*counted.items(), *tail]:
                out[topic] = out.get(topic, 0) + int(n)
        return out

    def committed(self, group: str) -> dict[str, int]:
        from kafka import KafkaAdminClient

        if self._admin is None:
            self._admin = KafkaAdminClient(
                bootstrap_servers=self.bootstrap,
                client_id="odr-bench-lag",
                request_timeout_ms=5000,
            )
        out: dict[str, int] = {}
        # kafka-python 3: {group: {TopicPartition: OffsetAndMetadata}}, offset -1 if none.
        for tp, meta in self._admin.list_group_offsets(group).get(group, {}).items():
            if meta.offset >= 0:
                out[tp.topic] = out.get(tp.topic, 0) + meta.offset
        return out

    def lags(self) -> dict[str, int] | None:
        """Per group, messages produced to its topics and not yet committed; None if the
        broker does not answer."""
        produced = self.produced()
        try:
            committed = {group: self.committed(group) for group in GROUP_TOPICS}
        except Exception:  # noqa: BLE001 - a broker away or a timeout: no figure this time
            self.close_admin()
            return None
        return {
            group: sum(max(0, produced.get(t, 0) - committed[group].get(t, 0)) for t in topics)
            for group, topics in GROUP_TOPICS.items()
        }

    def close_admin(self) -> None:
        if self._admin is not None:
            with contextlib.suppress(Exception):
                self._admin.close()
            self._admin = None

    def close(self) -> None:
        self.close_admin()
        for engine in self.engines.values():
            engine.dispose()


def _proc_stats() -> dict[int, tuple[int, int, int]]:
    """pid -> (process group, RSS bytes, CPU ticks) for every process we can read."""
    out: dict[int, tuple[int, int, int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            raw = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = raw[raw.rindex(")") + 2 :].split()
        out[int(entry)] = (
            int(fields[2]),
            int(fields[21]) * PAGE,
            int(fields[11]) + int(fields[12]),
        )
    return out


def process_usage(groups: dict[str, int]) -> dict[str, tuple[float, float]]:
    """name -> (RSS MB, CPU seconds) for each process group (a process and its children, such
    as the gateway API's store process)."""
    usage: dict[str, tuple[float, float]] = {}
    stats = _proc_stats()
    for name, pgid in groups.items():
        members = [(r, c) for g, r, c in stats.values() if g == pgid]
        if members:  # a process that has exited has no figures
            usage[name] = (sum(r for r, _c in members) / 2**20, sum(c for _r, c in members) / TICKS)
    return usage


def stack_groups(stack: Stack) -> dict[str, int]:
    return {name: p.popen.pid for name, p in stack.procs.items() if p.popen is not None}


def is_service(name: str) -> bool:
    return name.endswith(("-api", "-worker"))


# ---------------------------------------------------------------------------------------------
# the soak


def run_soak(
    *,
    stack: Stack,
    platform_id: str,
    secret: str,
    rate: float,
    seconds: float,
    out_dir: Path,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Order webhooks at `rate` for `seconds` through the gateway, every consumer running."""
    tag = f"SK{uuid.uuid4().hex[:6].upper()}"
    warm_up_s = min(60.0, seconds / 3)
    probe = Probe(stack.database_url("complaints"), platform_id).start()
    pipeline = Pipeline(stack.bootstrap, {n: stack.database_url(n) for n in SERVICES})
    url = f"{stack.url('gateway')}/v1/webhooks/{platform_id}"
    log(f"soak: {rate:g} webhooks/s for {seconds:g} s (orders {tag}...)")
    load = LoadRun(url, secret, rate, seconds, tag, probe.watch, probe.forget)
    series: list[dict[str, Any]] = []
    try:
        t0 = load.wait_started()
        sampler = Sampler(stack, load, probe, pipeline, t0)
        while not load.finished and load.proc.poll() is None:
            time.sleep(max(0.0, sampler.next_at - time.time()))
            series.append(sampler.sample("load"))
        end = load.wait(timeout_s=300)
        # Everything accepted is visible in the end: let the consumers catch up, still sampling.
        drain_started = time.time()
        drain_limit = max(120.0, seconds / 2)
        visible = count_visible(stack, platform_id, tag)
        while visible < end["accepted"] and time.time() - drain_started < drain_limit:
            time.sleep(max(0.0, min(sampler.next_at - time.time(), 1.0)))
            if time.time() >= sampler.next_at:
                series.append(sampler.sample("drain"))
            visible = count_visible(stack, platform_id, tag)
        drain_s = time.time() - drain_started
        # The probes still pending are in the database by now, or missing.
        deadline = time.time() + 5
        while probe.waiting() and time.time() < deadline:
            time.sleep(0.1)
        series.append(sampler.sample("end"))
    finally:
        load.kill()
        probe.stop()
        pipeline.close()
    lookups = [ms for _at, ms in probe.seen]
    lat = load.all_latencies + load.latencies
    load_rows = [r for r in series if r["phase"] == "load"]
    growth, broker = rss_growth(load_rows, warm_up_s)
    # CPU while the load was offered (not while late requests were still being given up).
    cpu = sampler.cpu_pct([r for r in load_rows if r["t_s"] <= seconds + SAMPLE_EVERY_S])
    lags = [r["lag_max"] for r in series if r["lag_max"] is not None]
    result: dict[str, Any] = {
        "soak_seconds": seconds,
        "soak_rate_per_s": rate,
        "soak_achieved_per_s": round(end["accepted"] / end["load_s"], 1),
        "soak_offered": end["offered"],
        "soak_accepted": end["accepted"],
        "soak_answers": {str(k): v for k, v in sorted(end["statuses"].items())},
        "soak_retries": end["retries"],
        "soak_abandoned": end["abandoned"],
        # Still waiting for a free connection when the load and its grace period were over.
        "soak_unsent": end["unsent"],
        "soak_refused": end["failed"],
        "soak_http_p99_ms": _r(percentile(lat, 99)),
        "soak_webhook_to_lookup_p99_ms": _r(percentile(lookups, 99)),
        "soak_webhook_to_lookup_p50_ms": _r(percentile(lookups, 50)),
        "soak_webhook_to_lookup_samples": len(lookups),
        "soak_missing": end["accepted"] - visible,
        "soak_drain_s": round(drain_s, 1),
        "soak_max_lag": max(lags) if lags else None,
        "soak_rss_growth_pct": growth,
        "soak_rss_growth_pct_max": max(growth.values()) if growth else None,
        "soak_broker_rss_mb": broker[1],
        "soak_broker_rss_growth_mb": _r(broker[1] - broker[0]) if broker[0] else None,
        "soak_cpu_pct": cpu,
        "soak_load_generator_cpu_pct": round(100 * end["cpu_s"] / end["elapsed_s"], 1),
        "soak_rss_baseline_at_s": round(warm_up_s),
        "soak_series": series,
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    plot_soak(series, out_dir / "soak.png", rate)
    log(
        f"soak: {result['soak_achieved_per_s']}/s accepted, webhook->lookup p99 "
        f"{result['soak_webhook_to_lookup_p99_ms']} ms, missing {result['soak_missing']}, "
        f"max lag {result['soak_max_lag']}, RSS growth max {result['soak_rss_growth_pct_max']}%"
    )
    return result


def count_visible(stack: Stack, platform_id: str, tag: str) -> int:
    engine = create_engine(stack.database_url("complaints"), pool_size=1, max_overflow=0)
    try:
        with engine.connect() as conn:
            return int(
                conn.execute(
                    text(
                        "SELECT COUNT(*) FROM orders WHERE platform_id = :p AND order_code LIKE :t"
                    ),
                    {"p": platform_id, "t": f"{tag}%"},
                ).scalar_one()
            )
    finally:
        engine.dispose()


class Sampler:
    """One row of the time series every ~5 s."""

    def __init__(
        self, stack: Stack, load: LoadRun, probe: Probe | None, pipeline: Pipeline, t0: float
    ) -> None:
        self.stack, self.load, self.probe, self.pipeline, self.t0 = stack, load, probe, pipeline, t0
        self.groups = stack_groups(stack)
        self.groups["load-generator"] = load.proc.pid
        self.last_t = time.time()
        self.last_offered = 0
        self.last_usage = process_usage(self.groups)
        self.next_at = self.last_t + SAMPLE_EVERY_S

    def sample(self, phase: str, with_lag: bool = True) -> dict[str, Any]:
        now = time.time()
        dt = max(now - self.last_t, 1e-6)
        offered, statuses, latencies = self.load.take()
        usage = process_usage(self.groups)
        ok = sum(n for s, n in statuses.items() if 200 <= s < 300)
        lookups = self.probe.since(self.last_t) if self.probe else []
        lags = self.pipeline.lags() if with_lag else None
        row: dict[str, Any] = {
            "t_s": round(now - self.t0, 1),
            "phase": phase,
            "offered_per_s": round((offered - self.last_offered) / dt, 1),
            "achieved_per_s": round(ok / dt, 1),
            "answers": {str(k): v for k, v in sorted(statuses.items())},
            "http_p99_ms": _r(percentile(latencies, 99)),
            "lookup_p99_ms": _r(percentile(lookups, 99)),
            "lookup_samples": len(lookups),
            "lag": lags,
            "lag_max": max(lags.values()) if lags else None,
            "outbox_backlog": self.pipeline.backlog(),
            "rss_mb": {n: round(rss, 1) for n, (rss, _cpu) in usage.items()},
            "cpu_s": {n: round(cpu, 2) for n, (_rss, cpu) in usage.items()},
            "cpu_pct": {
                n: round(100 * (cpu - self.last_usage.get(n, (0, cpu))[1]) / dt, 1)
                for n, (_rss, cpu) in usage.items()
                if n in self.last_usage
            },
        }
        self.last_t, self.last_offered, self.last_usage = now, offered, usage
        self.next_at = now + SAMPLE_EVERY_S
        return row

    @staticmethod
    def cpu_pct(rows: list[dict[str, Any]]) -> dict[str, float]:
        """Average CPU per process over the rows (percent of one core)."""
        if len(rows) < 2:
            return {}
        first, last = rows[0], rows[-1]
        dt = last["t_s"] - first["t_s"]
        return {
            n: round(100 * (last["cpu_s"][n] - first["cpu_s"][n]) / dt, 1)
            for n in last["cpu_s"]
            if n in first["cpu_s"]
        }


def rss_growth(
    rows: list[dict[str, Any]], warm_up_s: float
) -> tuple[dict[str, float], tuple[float, float]]:
    """Per service process, RSS at the end against RSS after the warm-up, in percent; and the
    broker's RSS then and at the end (MB): it keeps the topics in memory by design."""
    if not rows:
        return {}, (0.0, 0.0)
    base = next((r for r in rows if r["t_s"] >= warm_up_s), rows[0])
    last = rows[-1]
    growth = {
        n: round(100 * (last["rss_mb"][n] - mb) / mb, 1)
        for n, mb in base["rss_mb"].items()
        if is_service(n) and mb > 0 and n in last["rss_mb"]
    }
    return growth, (base["rss_mb"].get("tansu", 0.0), last["rss_mb"].get("tansu", 0.0))


def plot_soak(series: list[dict[str, Any]], path: Path, rate: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = [r["t_s"] for r in series]
    fig, (ax1, ax2, ax3) = plt.subplots(3, 1, figsize=(10, 9), sharex=True)
    ax1.plot(t, [r["offered_per_s"] for r in series], label="offered")
    ax1.plot(t, [r["achieved_per_s"] for r in series], label="accepted (2xx)")
    ax1.axhline(rate, color="grey", linestyle=":", linewidth=1)
    ax1.set_ylabel("webhooks/s")
    ax1.legend(loc="lower right")
    ax1.set_title("Soak: order webhooks through the gateway, every consumer running")
    nan = float("nan")
    ax2.plot(
        t,
        [nan if r["lookup_p99_ms"] is None else r["lookup_p99_ms"] for r in series],
        label="webhook -> buyer-visible p99",
    )
    ax2.plot(
        t,
        [nan if r["http_p99_ms"] is None else r["http_p99_ms"] for r in series],
        label="webhook answer p99",
    )
    ax2.axhline(1000, color="grey", linestyle=":", linewidth=1)
    ax2.set_ylabel("ms (per ~5 s)")
    ax2.legend(loc="upper right")
    ax3.plot(
        t, [nan if r["lag_max"] is None else r["lag_max"] for r in series], label="max group lag"
    )
    ax3.plot(t, [r["outbox_backlog"] for r in series], label="outbox backlog")
    ax3.set_ylabel("messages")
    ax3.set_xlabel("seconds")
    ax3.legend(loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


# ---------------------------------------------------------------------------------------------
# the broker outage


BENCH_ENV = {
    "ENVIRONMENT": "test",
    "LOG_LEVEL": "WARNING",
    "LOG_FORMAT": "json",
}


def register_platform(stack: Stack) -> tuple[str, str]:
    """A standard-kind platform; (platform id, webhook secret)."""
    from odr_shared.auth import TokenService
    from odr_shared.settings import ServiceSettings

    # The bench process has the stack's environment, so the same JWT secret.
    token = TokenService(ServiceSettings()).issue(
        role="admin", subject="bench", ttl=timedelta(hours=2)
    )
    created = httpx.post(
        f"{stack.url('gateway')}/v1/platforms",
        json={"name": "Soak", "kind": "standard"},
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )
    created.raise_for_status()
    doc = created.json()
    return doc["platform_id"], doc["webhook_secret"]


def run_outage(
    *,
    postgres_url: str,
    rate: float,
    outage_s: float,
    out_dir: Path,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """The broker unreachable for `outage_s` under `rate` webhooks/s, then back: how long until
    every group has caught up and every outbox is drained, and whether anything is missing."""
    var = Path(tempfile.mkdtemp(prefix="odr-soak-outage-"))
    ports = Ports.free()
    broker_port = free_port()
    link = BrokerLink(broker_port, listen_port=ports.kafka)
    stack = Stack(
        var,
        ports,
        database="postgres",
        postgres_url=postgres_url,
        database_prefix=f"odr_sk_{uuid.uuid4().hex[:8]}",
        drop_databases=True,
        broker_port=broker_port,
        # Production rate limits: one platform at 200/s is well inside its 2,000/s.
        extra_env=BENCH_ENV,
    )
    warm_s = min(15.0, max(3.0, outage_s / 2))
    tag = f"OU{uuid.uuid4().hex[:6].upper()}"
    series: list[dict[str, Any]] = []
    link.start()
    load: LoadRun | None = None
    pipeline: Pipeline | None = None
    keeper: StatisticsKeeper | None = None
    try:
        log("outage: starting a PostgreSQL stack with its broker behind a link")
        stack.start()
        keeper = StatisticsKeeper([stack.database_url(n) for n in SERVICES]).start()
        platform_id, secret = register_platform(stack)
        pipeline = Pipeline(stack.bootstrap, {n: stack.database_url(n) for n in SERVICES})
        url = f"{stack.url('gateway')}/v1/webhooks/{platform_id}"
        # The load would end by itself a little after the restore; it is stopped at the restore.
        load = LoadRun(url, secret, rate, warm_s + outage_s + 60, tag, retry_grace_s=10)
        t0 = load.wait_started()
        sampler = Sampler(stack, load, None, pipeline, t0)
        time.sleep(max(0.0, t0 + warm_s - time.time()))
        log(f"outage: cutting the broker off for {outage_s:g} s under {rate:g} webhooks/s")
        link.cut()
        cut_at = time.time()
        while time.time() < cut_at + outage_s:
            time.sleep(max(0.0, min(sampler.next_at, cut_at + outage_s) - time.time()))
            if time.time() >= sampler.next_at:
                series.append(sampler.sample("outage", with_lag=False))
        backlog_at_restore = pipeline.backlog()
        link.restore()
        load.stop()
        restored_at = time.time()
        log(f"outage: broker back, {backlog_at_restore} outbox rows waiting; load stopped")
        recovery_s: float | None = None
        limit_s = max(300.0, 2 * outage_s)
        while time.time() - restored_at < limit_s:
            # The backlog first: once it is empty, the produced counts read next hold every
            # row, and offsets committed after that only grow.
            backlog = pipeline.backlog()
            lags = pipeline.lags()
            caught_up = (
                load.finished and backlog == 0 and lags is not None and not any(lags.values())
            )
            if caught_up:
                recovery_s = time.time() - restored_at
                break
            if time.time() >= sampler.next_at:
                series.append(sampler.sample("recovery"))
            time.sleep(0.5)
        end = load.wait(timeout_s=60)
        visible = count_visible(stack, platform_id, tag)
        deadline = time.time() + 60
        while visible < end["accepted"] and time.time() < deadline:
            time.sleep(1)
            visible = count_visible(stack, platform_id, tag)
        series.append(sampler.sample("end"))
        dead = stack.dead()
        if recovery_s is None or visible < end["accepted"] or dead:
            # Not recovered: keep the processes' logs for whoever looks into it.
            shutil.copytree(var / "logs", out_dir / "outage-logs", dirs_exist_ok=True)
            log(f"outage: did not recover; the stack's logs are in {out_dir / 'outage-logs'}")
    finally:
        if load is not None:
            load.kill()
        if pipeline is not None:
            pipeline.close()
        if keeper is not None:
            keeper.stop()
        stack.stop()
        link.stop()
        shutil.rmtree(var, ignore_errors=True)
    during = [r for r in series if r["phase"] == "outage"]
    accepted_during = [r["achieved_per_s"] for r in during]
    result = {
        "outage_recovery_s": None if recovery_s is None else round(recovery_s, 1),
        "outage_missing": end["accepted"] - visible,
        "outage_s": outage_s,
        "outage_rate_per_s": rate,
        "outage_accepted": end["accepted"],
        "outage_answers": {str(k): v for k, v in sorted(end["statuses"].items())},
        "outage_abandoned": end["abandoned"],
        "outage_unsent": end["unsent"],
        "outage_backlog_at_restore": backlog_at_restore,
        "outage_accepted_per_s_during": (
            round(sum(accepted_during) / len(accepted_during), 1) if accepted_during else None
        ),
        "outage_max_lag": max((r["lag_max"] for r in series if r["lag_max"]), default=0),
        "outage_dead_processes": dead,
        "outage_series": series,
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    log(
        f"outage: recovered in {result['outage_recovery_s']} s, "
        f"missing {result['outage_missing']}, backlog at restore {backlog_at_restore}"
    )
    return result


# ---------------------------------------------------------------------------------------------


def _postgres_stack(var: Path, postgres_url: str, rate_limit: int | None) -> Stack:
    env = dict(BENCH_ENV)
    if rate_limit is not None:
        env["GATEWAY_WEBHOOK_RATE_LIMIT"] = str(rate_limit)
    return Stack(
        var,
        Ports.free(),
        database="postgres",
        postgres_url=postgres_url,
        database_prefix=f"odr_sk_{uuid.uuid4().hex[:8]}",
        drop_databases=True,
        extra_env=env,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description="soak and broker-outage benchmarks")
    sub = parser.add_subparsers(dest="command", required=True)
    load = sub.add_parser("load", help="(internal) the open-loop load process")
    load.add_argument("--url", required=True)
    load.add_argument("--rate", type=float, required=True)
    load.add_argument("--seconds", type=float, required=True)
    load.add_argument("--tag", required=True)
    load.add_argument("--probe-one-in", type=int, default=PROBE_ONE_IN)
    load.add_argument("--retry-grace-s", type=float, default=30.0)
    pg = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
    soak = sub.add_parser("soak", help="a soak on its own PostgreSQL stack")
    soak.add_argument("--rate", type=float, default=1000)
    soak.add_argument("--seconds", type=float, default=600)
    soak.add_argument("--out", default=str(ROOT / "bench" / "results"))
    soak.add_argument("--postgres-url", default=os.environ.get("ODR_POSTGRES_URL", pg))
    soak.add_argument(
        "--rate-limit", type=int, help="GATEWAY_WEBHOOK_RATE_LIMIT (default: production's)"
    )
    outage = sub.add_parser("outage", help="the broker-outage benchmark")
    outage.add_argument("--rate", type=float, default=200)
    outage.add_argument("--outage-s", type=float, default=300)
    outage.add_argument("--out", default=str(ROOT / "bench" / "results"))
    outage.add_argument("--postgres-url", default=os.environ.get("ODR_POSTGRES_URL", pg))
    args = parser.parse_args()
    if args.command == "load":
        load_main(args)
        return
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    out = Path(args.out)
    if args.command == "outage":
        result = run_outage(
            postgres_url=args.postgres_url, rate=args.rate, outage_s=args.outage_s, out_dir=out
        )
    else:
        with tempfile.TemporaryDirectory(prefix="odr-soak-") as var:
            stack = _postgres_stack(Path(var), args.postgres_url, args.rate_limit)
            stack.start()
            keeper = StatisticsKeeper([stack.database_url(n) for n in SERVICES]).start()
            try:
                platform_id, secret = register_platform(stack)
                result = run_soak(
                    stack=stack,
                    platform_id=platform_id,
                    secret=secret,
                    rate=args.rate,
                    seconds=args.seconds,
                    out_dir=out,
                )
            finally:
                keeper.stop()
                stack.stop()
    out.mkdir(parents=True, exist_ok=True)
    name = "soak.json" if args.command == "soak" else "outage.json"
    (out / name).write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({k: v for k, v in result.items() if not k.endswith("_series")}, indent=1))


if __name__ == "__main__":
    main()
