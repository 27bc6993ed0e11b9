"""Closed-loop ingest on PostgreSQL: the gateway's webhook API against a bare FastAPI + INSERT.

Both sides run outside the stack as `uvicorn --workers N` process groups on their own ports, on
the same PostgreSQL server (fsync and synchronous_commit as the server has them), one commit
per request. The gateway's API writes to the stack's gateway database, so the stack's outbox
relay and consumers run during the load, and every platform has the production rate limit.
wrk replays pre-signed webhooks, each a new delivery id and order code (bench/replay.lua).

Each ratio's sides are measured interleaved (A B A B ...) `repeats` times; the ratio is the
median of the per-round ratios, with the smallest and largest beside it.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from bench.bare_pg_app import TABLE_DDL
from bench.common import (
    CpuMeter,
    Log,
    dispose_engines,
    median,
    process_tree,
    processes_named,
    python_argv,
    register_platform,
    sql,
    start_server,
    stop_proc,
    write_requests,
    wrk,
)
from odr_shared.testing import (
    create_postgres_database,
    drop_postgres_database,
    postgres_database_url,
)

# Unique deliveries written per run: above what either side answers on this kind of machine,
# so wrk does not replay (a replay is a duplicate, which is cheaper; noted if it happens).
REQUESTS_PER_SECOND_BUDGET = 3000
GATEWAY_API = "from gateway.main import api; api()"


def gateway_rate_limit(env: Mapping[str, str]) -> dict[str, Any]:
    """The per-platform webhook rate limit the gateway runs with (production default unless the
    environment sets one)."""
    try:
        from gateway.settings import GatewaySettings

        fields = GatewaySettings.model_fields
        limit = env.get("GATEWAY_WEBHOOK_RATE_LIMIT", fields["webhook_rate_limit"].default)
        window = env.get("GATEWAY_WEBHOOK_RATE_WINDOW_S", fields["webhook_rate_window_s"].default)
        return {"per_platform": int(limit), "window_s": int(window)}
    except (ImportError, KeyError):
        return {}


class Server:
    """One process group under load: its URL, its processes, the CPU they use per run."""

    def __init__(self, name: str, argv: list[str], env: Mapping[str, str], ready: str) -> None:
        self.name = name
        self.proc, self.url = start_server(argv, env, ready)

    def pids(self) -> list[int]:
        return process_tree(self.proc.pid)

    def stop(self) -> None:
        stop_proc(self.proc)


def run_ingest(
    *,
    env: Mapping[str, str],
    postgres_url: str,
    database_prefix: str,
    seconds: float,
    repeats: int,
    log: Log,
    conns: int = 32,
    writers: int = 4,
    workers: int = 2,
    other_groups: Mapping[str, Callable[[], list[int]]] | None = None,
) -> tuple[dict[str, Any], list[str]]:
    """The ingest figures (pg_* keys) and notes. `env` is the stack's environment (its gateway
    database); `other_groups` are more processes whose CPU to count (the stack's relay, ...)."""
    notes: list[str] = []
    tmp = Path(tempfile.mkdtemp(prefix="odr-bench-ingest-"))
    bare_db = f"{database_prefix}_bare"
    bare_url = postgres_database_url(postgres_url, bare_db)
    servers: list[Server] = []
    try:
        create_postgres_database(postgres_url, bare_db)
        sql(bare_url, TABLE_DDL)
        log(f"ingest: starting the gateway API with 1 and {workers} uvicorn workers, bare app")
        gw1 = Server("gateway_1w", [*python_argv(GATEWAY_API), "--workers", "1"], env, "/healthz")
        servers.append(gw1)
        gw = Server(
            f"gateway_{workers}w",
            [*python_argv(GATEWAY_API), "--workers", str(workers)],
            env,
            "/healthz",
        )
        servers.append(gw)
        bare_argv = [sys.executable, "-m", "uvicorn", "bench.bare_pg_app:app"]
        bare_argv += ["--host", "127.0.0.1", "--workers", str(workers)]
        bare_argv += ["--log-level", "warning", "--no-access-log"]
        bare = Server(
            f"bare_pg_{workers}w",
            bare_argv,
            {**env, "BENCH_BARE_DATABASE_URL": bare_url},
            "/healthz",
        )
        servers.append(bare)

        def platforms(n: int) -> list[tuple[str, str]]:
            # New marketplaces for each run, with the production rate limit: a run is limited
            # as one marketplace's traffic would be, not by what earlier runs sent.
            return [
                register_platform(gw1.url, f"Bench ingest {uuid.uuid4().hex[:8]}") for _ in range(n)
            ]

        main = platforms(1)
        budget = int(REQUESTS_PER_SECOND_BUDGET * seconds)
        counter = iter(range(1_000_000))

        def one_run(server: Server, platforms: list[tuple[str, str]], c: int) -> dict[str, Any]:
            req = tmp / f"run-{next(counter)}.tsv"
            write_requests(req, platforms, budget)
            groups: dict[str, Callable[[], list[int]]] = {
                "api": server.pids,
                "postgres": lambda: processes_named("postgres"),
                **(other_groups or {}),
            }
            meter = CpuMeter(groups)
            procs = len(server.pids())
            meter.start()
            got = wrk(server.url + f"/v1/webhooks/{platforms[0][0]}", req, seconds, c)
            cpu = meter.stop()
            req.unlink()
            ok = got["requests"] - got["non_2xx"]
            if got["requests"] > budget:
                notes.append(f"ingest: wrk replayed deliveries on {server.name} (duplicates)")
            if got["non_2xx"]:
                notes.append(f"ingest: {got['non_2xx']} non-2xx answers from {server.name}")
            return {
                "server": server.name,
                "processes": procs,
                "connections": c,
                "platforms": len(platforms),
                **got,
                "cpu_s": cpu,
                "cpu_ms_per_request": {
                    k: round(1000 * v / ok, 3) if ok else None for k, v in cpu.items()
                },
            }

        for server in (bare, gw, gw1):
            warm = tmp / f"warm-{server.name}.tsv"
            write_requests(warm, main, 1000)
            wrk(server.url + f"/v1/webhooks/{main[0][0]}", warm, 1, conns)
        runs: list[dict[str, Any]] = []
        for i in range(repeats):
            log(f"ingest: round {i + 1}/{repeats}: bare, gateway {workers}w, gateway 1w")
            for server in (bare, gw, gw1):
                runs.append(
                    {"round": i, "case": server.name, **one_run(server, platforms(1), conns)}
                )
        for i in range(repeats):
            log(f"ingest: round {i + 1}/{repeats}: {writers} writers, one platform then {writers}")
            one, four = platforms(1), platforms(writers)
            runs.append({"round": i, "case": "same_platform", **one_run(gw, one, writers)})
            runs.append({"round": i, "case": "spread", **one_run(gw, four, writers)})
        counts = {r["case"]: r["processes"] for r in runs}
        if counts.get(gw.name) != counts.get(bare.name):
            notes.append(
                f"ingest: {gw.name} ran as {counts.get(gw.name)} processes, {bare.name} as "
                f"{counts.get(bare.name)} (uvicorn's supervisor included on both sides)"
            )
    finally:
        for server in servers:
            server.stop()
        dispose_engines()
        drop_postgres_database(postgres_url, bare_db)
        shutil.rmtree(tmp, ignore_errors=True)
    return summarise(
        runs, workers, bare.name, gw.name, gw1.name, conns, writers, seconds, env
    ), notes


def _by(runs: list[dict[str, Any]], case: str) -> list[dict[str, Any]]:
    return sorted((r for r in runs if r["case"] == case), key=lambda r: r["round"])


def _ratios(tops: list[dict[str, Any]], bottoms: list[dict[str, Any]]) -> list[float]:
    """Per round: the two runs of a pair were measured one after the other."""
    pairs = zip(tops, bottoms, strict=False)
    return [t["ok_per_s"] / b["ok_per_s"] for t, b in pairs if b["ok_per_s"]]


def _spread(values: list[float]) -> dict[str, float]:
    if not values:
        return {"median": float("nan"), "min": float("nan"), "max": float("nan")}
    return {
        "median": round(median(values), 3),
        "min": round(min(values), 3),
        "max": round(max(values), 3),
    }


def _cpu(runs: list[dict[str, Any]]) -> dict[str, float | None]:
    groups = runs[0]["cpu_ms_per_request"].keys() if runs else []
    out: dict[str, float | None] = {}
    for g in groups:
        values = [
            r["cpu_ms_per_request"][g] for r in runs if r["cpu_ms_per_request"][g] is not None
        ]
        out[g] = round(median(values), 3) if values else None
    return out


def summarise(
    runs: list[dict[str, Any]],
    workers: int,
    bare: str,
    gw: str,
    gw1: str,
    conns: int,
    writers: int,
    seconds: float,
    env: Mapping[str, str],
) -> dict[str, Any]:
    bare_runs, gw_runs, gw1_runs = _by(runs, bare), _by(runs, gw), _by(runs, gw1)
    same, spread = _by(runs, "same_platform"), _by(runs, "spread")
    ratios = [
        g["ok_per_s"] / b["ok_per_s"]
        for g, b in zip(gw_runs, bare_runs, strict=False)
        if b["ok_per_s"]
    ]
    sp = [
        s["ok_per_s"] / w["ok_per_s"] for s, w in zip(same, spread, strict=False) if w["ok_per_s"]
    ]
    gw_rps = [r["ok_per_s"] for r in gw_runs]
    bare_rps = [r["ok_per_s"] for r in bare_runs]
    ratio, same_over = _spread(ratios), _spread(sp)
    return {
        "pg_ingest_ratio_vs_bare_pg": ratio["median"],
        "pg_ingest_ratio_vs_bare_pg_min": ratio["min"],
        "pg_ingest_ratio_vs_bare_pg_max": ratio["max"],
        "pg_ingest_rps": round(median(gw_rps), 1),
        "pg_bare_rps": round(median(bare_rps), 1),
        "pg_ingest_rps_1w": round(median([r["ok_per_s"] for r in gw1_runs]), 1),
        f"pg_ingest_rps_{workers}w": round(median(gw_rps), 1),
        "pg_ingest_rps_range": _spread(gw_rps),
        "pg_bare_rps_range": _spread(bare_rps),
        "pg_ingest_p99_ms": median([r["p99_ms"] for r in gw_runs]),
        "pg_bare_p99_ms": median([r["p99_ms"] for r in bare_runs]),
        "pg_same_platform_over_spread": same_over["median"],
        "pg_same_platform_over_spread_min": same_over["min"],
        "pg_same_platform_over_spread_max": same_over["max"],
        "pg_same_platform_rps": round(median([r["ok_per_s"] for r in same]), 1),
        "pg_spread_rps": round(median([r["ok_per_s"] for r in spread]), 1),
        # CPU milliseconds per accepted request, per process group (median over the rounds).
        # `postgres` is every process of the server, which other users of it share.
        "pg_ingest_cpu_ms_per_request": {
            f"gateway_{workers}w": _cpu(gw_runs),
            "gateway_1w": _cpu(gw1_runs),
            f"bare_pg_{workers}w": _cpu(bare_runs),
        },
        "pg_ingest_load": {
            "tool": "wrk (1 thread, closed loop, pre-signed distinct deliveries)",
            "connections": conns,
            "writers_same_vs_spread": writers,
            "seconds_per_run": seconds,
            "repeats": len(gw_runs),
            "uvicorn_workers": workers,
            "processes": {
                gw: gw_runs[0]["processes"] if gw_runs else None,
                gw1: gw1_runs[0]["processes"] if gw1_runs else None,
                bare: bare_runs[0]["processes"] if bare_runs else None,
            },
            "commit": "one per request, fsync as the server has it (see postgres facts)",
            "downstream_consumers": "running",
            "webhook_rate_limit": gateway_rate_limit(env),
        },
        "pg_ingest_runs": runs,
    }
