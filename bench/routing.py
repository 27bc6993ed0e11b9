"""Routing latency in-process on the real database: 1,000 neutrals and 10,000 open cases."""

from __future__ import annotations

import importlib.util
import random
import time
import uuid
from pathlib import Path
from types import ModuleType
from typing import Any

from bench.report import summary_ms

ROOT = Path(__file__).resolve().parents[1]
NEUTRALS = 1000
OPEN_CASES = 10_000


def _seeder() -> ModuleType:
    """Mediation's own seeding (services/mediation/bench/routing.py): one source of the data."""
    path = ROOT / "services" / "mediation" / "bench" / "routing.py"
    spec = importlib.util.spec_from_file_location("mediation_routing_bench", path)
    if spec is None or spec.loader is None:
        raise ImportError(f"no mediation routing seeder at {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def measure(url: str, decisions: int, warmup: int = 10) -> list[float]:
    """Milliseconds per routing decision: one escalated case taken and routed, committed."""
    from mediation import service
    from mediation.settings import MediationSettings
    from odr_shared.db import make_engine, make_session_factory, utcnow
    from odr_shared.events import Actor, CaseEventV1, CaseStatus

    seeder = _seeder()
    settings = MediationSettings(database_url=url, environment="test", log_level="WARNING")
    engine = make_engine(url)
    sessions = make_session_factory(engine)
    rng = random.Random(11)  # reproducible test data
    timings: list[float] = []
    try:
        for i in range(warmup + decisions):
            data = CaseEventV1(
                case_id=f"bench-{uuid.uuid4().hex[:12]}",
                reference="KN-BENCH",
                order_id="o",
                platform_id="plt_bench",
                order_code="o",
                seller_id="s",
                status=CaseStatus.ESCALATED,
                category=rng.choice(seeder.CATEGORIES),
                # Mostly Vietnamese, some minority languages (fewer eligible neutrals).
                language=rng.choice(["vi"] * 8 + ["hmn", "km"]),
                actor=Actor(role="system"),
            )
            start = time.perf_counter()
            with sessions() as s, s.begin():
                service.take_escalated_case(s, data, utcnow(), settings)
            if i >= warmup:
                timings.append((time.perf_counter() - start) * 1000)
    finally:
        engine.dispose()
    return timings


def _one(url: str, decisions: int) -> dict[str, float]:
    from mediation import SERVICE_ROOT
    from odr_shared.migrate import upgrade

    upgrade(SERVICE_ROOT, url)
    _seeder().seed(url, neutrals=NEUTRALS, open_cases=OPEN_CASES)
    return summary_ms(measure(url, decisions))


def run_routing_bench(sqlite_file: Path, decisions: int) -> dict[str, Any]:
    """SQLite (the local default) always; PostgreSQL too when one is reachable."""
    from odr_shared.testing import postgres_available, temporary_postgres_database

    lite = _one(f"sqlite:///{sqlite_file}", decisions)
    out: dict[str, Any] = {
        "routing_p99_ms": lite["p99_ms"],
        "routing_p50_ms": lite["p50_ms"],
        "routing_decisions": decisions,
        "routing_setup": {
            "neutrals": NEUTRALS,
            "open_cases": OPEN_CASES,
            "database": "sqlite file",
            "timed": "mediation.service.take_escalated_case in one committed transaction",
        },
    }
    if postgres_available():
        with temporary_postgres_database("odr_bench_routing") as url:
            pg = _one(url, decisions)
        out["routing_postgres_p99_ms"] = pg["p99_ms"]
        out["routing_postgres_p50_ms"] = pg["p50_ms"]
    return out
