"""Benchmark arithmetic and output: percentiles, the goals, the Markdown report."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

# key -> (direction, goal). A key the run did not produce shows as "not measured".
GOALS: dict[str, tuple[str, float]] = {
    "pg_ingest_ratio_vs_bare_pg": (">=", 0.6),
    "pg_same_platform_over_spread": (">=", 0.9),
    "soak_seconds": (">=", 600),
    "soak_achieved_per_s": (">=", 990),
    "soak_webhook_to_lookup_p99_ms": ("<=", 1000),
    "soak_missing": ("<=", 0),
    "soak_rss_growth_pct_max": ("<=", 10),
    "outage_recovery_s": ("<=", 120),
    "outage_missing": ("<=", 0),
    "lookup_p99_ms_10m_orders": ("<=", 20),
    "routing_pg_p99_ms": ("<=", 50),
    "batch_ratio_vs_raw_producer": (">=", 0.5),
    "case_to_sms_p99_ms": ("<=", 2000),
}

# Report sections: phase -> (title, what it measures, key prefixes).
PHASES: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "ingest": (
        "Ingest on PostgreSQL",
        "Closed loop (wrk, pre-signed distinct webhooks): the gateway's webhook API against a "
        "bare FastAPI app doing one INSERT and commit per request, same uvicorn worker count, "
        "same server; consumers running, production rate limits. Pairs measured interleaved.",
        ("pg_",),
    ),
    "batch": (
        "Batch ingest against a raw producer",
        "1,000-event batches through the gateway until every event is on orders.events, against "
        "kafka-python sending the same CloudEvents straight to the broker.",
        ("batch_",),
    ),
    "sms": (
        "Case opened to SMS sent",
        "Open loop: POST /v1/cases answered 201 to the case.opened SMS delivery's sent_at.",
        ("case_",),
    ),
    "soak": ("Soak", "A steady webhook load on the stack for a long while.", ("soak_",)),
    "outage": ("Database outage", "PostgreSQL stopped under load, then back.", ("outage_",)),
    "lookup": ("Order lookup", "Lookups against a large orders table.", ("lookup_",)),
    "routing": ("Routing", "Routing decisions on PostgreSQL.", ("routing_",)),
}
# Run-level keys the report shows elsewhere (or not at all).
META = {"machine", "git_commit", "measured_at", "mode", "phases", "duration_s", "notes"}


def percentile(values: list[float], p: float) -> float:
    """Linear-interpolated percentile (p in 0..100); NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = (len(ordered) - 1) * p / 100
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def summary_ms(values: list[float]) -> dict[str, float]:
    return {
        "count": len(values),
        "p50_ms": round(percentile(values, 50), 2),
        "p90_ms": round(percentile(values, 90), 2),
        "p99_ms": round(percentile(values, 99), 2),
        "max_ms": round(max(values), 2) if values else float("nan"),
    }


def goal_met(key: str, value: Any) -> bool | None:
    if not isinstance(value, int | float) or isinstance(value, bool) or math.isnan(value):
        return None
    op, goal = GOALS[key]
    return value >= goal if op == ">=" else value <= goal


def _shown(value: Any) -> str:
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def _cpu_table(cpu: dict[str, dict[str, float | None]]) -> list[str]:
    """CPU ms per accepted request: a row per server under load, a column per process group."""
    order = ["api", "postgres", "gateway_relay", "consumers", "tansu"]
    found = {g for per in cpu.values() for g in per}
    groups = [g for g in order if g in found] + sorted(found - set(order))
    lines = [
        "CPU milliseconds per accepted request (median over the rounds; `postgres` is the "
        "whole server, which other users of it share; the stack's consumers and relay work "
        "through the gateway's events, during and after each run):",
        "",
        "| server under load | " + " | ".join(groups) + " |",
        "| --- |" + " --- |" * len(groups),
    ]
    for server, per in cpu.items():
        lines.append(f"| {server} | " + " | ".join(str(per.get(g, "-")) for g in groups) + " |")
    return lines


def _ingest_runs(runs: list[dict[str, Any]]) -> list[str]:
    lines = [
        "| round | case | processes | connections | 2xx/s | p99 ms | non-2xx | CPU ms/request |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in runs:
        cpu = ", ".join(f"{k} {v}" for k, v in (r.get("cpu_ms_per_request") or {}).items())
        lines.append(
            f"| {r.get('round')} | {r.get('case')} | {r.get('processes')} | "
            f"{r.get('connections')} | {r.get('ok_per_s')} | {r.get('p99_ms')} | "
            f"{r.get('non_2xx')} | {cpu} |"
        )
    return lines


def render_report(doc: dict[str, Any], out: Path | None = None) -> str:
    machine = doc.get("machine") or {}
    pg = machine.get("postgres") or {}
    lines = [
        "# Benchmark report",
        "",
        f"Commit `{str(doc.get('git_commit', 'unknown'))[:12]}`, measured "
        f"{doc.get('measured_at')} ({doc.get('mode', 'full')} run, "
        f"{doc.get('duration_s', '?')} s, phases: {', '.join(doc.get('phases') or []) or '-'}).",
        "",
        "Every ratio's two sides were measured in this same run on this machine, with the same "
        "process count and durability; loads were bounded and only targeted 127.0.0.1.",
        "",
        "## Goals",
        "",
        "| key | value | goal | met |",
        "| --- | --- | --- | --- |",
    ]
    for key, (op, goal) in GOALS.items():
        value = doc.get(key)
        met = goal_met(key, value)
        shown = "not measured" if value is None else value
        verdict = "-" if met is None else ("yes" if met else "no")
        lines.append(f"| `{key}` | {shown} | {op} {goal:g} | {verdict} |")
    lines += [
        "",
        "## Machine",
        "",
        f"- CPUs: {machine.get('cpu_count', '?')} ({machine.get('cpu_model', '?')})",
        f"- PostgreSQL: {pg.get('version', pg.get('error', '?'))}, fsync {pg.get('fsync', '?')}, "
        f"synchronous_commit {pg.get('synchronous_commit', '?')}",
        f"- Python {machine.get('python', '?')}, kernel {machine.get('kernel', '?')}",
    ]
    shown_keys: set[str] = set()
    for _phase, (title, what, prefixes) in PHASES.items():
        keys = [k for k in doc if k not in META and k != "phase_seconds" and k.startswith(prefixes)]
        if not keys:
            continue
        lines += ["", f"## {title}", "", what, ""]
        for key in keys:
            shown_keys.add(key)
            if key in ("pg_ingest_runs", "pg_ingest_cpu_ms_per_request"):
                continue
            lines.append(f"- `{key}`: {_shown(doc[key])}")
        if doc.get("pg_ingest_cpu_ms_per_request") and "pg_" in prefixes:
            lines += ["", *_cpu_table(doc["pg_ingest_cpu_ms_per_request"])]
        if doc.get("pg_ingest_runs") and "pg_" in prefixes:
            lines += ["", "Runs, in the order measured:", "", *_ingest_runs(doc["pg_ingest_runs"])]
        if "soak_" in prefixes and out is not None and (out / "soak.png").exists():
            lines += ["", "![soak](soak.png)"]
    rest = [k for k in doc if k not in META and k not in shown_keys]
    if rest:
        lines += ["", "## Other figures", ""]
        lines += [f"- `{k}`: {_shown(doc[k])}" for k in rest]
    if doc.get("notes"):
        lines += ["", "## Notes", ""] + [f"- {n}" for n in doc["notes"]]
    return "\n".join(lines) + "\n"


def write_outputs(doc: dict[str, Any], out: Path) -> None:
    """latest.json and report.md in `out`."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "latest.json").write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n")
    (out / "report.md").write_text(render_report(doc, out))
