"""The order-lookup benchmark end to end on a tiny PostgreSQL database (behaviour, not timing)."""

from __future__ import annotations

import importlib
import os
import sys
import uuid
from pathlib import Path
from types import ModuleType

import pytest
from sqlalchemy import create_engine, text

ROOT = Path(__file__).resolve().parents[2]
KEYS = (
    "lookup_p99_ms_10m_orders",
    "lookup_p50_ms",
    "lookup_orders",
    "lookup_rate_per_s",
    "lookup_requests",
    "lookup_errors",
    "lookup_seed_s",
    "lookup_plan",
)


def _lookup() -> ModuleType:
    # bench/ is a top-level package beside the workspace members, not an installed one.
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    return importlib.import_module("bench.lookup")


def _databases(admin_url: str, prefix: str) -> set[str]:
    engine = create_engine(admin_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                text("SELECT datname FROM pg_database WHERE starts_with(datname, :p)"),
                {"p": prefix},
            ).scalars()
            return set(rows)
    finally:
        engine.dispose()


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_codes_are_unique_per_marketplace_and_misses_look_like_hits() -> None:
    lookup = _lookup()
    ids = {(lookup.order_platform(n), lookup.order_code(n)) for n in range(4000)}
    assert len(ids) == 4000
    assert len(set(lookup.PLATFORM_IDS)) == 4
    shapes = {lookup.order_platform(n): len(lookup.order_code(n)) for n in range(4)}
    assert sorted(shapes.values()) == [10, 14, 15, 18]
    # A code past the seeded range has its marketplace's shape and is in no seeded order.
    assert len(lookup.order_code(4000 + 4 * 4000)) == len(lookup.order_code(4000))
    assert (lookup.order_platform(4000), lookup.order_code(4000 + 4 * 4000)) not in ids


@pytest.mark.postgres
def test_lookup_bench_seeds_once_serves_hits_and_misses_and_cleans_up(
    postgres_admin_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    lookup = _lookup()
    prefix = f"odr_lk_t{uuid.uuid4().hex[:8]}"
    monkeypatch.setattr(lookup, "PREFIX", prefix)
    logs: list[str] = []
    try:
        first = lookup.run_lookup_bench(
            postgres_url=postgres_admin_url, orders=2000, rate=40, seconds=3, log=logs.append
        )
        assert set(KEYS) <= set(first)
        assert first["lookup_orders"] == 2000
        assert first["lookup_seed_cached"] is False
        # Seeded orders answer 200, well-formed codes of no order 404, nothing else.
        assert first["lookup_errors"] == 0
        assert set(first["lookup_statuses"]) == {"hit_200", "miss_404"}
        assert sum(first["lookup_statuses"].values()) == first["lookup_requests"] > 60
        assert first["lookup_p50_ms"] <= first["lookup_p99_ms_10m_orders"]
        # The plan is the endpoint's own statements, the order read through its unique index.
        plan = first["lookup_plan"]
        assert any(
            line.startswith("order: Index Scan using ux_orders_platform_code") for line in plan
        )
        assert any(line.startswith("history: ") for line in plan)
        assert any(line.startswith("cases: ") for line in plan)
        # The API is stopped and the working copy dropped; only the cached template remains.
        assert _gone(first["lookup_api_pid"])
        template = first["lookup_template"]
        assert template.startswith(f"{prefix}_tpl_2000_")
        assert _databases(postgres_admin_url, prefix) == {template}

        second = lookup.run_lookup_bench(
            postgres_url=postgres_admin_url, orders=2000, rate=40, seconds=2, log=logs.append
        )
        assert second["lookup_seed_cached"] is True
        assert second["lookup_seed_s"] == first["lookup_seed_s"]
        assert second["lookup_template"] == template
        assert second["lookup_errors"] == 0
        assert _gone(second["lookup_api_pid"])
        assert _databases(postgres_admin_url, prefix) == {template}
        assert any("cached" in line for line in logs)
    finally:
        for name in _databases(postgres_admin_url, prefix):
            lookup.drop_template(postgres_admin_url, name)
    assert _databases(postgres_admin_url, prefix) == set()
