"""What the benchmark phases share: events, signed request files, wrk, process CPU, SQL."""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import Engine, create_engine, text

from odr_shared.auth import TokenService
from odr_shared.settings import ServiceSettings
from odr_shared.testing import free_port, sample_order, standard_webhook_headers, wait_http

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
LOCAL = "127.0.0.1"
DEFAULT_POSTGRES_URL = os.environ.get(
    "ODR_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)

Log = Callable[[str], None]


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


# ---------------------------------------------------------------------------------------------
# events and tokens


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


def register_platform(gateway_url: str, name: str) -> tuple[str, str]:
    """A platform with the production defaults (rate limit included): (platform_id, secret)."""
    r = httpx.post(
        f"{gateway_url}/v1/platforms",
        json={"name": name, "kind": "standard"},
        headers={"Authorization": f"Bearer {admin_token()}"},
        timeout=30,
    )
    r.raise_for_status()
    created = r.json()
    return created["platform_id"], created["webhook_secret"]


# ---------------------------------------------------------------------------------------------
# closed-loop load with wrk


def write_requests(path: Path, platforms: list[tuple[str, str]], count: int) -> None:
    """`count` signed single-event webhooks, each a new order code and delivery id, for wrk's
    bench/replay.lua; line i goes to platforms[i % len(platforms)]. Signed now: write them
    just before the run (the gateway refuses timestamps older than its tolerance)."""
    ts = int(time.time())
    with path.open("w", encoding="utf-8") as f:
        for i in range(count):
            platform_id, secret = platforms[i % len(platforms)]
            body = order_body(f"B{uuid.uuid4().hex[:14].upper()}")
            signed = standard_webhook_headers(secret, body, timestamp=ts)
            msg_id, sig = signed["webhook-id"], signed["webhook-signature"]
            f.write(f"/v1/webhooks/{platform_id}\t{msg_id}\t{ts}\t{sig}\t{body.decode()}\n")


def wrk(url: str, req_file: Path, seconds: float, conns: int, threads: int = 1) -> dict[str, Any]:
    argv = ["wrk", f"-t{threads}", f"-c{conns}", f"-d{seconds}s", "--latency"]
    argv += ["-s", str(ROOT / "bench" / "replay.lua"), url, "--", str(req_file), str(threads)]
    out = subprocess.run(
        argv, capture_output=True, text=True, check=True, timeout=seconds + 60
    ).stdout
    return parse_wrk(out)


def parse_wrk(out: str) -> dict[str, Any]:
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


# ---------------------------------------------------------------------------------------------
# processes and their CPU time (from /proc: no extra dependency)

CLK_TCK = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> tuple[int, float] | None:
    """(parent pid, user + system CPU seconds) of a live process, None if it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rindex(")") + 2 :].split()
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / CLK_TCK


def process_tree(root: int) -> list[int]:
    """`root` and its live descendants."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (st := _stat(int(entry.name))):
            children.setdefault(st[0], []).append(int(entry.name))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        if _stat(pid) is not None:
            tree.append(pid)
            todo += children.get(pid, [])
    return tree


def processes_named(comm: str) -> list[int]:
    """Live processes whose command name is `comm` (e.g. the PostgreSQL server's)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == comm:
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def cpu_seconds(pids: Iterable[int]) -> dict[int, float]:
    return {pid: st[1] for pid in pids if (st := _stat(pid)) is not None}


class CpuMeter:
    """CPU seconds used by named groups of processes between start() and stop().

    A group is a callable returning its pids (evaluated at both ends; a process that exits in
    between is not counted, which the bench avoids by keeping its servers up across a run).
    """

    def __init__(self, groups: Mapping[str, Callable[[], list[int]]]) -> None:
        self.groups = groups
        self.before: dict[str, dict[int, float]] = {}

    def start(self) -> None:
        self.before = {name: cpu_seconds(pids()) for name, pids in self.groups.items()}

    def stop(self) -> dict[str, float]:
        used = {}
        for name, pids in self.groups.items():
            after = cpu_seconds(pids())
            first = self.before.get(name, {})
            used[name] = round(sum(t - first.get(pid, 0.0) for pid, t in after.items()), 3)
        return used


def start_server(argv: list[str], env: Mapping[str, str], ready_path: str) -> tuple[Any, str]:
    """Start an HTTP server (argv gets --port) in its own session; (popen, base URL)."""
    port = free_port()
    proc = subprocess.Popen(
        [*argv, "--port", str(port)],
        cwd=ROOT,
        env=dict(env),
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=None,
    )
    url = f"http://{LOCAL}:{port}"
    try:
        wait_http(f"{url}{ready_path}", timeout_s=120)
    except BaseException:
        stop_proc(proc)
        raise
    return proc, url


def stop_proc(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the process group, SIGKILL what is left after 15 s; waits for the leader."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    # uvicorn's workers leave with their parent; anything still in the group goes now.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)


def python_argv(code: str) -> list[str]:
    return [sys.executable, "-c", code]


# ---------------------------------------------------------------------------------------------
# SQL on the services' databases


_ENGINES: dict[str, Engine] = {}


def engine(url: str) -> Engine:
    if url not in _ENGINES:
        _ENGINES[url] = create_engine(url, pool_size=1, max_overflow=1)
    return _ENGINES[url]


def sql(url: str, query: str, **params: Any) -> list[tuple[Any, ...]]:
    """Run one statement in its own transaction (committed); its rows, if it returns any."""
    with engine(url).begin() as conn:
        result = conn.execute(text(query), params)
        return [tuple(row) for row in result] if result.returns_rows else []


def dispose_engines() -> None:
    """Close the bench's own connections (before the stack drops its databases)."""
    while _ENGINES:
        _ENGINES.popitem()[1].dispose()


def epoch(value: datetime | str | None) -> float | None:
    """A stored UTC time (aware, or naive meaning UTC) -> epoch seconds."""
    if value is None:
        return None
    t = datetime.fromisoformat(value) if isinstance(value, str) else value
    return (t if t.tzinfo else t.replace(tzinfo=UTC)).timestamp()


def wait_until(done: Callable[[], bool], timeout_s: float, every_s: float) -> float | None:
    """Seconds until `done()` held, checking every `every_s`; None if not within `timeout_s`."""
    start = time.monotonic()
    while time.monotonic() - start < timeout_s:
        if done():
            return time.monotonic() - start
        time.sleep(every_s)
    return None


def git_commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def median(values: list[float]) -> float:
    ordered = sorted(values)
    n = len(ordered)
    if not n:
        return float("nan")
    mid = n // 2
    return ordered[mid] if n % 2 else (ordered[mid - 1] + ordered[mid]) / 2


class StatisticsKeeper:
    """ANALYZE the stack's databases every `every_s` while the server runs without autovacuum.

    The local PostgreSQL of the machines this runs on has `autovacuum = off`; production's
    (CloudNativePG) has it on. Without statistics the planner takes a fresh table's size from
    its pages but guesses every selectivity, and the consumers' inbox check (`consumer_group =
    ? AND event_id IN (...)`) turned into a scan of the whole group: 300 ms per poll after two
    minutes of the soak, which is not what production would see. This does what autovacuum's
    analyze would do (about once a minute per busy table), and nothing when autovacuum is on.
    """

    def __init__(self, urls: list[str], every_s: float = 20.0) -> None:
        self.urls = urls
        self.every_s = every_s
        self.active = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> StatisticsKeeper:
        if not self.urls or sql(self.urls[0], "SHOW autovacuum")[0][0] == "on":
            return self
        self.active = True
        self._thread = threading.Thread(target=self._run, name="bench-analyze", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            for url in self.urls:
                try:
                    with engine(url).connect() as conn:
                        conn.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql(
                            "ANALYZE"
                        )
                except Exception as exc:  # noqa: BLE001 - a database being dropped at the end
                    log(f"analyze {url.rsplit('/', 1)[-1]}: {type(exc).__name__}")

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=120)
