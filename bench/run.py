"""`make bench`: start the platform on this machine, measure, write bench/results/.

Every figure is measured in the same run as its baseline, so ratios hold on a noisy machine.
Loads are bounded in count and time and only target 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import hmac
import json
import os
import re
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from odr_cli.stack import Ports, Stack
from odr_shared.auth import TokenService
from odr_shared.settings import ServiceSettings
from odr_shared.testing import free_port, sample_order, wait_http

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"


# ---------------------------------------------------------------------------------------------
# helpers


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = (len(ordered) - 1) * p / 100
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def admin_token() -> str:
    return TokenService(ServiceSettings()).issue(
        role="admin", subject="bench", ttl=timedelta(hours=2)
    )


def sign(secret: str, msg_id: str, ts: int, body: bytes) -> str:
    key = base64.b64decode(secret.removeprefix("whsec_"))
    digest = hmac.new(key, f"{msg_id}.{ts}.".encode(), hashlib.sha256)
    digest.update(body)
    return "v1," + base64.b64encode(digest.digest()).decode()


def order_body(code: str, status: str = "delivered") -> bytes:
    now = datetime.now(UTC).isoformat()
    return json.dumps(
        {"type": "order.updated", "timestamp": now, "data": sample_order(code, status)},
        ensure_ascii=False,
        separators=(",", ":"),
    ).encode()


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


@dataclass
class Ctx:
    stack: Stack
    admin: dict[str, str]
    platform_id: str
    secret: str
    results: dict[str, Any] = field(default_factory=dict)
    curves: dict[str, list[dict[str, float]]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


# ---------------------------------------------------------------------------------------------
# closed-loop throughput with wrk


def write_requests(path: Path, url_path: str, secret: str, count: int) -> None:
    ts = int(time.time())
    with path.open("w", encoding="utf-8") as f:
        for _ in range(count):
            code = f"B{uuid.uuid4().hex[:12].upper()}"
            body = order_body(code)
            msg_id = f"msg_{uuid.uuid4().hex}"
            sig = sign(secret, msg_id, ts, body)
            f.write(f"{url_path}\t{msg_id}\t{ts}\t{sig}\t{body.decode()}\n")


def wrk(
    url: str, script_args: list[str], seconds: int, conns: int, threads: int = 2
) -> dict[str, float]:
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
            *script_args,
            str(threads),
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=seconds + 60,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = re.search(r"Socket errors:.*", out)
    return {
        "requests_per_s": rps,
        "requests": total,
        "non_2xx": int(non2xx.group(1)) if non2xx else 0,
        "socket_errors": errors.group(0) if errors else "",  # type: ignore[dict-item]
    }


def start_bare_app(workers: int) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "bench.bare_app:app",
            "--port",
            str(port),
            "--workers",
            str(workers),
            "--log-level",
            "warning",
            "--no-access-log",
        ],
        cwd=ROOT,
    )
    url = f"http://127.0.0.1:{port}"
    wait_http(f"{url}/docs")
    return proc, url


def bench_ingest(ctx: Ctx, seconds: int, conns: int) -> None:
    """Signed single-event webhooks/s: gateway (stored + outbox) vs bare FastAPI parse-only."""
    log("ingest: building signed requests")
    tmp = Path(tempfile.mkdtemp(prefix="odr-bench-"))
    path = f"/v1/webhooks/{ctx.platform_id}"
    budget = 6000 * seconds  # unique deliveries; more than the gateway can take in the window
    req_file = tmp / "requests.tsv"
    write_requests(req_file, path, ctx.secret, budget)

    bare, bare_url = start_bare_app(workers=1)
    try:
        wrk(bare_url + path, [str(req_file)], 3, conns)  # warm-up
        log("ingest: bare FastAPI baseline")
        base = wrk(bare_url + path, [str(req_file)], seconds, conns)
    finally:
        bare.terminate()
        bare.wait()
    gw_url = ctx.stack.url("gateway")
    log("ingest: gateway")
    write_requests(tmp / "warm.tsv", path, ctx.secret, 3000)
    wrk(gw_url + path, [str(tmp / "warm.tsv")], 3, conns)
    gw = wrk(gw_url + path, [str(req_file)], seconds, conns)
    wrapped = gw["requests"] > budget
    if wrapped:
        ctx.notes.append("ingest: wrk replayed some deliveries (duplicates are cheaper)")
    ctx.results["ingest_bare_fastapi_rps"] = round(base["requests_per_s"], 1)
    ctx.results["ingest_gateway_rps"] = round(gw["requests_per_s"], 1)
    ctx.results["ingest_gateway_non_2xx"] = gw["non_2xx"]
    ctx.results["ingest_ratio_vs_bare_fastapi"] = round(
        gw["requests_per_s"] / base["requests_per_s"], 3
    )
    ctx.results["ingest_load"] = {
        "tool": "wrk",
        "connections": conns,
        "seconds": seconds,
        "uvicorn_workers": 1,
    }
    # Durability check: every 2xx is a stored delivery.
    db = ctx.stack.var / "gateway.db"
    with sqlite3.connect(db) as conn:
        stored = conn.execute(
            "SELECT COUNT(*) FROM inbound_deliveries WHERE status = 'accepted'"
        ).fetchone()[0]
    ctx.results["ingest_gateway_deliveries_stored"] = stored
    wait_outbox_drained(ctx)


def wait_outbox_drained(ctx: Ctx, timeout_s: float = 300) -> float:
    db = ctx.stack.var / "gateway.db"
    start = time.monotonic()
    while time.monotonic() - start < timeout_s:
        with sqlite3.connect(db) as conn:
            left = conn.execute(
                "SELECT COUNT(*) FROM outbox_messages WHERE published_at IS NULL"
            ).fetchone()[0]
        if left == 0:
            return time.monotonic() - start
        time.sleep(0.5)
    raise TimeoutError("gateway outbox did not drain")


# ---------------------------------------------------------------------------------------------
# open-loop latency against offered load


async def open_loop(
    url: str,
    make_request: Callable[[int], tuple[dict[str, str], bytes]],
    rate: float,
    seconds: float,
    on_done: Callable[[int, float, int], None] | None = None,
) -> dict[str, float]:
    """Send at a fixed rate regardless of answers (no coordinated omission); latency per request."""
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    total = int(rate * seconds)
    limits = httpx.Limits(max_connections=256, max_keepalive_connections=256)
    async with httpx.AsyncClient(limits=limits, timeout=30) as client:
        start = time.perf_counter()

        async def one(i: int, scheduled: float) -> None:
            headers, body = make_request(i)
            r = await client.post(url, content=body, headers=headers)
            done = time.perf_counter()
            latencies.append((done - scheduled) * 1000)
            statuses[r.status_code] = statuses.get(r.status_code, 0) + 1
            if on_done:
                on_done(i, time.time(), r.status_code)

        tasks = []
        for i in range(total):
            scheduled = start + i / rate
            delay = scheduled - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(i, scheduled)))
        await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - start
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
    ctx: Ctx, codes: dict[int, str]
) -> Callable[[int], tuple[dict[str, str], bytes]]:
    def make(i: int) -> tuple[dict[str, str], bytes]:
        code = f"L{uuid.uuid4().hex[:12].upper()}"
        codes[i] = code
        body = order_body(code)
        msg_id = f"msg_{uuid.uuid4().hex}"
        ts = int(time.time())
        return (
            {
                "content-type": "application/json",
                "webhook-id": msg_id,
                "webhook-timestamp": str(ts),
                "webhook-signature": sign(ctx.secret, msg_id, ts, body),
            },
            body,
        )

    return make


def bench_latency_curve(ctx: Ctx, rates: list[int], seconds: float) -> None:
    """Gateway webhook latency at increasing offered loads (the plot)."""
    url = f"{ctx.stack.url('gateway')}/v1/webhooks/{ctx.platform_id}"
    curve = []
    for rate in rates:
        log(f"latency curve: gateway at {rate}/s")
        point = asyncio.run(open_loop(url, webhook_request(ctx, {}), rate, seconds))
        curve.append(point)
        wait_outbox_drained(ctx)
    ctx.curves["gateway_webhook"] = curve


def bench_webhook_to_lookup(ctx: Ctx, rate: int, seconds: float) -> None:
    """From webhook accepted (202) to the order committed in complaints, at a steady rate."""
    log(f"webhook -> lookup at a steady {rate}/s for {seconds:.0f}s")
    url = f"{ctx.stack.url('gateway')}/v1/webhooks/{ctx.platform_id}"
    codes: dict[int, str] = {}
    accepted: dict[str, float] = {}

    def done(i: int, at: float, status: int) -> None:
        if status == 202:
            accepted[codes[i]] = at

    point = asyncio.run(open_loop(url, webhook_request(ctx, codes), rate, seconds, done))
    db = ctx.stack.var / "complaints.db"
    seen: dict[str, float] = {}
    deadline = time.monotonic() + 120
    while len(seen) < len(accepted) and time.monotonic() < deadline:
        with sqlite3.connect(db) as conn:
            rows = conn.execute(
                "SELECT order_code, first_seen_at FROM orders WHERE order_code LIKE 'L%'"
            ).fetchall()
        seen = {c: datetime.fromisoformat(t).replace(tzinfo=UTC).timestamp() for c, t in rows}
        time.sleep(0.5)
    missing = [c for c in accepted if c not in seen]
    lags = [(seen[c] - t) * 1000 for c, t in accepted.items() if c in seen]
    ctx.results["webhook_to_lookup_p50_ms"] = round(percentile(lags, 50), 1)
    ctx.results["webhook_to_lookup_p99_ms"] = round(percentile(lags, 99), 1)
    ctx.results["webhook_to_lookup_events"] = len(accepted)
    ctx.results["webhook_to_lookup_missing"] = len(missing)
    ctx.results["webhook_to_lookup_ingest_p99_ms"] = point["p99_ms"]


# ---------------------------------------------------------------------------------------------
# report


def git_commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def write_outputs(ctx: Ctx, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    doc = {
        **ctx.results,
        "curves": ctx.curves,
        "cpu_count": os.cpu_count(),
        "git_commit": git_commit(),
        "measured_at": datetime.now(UTC).isoformat(),
        "python": sys.version.split()[0],
        "notes": ctx.notes,
    }
    (out / "latest.json").write_text(json.dumps(doc, indent=2, ensure_ascii=False))
    plot(ctx, out / "latency_vs_load.png")
    (out / "report.md").write_text(report(doc))
    log(f"wrote {out / 'latest.json'}, report.md, latency_vs_load.png")


def plot(ctx: Ctx, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=120)
    for name, curve in ctx.curves.items():
        xs = [p["offered_rps"] for p in curve]
        ax.plot(xs, [p["p50_ms"] for p in curve], marker="o", label=f"{name} p50")
        ax.plot(xs, [p["p99_ms"] for p in curve], marker="s", linestyle="--", label=f"{name} p99")
    ax.set_xlabel("offered load (requests/s)")
    ax.set_ylabel("latency (ms)")
    ax.set_yscale("log")
    ax.set_title("Signed webhook latency against load (open loop)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


GOALS = {
    "ingest_ratio_vs_bare_fastapi": (">=", 0.5),
    "batch_ratio_vs_raw_producer": (">=", 0.5),
    "webhook_to_lookup_p99_ms": ("<=", 1000),
    "case_to_sms_p99_ms": ("<=", 2000),
    "routing_p99_ms": ("<=", 50),
}


def report(doc: dict[str, Any]) -> str:
    lines = [
        "# Benchmark report",
        "",
        f"Commit `{doc['git_commit'][:12]}`, {doc['cpu_count']} CPUs, Python {doc['python']}, "
        f"measured {doc['measured_at']}.",
        "",
        "| key | value | goal | met |",
        "| --- | --- | --- | --- |",
    ]
    for key, (op, goal) in GOALS.items():
        value = doc.get(key)
        if value is None:
            lines.append(f"| `{key}` | not measured | {op} {goal} | - |")
            continue
        met = value >= goal if op == ">=" else value <= goal
        lines.append(f"| `{key}` | {value} | {op} {goal} | {'yes' if met else 'no'} |")
    lines += ["", "## Absolute figures", ""]
    for key, value in doc.items():
        if key not in GOALS and key not in ("curves", "notes") and not isinstance(value, dict):
            lines.append(f"- `{key}`: {value}")
    if doc.get("curves"):
        lines += ["", "## Latency against load", "", "![latency](latency_vs_load.png)", ""]
        for name, curve in doc["curves"].items():
            lines += [
                f"{name}:",
                "",
                "| offered/s | achieved/s | p50 ms | p99 ms | errors |",
                "| --- | --- | --- | --- | --- |",
            ]
            for p in curve:
                lines.append(
                    f"| {p['offered_rps']} | {p['achieved_rps']} | {p['p50_ms']} | "
                    f"{p['p99_ms']} | {p['errors']} |"
                )
            lines.append("")
    if doc.get("notes"):
        lines += ["## Notes", ""] + [f"- {n}" for n in doc["notes"]]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="short loads (a smoke run)")
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args()
    seconds = 4 if args.quick else 10
    with tempfile.TemporaryDirectory(prefix="odr-bench-stack-") as var:
        stack = Stack(
            Path(var),
            Ports.free(),
            extra_env={"ENVIRONMENT": "test", "LOG_LEVEL": "WARNING", "LOG_FORMAT": "json"},
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
            ctx = Ctx(stack, admin, created["platform_id"], created["webhook_secret"])
            bench_ingest(ctx, seconds=seconds, conns=32)
            bench_latency_curve(ctx, [50, 100, 200, 400, 800], seconds=3 if args.quick else 5)
            bench_webhook_to_lookup(ctx, rate=200, seconds=seconds)
            write_outputs(ctx, Path(args.out))
        finally:
            stack.stop()


if __name__ == "__main__":
    main()
