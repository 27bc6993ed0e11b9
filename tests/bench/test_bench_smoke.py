"""The benchmark's arithmetic and outputs on synthetic numbers (no load, no timing)."""

from __future__ import annotations

import importlib
import json
import math
import sys
from pathlib import Path
from types import ModuleType

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
    assert report.goal_met("ingest_ratio_vs_bare_fastapi", 0.6) is True
    assert report.goal_met("ingest_ratio_vs_bare_fastapi", 0.4) is False
    assert report.goal_met("routing_p99_ms", 12.0) is True
    assert report.goal_met("case_to_sms_p99_ms", 2500.0) is False
    assert report.goal_met("routing_p99_ms", None) is None
    assert report.goal_met("routing_p99_ms", float("nan")) is None


def test_top_frames_counts_inclusive_samples_once_per_stack() -> None:
    report = _bench("report")
    collapsed = "main;store;encrypt 30\nmain;verify 50\nmain;store;store 20\nnot a stack line\n"
    frames = dict(report.top_frames(collapsed, 3))
    assert frames == {"main": 100.0, "verify": 50.0, "store": 50.0}


def test_wrk_summary_counts_only_2xx_answers() -> None:
    run = _bench("run")
    parsed = run.parse_wrk(WRK_OUTPUT)
    assert parsed["requests"] == 15000
    assert parsed["non_2xx"] == 1500
    assert parsed["ok_per_s"] == 1350.0
    assert parsed["p99_ms"] == 41.5


def test_outputs_json_report_and_plot(tmp_path: Path) -> None:
    report = _bench("report")
    curve = [
        {
            "offered_rps": r,
            "achieved_rps": r,
            "p50_ms": 5.0 + r / 100,
            "p99_ms": 20 + r / 10,
            "ok": r * 5,
            "errors": 0,
        }
        for r in (50, 100, 200)
    ]
    doc = {
        "ingest_ratio_vs_bare_fastapi": 0.62,
        "batch_ratio_vs_raw_producer": 0.31,
        "webhook_to_lookup_p99_ms": 240.0,
        "ingest_gateway_rps": 1800.0,
        "ingest_load": {"tool": "wrk", "connections": 32},
        "curves": {"gateway_webhook": curve},
        "profiles": {"gateway": [("receive (gateway/ingest.py:150)", 61.0)]},
        "before": {"ingest_ratio_vs_bare_fastapi": 0.07},
        "cpu_count": 2,
        "git_commit": "0123456789abcdef",
        "python": "3.11",
        "measured_at": "2026-11-22T08:00:00+00:00",
        "notes": ["synthetic"],
    }
    report.write_outputs(doc, tmp_path)
    assert json.loads((tmp_path / "latest.json").read_text()) == json.loads(json.dumps(doc))
    png = (tmp_path / "latency_vs_load.png").read_bytes()
    assert png.startswith(b"\x89PNG")
    assert len(png) > 1000
    md = (tmp_path / "report.md").read_text()
    assert "| `ingest_ratio_vs_bare_fastapi` | 0.62 | >= 0.5 | yes |" in md
    assert "| `batch_ratio_vs_raw_producer` | 0.31 | >= 0.5 | no |" in md
    assert "| `routing_p99_ms` | not measured | <= 50 | - |" in md
    assert "| 200 | 200 | 7.0 | 40.0 | 0 |" in md
    assert "What limits each figure" in md
    assert "0.07" in md
    assert "synthetic" in md
