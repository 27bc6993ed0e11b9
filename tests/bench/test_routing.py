"""The routing benchmark end to end at tiny sizes on PostgreSQL: its keys, nothing left behind.

Behaviour only: no figure is asserted against a goal here (that is the benchmark's job).
"""

from __future__ import annotations

import importlib
import math
import multiprocessing
import sys
from pathlib import Path
from types import ModuleType

from sqlalchemy import create_engine, text

ROOT = Path(__file__).resolve().parents[2]

KEYS = {
    "routing_pg_p99_ms",
    "routing_pg_p50_ms",
    "routing_pg_decisions",
    "routing_pg_rate_per_s",
    "routing_pg_saturated_per_s",
    "routing_pg_saturated_p99_ms",
    "routing_pg_statements_per_decision",
    "routing_p99_ms",
    "routing_p50_ms",
    "routing_setup",
}


def _routing() -> ModuleType:
    # bench/ is a top-level package beside the workspace members, not an installed one.
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    return importlib.import_module("bench.routing")


def _databases(admin_url: str, names: list[str]) -> list[str]:
    engine = create_engine(admin_url)
    try:
        with engine.connect() as conn:
            return [
                r[0]
                for r in conn.execute(
                    text("SELECT datname FROM pg_database WHERE datname = ANY(:n)"), {"n": names}
                )
            ]
    finally:
        engine.dispose()


def _children() -> list[int]:
    """Processes this one started that are still alive (router processes would show here)."""
    me = Path("/proc/self/task")
    if not me.exists():
        return [p.pid or 0 for p in multiprocessing.active_children()]
    out: list[int] = []
    for task in me.iterdir():
        children = task / "children"
        if children.exists():
            out += [int(pid) for pid in children.read_text().split()]
    return out


def test_the_routing_bench_reports_its_keys_and_leaves_nothing_running(
    postgres_admin_url: str, tmp_path: Path
) -> None:
    before = set(_children())
    result = _routing().run_routing_bench(
        postgres_url=postgres_admin_url,
        sqlite_file=tmp_path / "routing.db",
        decisions=12,
        routers=2,
        neutrals=20,
        open_cases=200,
        rate_per_s=40,
        saturated_decisions=8,
        cache_template=False,  # nothing kept: the test's database is dropped with the run
        log=lambda _m: None,
    )
    assert set(result) >= KEYS
    assert result["routing_pg_decisions"] == 12
    for key in KEYS - {"routing_setup", "routing_pg_decisions"}:
        assert isinstance(result[key], float | int), key
        assert not math.isnan(result[key]), key
        assert result[key] > 0, key
    setup = result["routing_setup"]
    assert setup["routers"] == 2
    assert setup["open_cases"] == 200
    assert setup["template"] is None
    assert setup["database_name"].startswith("odr_rt_")
    # The routers are gone and so is the database they routed on.
    assert multiprocessing.active_children() == []
    assert set(_children()) <= before
    assert _databases(postgres_admin_url, [setup["database_name"]]) == []
