"""The benchmark's arithmetic and report on synthetic figures, and one short real ingest run.

No timing is asserted: the real run checks that the figures exist and nothing is left behind.
"""

from __future__ import annotations

import importlib
import json
import math
import os
import secrets
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from odr_shared.testing import (
    create_postgres_database,
    drop_postgres_database,
    postgres_database_url,
)

ROOT = Path(__file__).resolve().parents[2]


def _bench(module: str) -> ModuleType:
    # bench/ is a top-level package beside the workspace members, not an installed one.
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    return importlib.import_module(f"bench.{module}")


WRK_OUTPUT = """Running 10s test @ http://127.0.0.1:5000/v1/webhooks/plt_x
  1 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    20.15ms    5.02ms  80.00ms   90.00%
  Latency Distribution
     50%   19.00ms
     75%   22.00ms
     90%   26.00ms
     99%   41.50ms
  15000 requests in 10.00s, 3.00MB read
  Non-2xx or 3xx responses: 1500
Requests/sec:   1500.00
Transfer/sec:    300.00KB
"""


def test_percentiles_interpolate_and_summaries_name_them() -> None:
    report = _bench("report")
    values = [float(v) for v in range(1, 101)]
    assert report.percentile(values, 50) == 50.5
    assert math.isclose(report.percentile(values, 99), 99.01)
    assert report.percentile([7.0], 99) == 7.0
    assert math.isnan(report.percentile([], 50))
    s = report.summary_ms(list(reversed(values)))
    assert (s["count"], s["p50_ms"], s["max_ms"]) == (100, 50.5, 100.0)


def test_goals_compare_in_the_right_direction() -> None:
    report = _bench("report")
    assert report.goal_met("pg_ingest_ratio_vs_bare_pg", 0.6) is True
    assert report.goal_met("pg_ingest_ratio_vs_bare_pg", 0.59) is False
    assert report.goal_met("pg_same_platform_over_spread", 0.95) is True
    assert report.goal_met("routing_pg_p99_ms", 12.0) is True
    assert report.goal_met("case_to_sms_p99_ms", 2500.0) is False
    assert report.goal_met("soak_missing", 0) is True
    assert report.goal_met("soak_missing", 3) is False
    assert report.goal_met("routing_pg_p99_ms", None) is None
    assert report.goal_met("routing_pg_p99_ms", float("nan")) is None


def test_wrk_summary_counts_only_2xx_answers() -> None:
    common = _bench("common")
    parsed = common.parse_wrk(WRK_OUTPUT)
    assert parsed["requests"] == 15000
    assert parsed["non_2xx"] == 1500
    assert parsed["ok_per_s"] == 1350.0
    assert parsed["p99_ms"] == 41.5


def test_report_shows_goals_phases_machine_and_soak_plot(tmp_path: Path) -> None:
    report = _bench("report")
    doc = {
        "pg_ingest_ratio_vs_bare_pg": 0.62,
        "pg_ingest_rps": 1240.0,
        "pg_ingest_load": {"tool": "wrk", "connections": 32},
        "pg_ingest_runs": [
            {
                "round": 0,
                "case": "bare_pg_2w",
                "processes": 3,
                "connections": 32,
                "ok_per_s": 2000.0,
                "p99_ms": 30.0,
                "non_2xx": 0,
                "cpu_ms_per_request": {"api": 0.8},
            }
        ],
        "pg_ingest_cpu_ms_per_request": {
            "gateway_2w": {"api": 1.5, "postgres": 0.4},
            "bare_pg_2w": {"api": 0.8, "postgres": 0.2},
        },
        "batch_ratio_vs_raw_producer": 0.31,
        "soak_seconds": 600,
        "soak_missing": 0,
        "machine": {
            "cpu_count": 2,
            "cpu_model": "Synthetic CPU",
            "postgres": {"version": "16.4", "fsync": "on", "synchronous_commit": "on"},
        },
        "git_commit": "0123456789abcdef",
        "measured_at": "2026-11-22T08:00:00+00:00",
        "mode": "quick",
        "phases": ["ingest", "batch", "soak"],
        "notes": ["synthetic"],
    }
    (tmp_path / "soak.png").write_bytes(b"\x89PNG")
    report.write_outputs(doc, tmp_path)
    assert json.loads((tmp_path / "latest.json").read_text()) == doc
    md = (tmp_path / "report.md").read_text()
    assert "| `pg_ingest_ratio_vs_bare_pg` | 0.62 | >= 0.6 | yes |" in md
    assert "| `batch_ratio_vs_raw_producer` | 0.31 | >= 0.5 | no |" in md
    assert "| `soak_seconds` | 600 | >= 600 | yes |" in md
    assert "| `soak_missing` | 0 | <= 0 | yes |" in md
    assert "| `routing_pg_p99_ms` | not measured | <= 50 | - |" in md
    assert "| `outage_recovery_s` | not measured | <= 120 | - |" in md
    assert "## Ingest on PostgreSQL" in md
    assert "| 0 | bare_pg_2w | 3 | 32 | 2000.0 | 30.0 | 0 | api 0.8 |" in md
    assert "| server under load | api | postgres |" in md
    assert "| gateway_2w | 1.5 | 0.4 |" in md
    assert "Synthetic CPU" in md
    assert "fsync on" in md
    assert "![soak](soak.png)" in md
    assert "synthetic" in md
    assert not (tmp_path / "latency_vs_load.png").exists()


def _processes_with(marker: str) -> list[int]:
    """Live processes whose environment mentions `marker` (the run's database names)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                if marker.encode() in (entry / "environ").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


@pytest.mark.e2e
@pytest.mark.postgres
def test_a_short_ingest_run_on_postgres_gives_every_figure_and_leaves_nothing(
    postgres_admin_url: str,
) -> None:
    ingest = _bench("ingest")
    common = _bench("common")
    prefix = f"odr_bn_t{secrets.token_hex(4)}"
    gateway_db = f"{prefix}_gateway"
    create_postgres_database(postgres_admin_url, gateway_db)
    env = {
        **os.environ,
        "GATEWAY_DATABASE_URL": postgres_database_url(postgres_admin_url, gateway_db),
        "ENVIRONMENT": "test",
        "LOG_LEVEL": "WARNING",
    }
    try:
        migrate = "from gateway.main import migrate; migrate()"
        subprocess.run([sys.executable, "-c", migrate], env=env, check=True)
        results, _notes = ingest.run_ingest(
            env=env,
            postgres_url=postgres_admin_url,
            database_prefix=prefix,
            seconds=1,
            repeats=1,
            log=lambda _msg: None,
        )
    finally:
        common.dispose_engines()
        drop_postgres_database(postgres_admin_url, gateway_db)
    for key in (
        "pg_ingest_rps",
        "pg_bare_rps",
        "pg_ingest_ratio_vs_bare_pg",
        "pg_ingest_rps_1w",
        "pg_ingest_rps_2w",
        "pg_same_platform_over_spread",
        "pg_ingest_cpu_ms_per_request",
    ):
        assert key in results, key
    assert results["pg_ingest_rps"] > 0
    assert results["pg_bare_rps"] > 0
    cases = {r["case"] for r in results["pg_ingest_runs"]}
    assert cases == {"bare_pg_2w", "gateway_2w", "gateway_1w", "same_platform", "spread"}
    assert all(r["cpu_s"]["api"] > 0 for r in results["pg_ingest_runs"])
    # Every server process is gone, and so is the bare app's database.
    assert _processes_with(prefix) == []
    names = common.sql(
        postgres_admin_url, "SELECT datname FROM pg_database WHERE datname LIKE :p", p=prefix + "%"
    )
    common.dispose_engines()
    assert names == []
