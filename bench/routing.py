"""Routing on PostgreSQL with concurrent router processes: 1,000 neutrals, 100,000 open cases.

A decision is `mediation.service.take_escalated_case` in one committed transaction (the case
taken in, its neutral chosen and its capacity taken, the assignment, decision, timeline and
outbox rows written). Each router is its own process with its own connection, as mediation
workers are.

- Paced (the headline): escalations arrive as a Poisson process at `rate_per_s` in all, spread
  evenly over the routers; each router decides its arrivals as they come. Latency is the
  committed transaction; the time from arrival to commit (queueing behind the router's previous
  decision included) is reported beside it.
- Saturated: every router decides back to back (closed loop), so the rate is the headroom.

The database is a copy of a seeded template (`odr_rt_tpl_...`, named by sizes and the alembic
head, kept for the next run); the copy is dropped at the end. With `sqlite_file`, the single
router figure on SQLite (the local default) is measured too.

    .venv/bin/python -m bench.routing [--decisions 2000] [--quick]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import multiprocessing
import os
import random
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PREFIX = "odr_rt"
# A peak design rate: Vietnam's e-commerce disputes that reach mediation average well under
# one a second nationally; 16/s is a sale-day burst with a wide margin.
RATE_PER_S = 16.0
WARMUP = 5  # decisions per router before the clock starts (connections, statement caches)


def _seeder() -> ModuleType:
    """Mediation's own seeding (services/mediation/bench/routing.py): one source of the data."""
    path = ROOT / "services" / "mediation" / "bench" / "routing.py"
    spec = importlib.util.spec_from_file_location("mediation_routing_bench", path)
    if spec is None or spec.loader is None:
        raise ImportError(f"no mediation routing seeder at {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _summary(values: list[float]) -> dict[str, float]:
    from bench.report import summary_ms

    return summary_ms(values)


# --- the router process ---------------------------------------------------------------------


def router(
    url: str,
    index: int,
    mode: str,
    arrivals: list[float],
    count: int,
    ready: Any,
    start: Any,
    start_at: Any,
    results: Any,
) -> None:
    """One router: warm up, report ready, wait for the start, then decide.

    mode "paced": decide at each offset in `arrivals` (seconds after the common start).
    mode "saturated": decide `count` times back to back. Puts one dict on `results`.
    """
    from sqlalchemy import event

    from mediation import service
    from mediation.settings import MediationSettings
    from odr_shared.db import make_engine, make_session_factory, utcnow

    seeder = _seeder()
    settings = MediationSettings(database_url=url, environment="test", log_level="WARNING")
    engine = make_engine(url, pool_size=1, max_overflow=0)
    sessions = make_session_factory(engine)
    statements = [0]

    @event.listens_for(engine, "before_cursor_execute")
    def _count(*_: Any) -> None:
        statements[0] += 1

    rng = random.Random(1000 + index)
    tag = f"{mode[0]}{index}-{uuid.uuid4().hex[:6]}"

    def decide(i: int) -> None:
        data = seeder.escalation(rng, f"rt-{tag}-{i}")
        with sessions() as s, s.begin():
            service.take_escalated_case(s, data, utcnow(), settings)

    try:
        for i in range(WARMUP):
            decide(-1 - i)
        ready.put(index)
        start.wait(120)
        t0 = start_at.value
        # Every router begins at the same instant t0, also when saturated (no arrival times):
        # the rate is counted from t0, so a router that began early would count a negative wall.
        time.sleep(max(0.0, t0 - time.time()))
        latencies: list[float] = []
        sojourns: list[float] = []
        statements[0] = 0
        cpu0 = time.process_time()
        plan = arrivals if mode == "paced" else [0.0] * count
        for i, offset in enumerate(plan):
            due = t0 + offset
            if mode == "paced":
                delay = due - time.time()
                if delay > 0:
                    time.sleep(delay)
            begin = time.time()
            decide(i)
            end = time.time()
            latencies.append((end - begin) * 1000)
            if mode == "paced":
                sojourns.append((end - due) * 1000)
        results.put(
            {
                "index": index,
                "latencies": latencies,
                "sojourns": sojourns,
                "statements": statements[0],
                "cpu_s": time.process_time() - cpu0,
                "end": time.time(),
                "t0": t0,
            }
        )
    except BaseException as exc:  # report, never hang the parent
        results.put({"index": index, "error": repr(exc)})
        raise
    finally:
        engine.dispose()


def _context() -> Any:
    # fork where there is one: the routers start with the code already imported. The parent
    # holds no database connection when it forks.
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("fork" if "fork" in methods else "spawn")


def _run_routers(
    url: str, routers: int, mode: str, plans: list[list[float]], counts: list[int]
) -> dict[str, Any]:
    ctx = _context()
    ready, results = ctx.Queue(), ctx.Queue()
    start, start_at = ctx.Event(), ctx.Value("d", 0.0)
    procs = [
        ctx.Process(
            target=router,
            args=(url, i, mode, plans[i], counts[i], ready, start, start_at, results),
            name=f"odr-router-{i}",
        )
        for i in range(routers)
    ]
    out: list[dict[str, Any]] = []
    try:
        for p in procs:
            p.start()
        for _ in procs:
            ready.get(timeout=300)
        start_at.value = time.time() + 0.2
        start.set()
        deadline = time.time() + 600 + (max(p[-1] for p in plans if p) if any(plans) else 0)
        while len(out) < len(procs):
            out.append(results.get(timeout=max(1.0, deadline - time.time())))
        for p in procs:
            p.join(30)
    finally:
        for p in procs:
            if p.is_alive():
                p.terminate()
                p.join(10)
        ready.close()
        results.close()
    errors = [r["error"] for r in out if "error" in r]
    if errors:
        raise RuntimeError(f"router failed: {errors[0]}")
    latencies = [v for r in out for v in r["latencies"]]
    n = len(latencies)
    wall = max(r["end"] for r in out) - out[0]["t0"]
    return {
        "latencies": latencies,
        "sojourns": [v for r in out for v in r["sojourns"]],
        "decisions": n,
        "wall_s": wall,
        "statements_per_decision": sum(r["statements"] for r in out) / max(1, n),
        "cpu_ms_per_decision": 1000 * sum(r["cpu_s"] for r in out) / max(1, n),
    }


def _load_average() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def _poisson(rate: float, n: int, rng: random.Random) -> list[float]:
    t, out = 0.0, []
    for _ in range(n):
        t += rng.expovariate(rate)
        out.append(t)
    return out


# --- databases ------------------------------------------------------------------------------


def _admin(postgres_url: str) -> Any:
    from sqlalchemy import create_engine

    return create_engine(postgres_url, isolation_level="AUTOCOMMIT")


def _exists(postgres_url: str, name: str) -> bool:
    from sqlalchemy import text

    admin = _admin(postgres_url)
    try:
        with admin.connect() as conn:
            return (
                conn.execute(
                    text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name}
                ).first()
                is not None
            )
    finally:
        admin.dispose()


def _names_like(postgres_url: str, pattern: str) -> list[str]:
    from sqlalchemy import text

    admin = _admin(postgres_url)
    try:
        with admin.connect() as conn:
            rows = conn.execute(
                text("SELECT datname FROM pg_database WHERE datname LIKE :p"), {"p": pattern}
            )
            return [r[0] for r in rows]
    finally:
        admin.dispose()


def _head() -> str:
    from alembic.script import ScriptDirectory

    from mediation import SERVICE_ROOT
    from odr_shared.migrate import alembic_config

    head = ScriptDirectory.from_config(alembic_config(SERVICE_ROOT, "sqlite://")).get_current_head()
    return str(head)


def _seeded(url: str, neutrals: int, open_cases: int, log: Callable[[str], None]) -> float:
    """Migrate and seed the database at `url`; seconds it took."""
    from sqlalchemy import create_engine, text

    from mediation import SERVICE_ROOT
    from odr_shared.migrate import upgrade

    began = time.perf_counter()
    upgrade(SERVICE_ROOT, url)
    _seeder().seed(url, neutrals=neutrals, open_cases=open_cases)
    if url.startswith("postgresql"):
        engine = create_engine(url, isolation_level="AUTOCOMMIT")
        try:
            with engine.connect() as conn:
                conn.execute(text("VACUUM ANALYZE"))
        finally:
            engine.dispose()
    took = time.perf_counter() - began
    log(f"routing: seeded {neutrals:,} neutrals and {open_cases:,} open cases in {took:.1f} s")
    return took


def _template(postgres_url: str, neutrals: int, open_cases: int, log: Callable[[str], None]) -> str:
    """The seeded template's name, built first if missing (under a temporary name, renamed
    when complete, so a half-built template is never used)."""
    from sqlalchemy import text

    from odr_shared.testing import (
        create_postgres_database,
        drop_postgres_database,
        postgres_database_url,
    )

    name = f"{PREFIX}_tpl_n{neutrals}_c{open_cases}_h{_head()}"
    if _exists(postgres_url, name):
        log(f"routing: reusing the seeded template {name}")
        return name
    # Templates of these sizes at an older schema are of no further use.
    for stale in _names_like(postgres_url, f"{PREFIX}_tpl_n{neutrals}_c{open_cases}_h%"):
        log(f"routing: dropping the template of an older schema, {stale}")
        drop_postgres_database(postgres_url, stale)
    building = f"{PREFIX}_build_{uuid.uuid4().hex[:8]}"
    create_postgres_database(postgres_url, building)
    try:
        _seeded(postgres_database_url(postgres_url, building), neutrals, open_cases, log)
        admin = _admin(postgres_url)
        try:
            with admin.connect() as conn:
                conn.execute(text(f'ALTER DATABASE "{building}" RENAME TO "{name}"'))
        finally:
            admin.dispose()
    except Exception:
        drop_postgres_database(postgres_url, building)
        if _exists(postgres_url, name):  # another run built it meanwhile
            return name
        raise
    return name


def _copy(postgres_url: str, template: str, name: str) -> None:
    from sqlalchemy import text

    admin = _admin(postgres_url)
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}" TEMPLATE "{template}"'))
    finally:
        admin.dispose()


# --- the benchmark --------------------------------------------------------------------------


def run_routing_bench(
    *,
    postgres_url: str,
    sqlite_file: Path | None,
    decisions: int,
    routers: int = 8,
    neutrals: int = 1000,
    open_cases: int = 100_000,
    log: Callable[[str], None] = print,
    rate_per_s: float = RATE_PER_S,
    saturated_decisions: int | None = None,
    cache_template: bool = True,
) -> dict[str, Any]:
    """Paced and saturated routing on PostgreSQL with `routers` processes; SQLite's single
    router beside it when `sqlite_file` is given. `postgres_url` is an admin URL: this creates,
    and at the end drops, its own database (`odr_rt_...`)."""
    from odr_shared.testing import (
        create_postgres_database,
        drop_postgres_database,
        postgres_database_url,
    )

    saturated = saturated_decisions or max(routers * 10, decisions // 2)
    name = f"{PREFIX}_{uuid.uuid4().hex[:10]}"
    template = None
    out: dict[str, Any] = {}
    try:
        if cache_template:
            template = _template(postgres_url, neutrals, open_cases, log)
            _copy(postgres_url, template, name)
            seed_s = None
        else:
            create_postgres_database(postgres_url, name)
            seed_s = _seeded(postgres_database_url(postgres_url, name), neutrals, open_cases, log)
        url = postgres_database_url(postgres_url, name)
        rng = random.Random(5)
        per_router = [
            decisions // routers + (1 if i < decisions % routers else 0) for i in range(routers)
        ]
        plans = [_poisson(rate_per_s / routers, n, rng) for n in per_router]
        log(
            f"routing: {routers} routers, {decisions} decisions at {rate_per_s:g}/s (Poisson) "
            f"on PostgreSQL"
        )
        load_before = _load_average()
        paced = _run_routers(url, routers, "paced", plans, per_router)
        sat_counts = [
            saturated // routers + (1 if i < saturated % routers else 0) for i in range(routers)
        ]
        log(f"routing: {routers} routers, {saturated} decisions back to back (saturation)")
        sat = _run_routers(url, routers, "saturated", [[] for _ in range(routers)], sat_counts)
        load_after = _load_average()
    finally:
        drop_postgres_database(postgres_url, name)
    p, s = _summary(paced["latencies"]), _summary(sat["latencies"])
    sojourn = _summary(paced["sojourns"])
    out.update(
        {
            "routing_pg_p99_ms": p["p99_ms"],
            "routing_pg_p50_ms": p["p50_ms"],
            "routing_pg_decisions": paced["decisions"],
            "routing_pg_rate_per_s": round(paced["decisions"] / paced["wall_s"], 2),
            "routing_pg_arrival_to_commit_p99_ms": sojourn["p99_ms"],
            "routing_pg_saturated_per_s": round(sat["decisions"] / sat["wall_s"], 1),
            "routing_pg_saturated_p99_ms": s["p99_ms"],
            "routing_pg_saturated_p50_ms": s["p50_ms"],
            "routing_pg_statements_per_decision": round(paced["statements_per_decision"], 2),
            "routing_pg_cpu_ms_per_decision": round(paced["cpu_ms_per_decision"], 2),
        }
    )
    setup: dict[str, Any] = {
        "database": "postgresql (fsync and synchronous_commit as the server has them)",
        "routers": routers,
        "router_kind": "processes, one connection each",
        "neutrals": neutrals,
        "open_cases": open_cases,
        "timed": (
            "mediation.service.take_escalated_case in one committed transaction per decision "
            "(case in, candidates read, capacity taken, assignment/decision/timeline/outbox "
            "rows written)"
        ),
        "paced": (
            f"Poisson arrivals at {rate_per_s:g}/s in all, {rate_per_s / routers:g}/s per router"
        ),
        "saturated": f"{saturated} decisions back to back over {routers} routers",
        "warmup_per_router": WARMUP,
        "database_name": name,
        "dropped": True,
        "template": template,
        "template_kept": template is not None,
        "seed_s": None if seed_s is None else round(seed_s, 1),
        # The machine's 1-minute load average before and after the PostgreSQL runs, and its
        # cores: on a shared machine the routers queue for CPU, which the latencies include.
        "load_average_1m": [load_before, load_after],
        "cpu_count": os.cpu_count(),
    }
    if sqlite_file is not None:
        from mediation import SERVICE_ROOT
        from odr_shared.migrate import upgrade

        lite_url = f"sqlite:///{sqlite_file}"
        upgrade(SERVICE_ROOT, lite_url)
        _seeder().seed(lite_url, neutrals=neutrals, open_cases=open_cases)
        log(f"routing: one router on SQLite, {decisions} decisions back to back")
        lite = _summary(_seeder().measure(lite_url, decisions))
        out["routing_p99_ms"] = lite["p99_ms"]
        out["routing_p50_ms"] = lite["p50_ms"]
        out["routing_decisions"] = decisions
        setup["sqlite"] = "one router in-process on a SQLite file, closed loop"
    out["routing_setup"] = setup
    return out


def main() -> None:
    from odr_shared.testing import POSTGRES_ADMIN_URL

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--decisions", type=int, default=2000)
    ap.add_argument("--quick", action="store_true", help="300 decisions")
    ap.add_argument("--routers", type=int, default=8)
    ap.add_argument("--rate", type=float, default=RATE_PER_S)
    ap.add_argument("--open-cases", type=int, default=100_000)
    ap.add_argument("--sqlite-file", type=Path, default=None)
    args = ap.parse_args()
    result = run_routing_bench(
        postgres_url=POSTGRES_ADMIN_URL,  # ODR_TEST_POSTGRES_URL, or the local default
        sqlite_file=args.sqlite_file,
        decisions=300 if args.quick else args.decisions,
        routers=args.routers,
        open_cases=args.open_cases,
        rate_per_s=args.rate,
        log=lambda m: print(m, file=sys.stderr),
    )
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
