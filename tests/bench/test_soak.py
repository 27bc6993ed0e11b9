"""The soak and the broker-outage benchmarks, short: they run end to end and leave nothing behind.

Behaviour only (keys, nothing missing, the plot, no process or database left); the figures
themselves are the benchmark's to report, never asserted here.
"""

from __future__ import annotations

import importlib
import os
import sys
import tempfile
import uuid
from pathlib import Path
from types import ModuleType

import pytest
from sqlalchemy import create_engine, text

from odr_cli.stack import Ports, Stack
from odr_shared.testing import POSTGRES_ADMIN_URL, free_port

ROOT = Path(__file__).resolve().parents[2]


def _soak() -> ModuleType:
    # bench/ is a top-level package beside the workspace members, not an installed one.
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    return importlib.import_module("bench.soak")


def _children() -> list[int]:
    """Live processes whose parent is this one (the stack's and the load's)."""
    me, out = os.getpid(), []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            raw = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = raw[raw.rindex(")") + 2 :].split()
        if int(fields[1]) == me and fields[0] != "Z":
            out.append(int(entry))
    return out


def _databases(prefix: str) -> set[str]:
    engine = create_engine(POSTGRES_ADMIN_URL)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                text("SELECT datname FROM pg_database WHERE datname LIKE :p"), {"p": f"{prefix}%"}
            )
            return {r[0] for r in rows}
    finally:
        engine.dispose()


def test_a_broker_port_puts_tansu_behind_the_advertised_port(tmp_path: Path) -> None:
    ports, behind = Ports.free(), free_port()
    stack = Stack(tmp_path, ports, broker_port=behind)
    tansu = next(p for p in stack._argv() if p.name == "tansu").argv
    assert tansu[tansu.index("--listener-url") + 1] == f"tcp://127.0.0.1:{behind}"
    assert tansu[tansu.index("--advertised-listener-url") + 1] == f"tcp://127.0.0.1:{ports.kafka}"
    assert stack.bootstrap == f"127.0.0.1:{ports.kafka}"
    plain = next(p for p in Stack(tmp_path, ports)._argv() if p.name == "tansu").argv
    assert plain[plain.index("--listener-url") + 1] == f"tcp://127.0.0.1:{ports.kafka}"


def test_rss_growth_is_per_service_process_from_the_warm_up_and_the_broker_apart() -> None:
    soak = _soak()
    rows = [
        {"t_s": 5.0, "rss_mb": {"gateway-api": 50.0, "complaints-worker": 80.0, "tansu": 10.0}},
        {"t_s": 60.0, "rss_mb": {"gateway-api": 100.0, "complaints-worker": 100.0, "tansu": 20.0}},
        {"t_s": 600.0, "rss_mb": {"gateway-api": 105.0, "complaints-worker": 99.0, "tansu": 90.0}},
    ]
    growth, broker = soak.rss_growth(rows, 60.0)
    assert growth == {"gateway-api": 5.0, "complaints-worker": -1.0}
    assert broker == (20.0, 90.0)


def test_the_soak_plot_is_written_from_a_series(tmp_path: Path) -> None:
    soak = _soak()
    series = [
        {
            "t_s": 5.0 * i,
            "offered_per_s": 1000.0,
            "achieved_per_s": 990.0,
            "http_p99_ms": 20.0,
            "lookup_p99_ms": None if i == 0 else 300.0,
            "lag_max": None if i == 1 else 40,
            "outbox_backlog": 10,
        }
        for i in range(4)
    ]
    soak.plot_soak(series, tmp_path / "soak.png", 1000.0)
    assert (tmp_path / "soak.png").read_bytes().startswith(b"\x89PNG")


SOAK_KEYS = {
    "soak_seconds",
    "soak_rate_per_s",
    "soak_achieved_per_s",
    "soak_webhook_to_lookup_p99_ms",
    "soak_missing",
    "soak_max_lag",
    "soak_rss_growth_pct",
    "soak_rss_growth_pct_max",
    "soak_broker_rss_mb",
    "soak_series",
}
OUTAGE_KEYS = {"outage_recovery_s", "outage_missing", "outage_s", "outage_rate_per_s"}


@pytest.mark.postgres
@pytest.mark.timeout(600)
def test_a_short_soak_on_postgresql(tmp_path: Path) -> None:
    soak = _soak()
    prefix = f"odr_sk_t{uuid.uuid4().hex[:6]}"
    before = _children()
    with tempfile.TemporaryDirectory(prefix="odr-soak-test-") as var:
        # The production default rate limit: 50/s for 20 s stays inside it.
        stack = Stack(
            Path(var),
            Ports.free(),
            database="postgres",
            postgres_url=POSTGRES_ADMIN_URL,
            database_prefix=prefix,
            drop_databases=True,
            extra_env=dict(soak.BENCH_ENV),
        )
        stack.start()
        try:
            platform_id, secret = soak.register_platform(stack)
            result = soak.run_soak(
                stack=stack,
                platform_id=platform_id,
                secret=secret,
                rate=50,
                seconds=20,
                out_dir=tmp_path,
                log=lambda _m: None,
            )
        finally:
            stack.stop()
    assert set(result) >= SOAK_KEYS
    assert result["soak_missing"] == 0
    assert result["soak_accepted"] == result["soak_offered"] == 1000
    assert result["soak_webhook_to_lookup_samples"] == 100
    assert result["soak_max_lag"] is not None
    assert set(result["soak_rss_growth_pct"]) == {
        f"{s}-{r}"
        for s in ("gateway", "complaints", "mediation", "notifications")
        for r in ("api", "worker")
    }
    assert len(result["soak_series"]) >= 3
    assert (tmp_path / "soak.png").read_bytes().startswith(b"\x89PNG")
    assert _children() == before
    assert _databases(prefix) == set()


@pytest.mark.postgres
@pytest.mark.timeout(600)
def test_a_short_broker_outage_on_postgresql(tmp_path: Path) -> None:
    soak = _soak()
    before_dbs = _databases("odr_sk_")
    before = _children()
    result = soak.run_outage(
        postgres_url=POSTGRES_ADMIN_URL,
        rate=20,
        outage_s=10,
        out_dir=tmp_path,
        log=lambda _m: None,
    )
    assert set(result) >= OUTAGE_KEYS
    assert result["outage_missing"] == 0
    assert result["outage_recovery_s"] is not None
    # The gateway kept accepting while the broker was away: its outbox held them.
    assert result["outage_backlog_at_restore"] > 0
    assert result["outage_dead_processes"] == []
    assert _children() == before
    assert _databases("odr_sk_") <= before_dbs
