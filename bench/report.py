"""Benchmark arithmetic and output: percentiles, goals, the Markdown report, the plot."""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path
from typing import Any

GOALS: dict[str, tuple[str, float]] = {
    "ingest_ratio_vs_bare_fastapi": (">=", 0.5),
    "batch_ratio_vs_raw_producer": (">=", 0.5),
    "webhook_to_lookup_p99_ms": ("<=", 1000),
    "case_to_sms_p99_ms": ("<=", 2000),
    "routing_p99_ms": ("<=", 50),
}

# What limits each figure and how it scales: the reading of this run's profiles (see
# docs/benchmarks.md). Kept next to the goals so the report always says it.
LIMITS: dict[str, str] = {
    "ingest_ratio_vs_bare_fastapi": (
        "CPU and the hand-offs between the gateway's processes. The API process (one uvicorn "
        "worker) only speaks HTTP for single webhooks (gateway.fastpath, ahead of FastAPI's "
        "layers): about 190 us per webhook against about 220 us for the bare endpoint. Its "
        "event loop sends each turn's deliveries, as bytes, to its store process "
        "(gateway/store.py), which verifies, maps and stores them in one transaction per "
        "group (two Fernet encryptions, the CloudEvent, Core bulk statements, SQLite's "
        "commit): about 270-300 us per webhook. The outbox relay adds about 100 us (mostly "
        "kafka-python), Tansu and wrk about 45 us. At peak the gateway uses about 1.5 of the "
        "two cores; the rest is latency in the closed loop of 32 connections (a group waits "
        "for the one before it). More uvicorn workers each bring a store process; on SQLite "
        "their transactions take the one write lock in turn, on PostgreSQL they commit in "
        "parallel."
    ),
    "batch_ratio_vs_raw_producer": (
        "The outbox relay, which does what the raw producer does (kafka-python, acks=all) "
        "plus reading 2,000 rows per round and marking them sent; one relay per database "
        "keeps each order's events in order. The store process verifies, maps and stores "
        "each 1,000-event batch in one transaction (about 150 us an event), in parallel with "
        "the relay; the API process only passes the bytes on. It scales with a relay per "
        "partition of the outbox (not built) and with PostgreSQL for concurrent stores."
    ),
    "webhook_to_lookup_p99_ms": (
        "Gateway commit, the relay's 50 ms poll, the broker, then the complaints consumer, "
        "which applies a poll's events (up to 200) in one transaction with one inbox lookup "
        "and one inbox insert; all on the same two cores as the 200/s webhook load. It "
        "scales with partitions (3 locally, 12 in deploy/) times complaints worker replicas."
    ),
    "case_to_sms_p99_ms": (
        "Three hops: the complaints outbox relay, the notifications consumer (plans the "
        "delivery), then the dispatcher's poll (0.5 s) and the HTTP call to the SMS provider. "
        "The dispatcher's poll dominates; more dispatcher replicas claim in parallel "
        "(leases), a shorter poll trades database load for latency."
    ),
    "routing_p99_ms": (
        "The database: the candidate reads (category, role and language probes) and the "
        "assignment writes of one transaction; Python work is small. It scales with the "
        "database, not with API replicas; PostgreSQL over a local socket pays a round trip "
        "per statement that the SQLite file does not."
    ),
}


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


def goal_met(key: str, value: float | None) -> bool | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    op, goal = GOALS[key]
    return value >= goal if op == ">=" else value <= goal


def top_frames(
    collapsed: str, n: int = 15, include: tuple[str, ...] = ()
) -> list[tuple[str, float]]:
    """From py-spy's collapsed stacks ("a;b;c count"), the n frames with most inclusive time.

    `include`: keep only frames containing one of these strings (our code, the costly calls),
    so thread and framework plumbing does not fill the table.
    """
    inclusive: Counter[str] = Counter()
    total = 0
    for line in collapsed.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        samples = int(count)
        total += samples
        for frame in set(stack.split(";")):
            inclusive[frame] += samples
    if not total:
        return []
    ranked = [
        (f, c) for f, c in inclusive.most_common() if not include or any(i in f for i in include)
    ]
    return [(frame, round(100 * c / total, 1)) for frame, c in ranked[:n]]


def render_report(doc: dict[str, Any]) -> str:
    lines = [
        "# Benchmark report",
        "",
        f"Commit `{str(doc.get('git_commit', 'unknown'))[:12]}`, {doc.get('cpu_count')} CPUs, "
        f"Python {doc.get('python')}, measured {doc.get('measured_at')} "
        f"({doc.get('mode', 'full')} run, {doc.get('duration_s', '?')} s).",
        "",
        "Every ratio's two sides were measured in this same run on this machine; loads were "
        "bounded and only targeted 127.0.0.1.",
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
    lines += ["", "## What limits each figure, and how it scales", ""]
    for key in GOALS:
        lines.append(f"- `{key}`: {LIMITS[key]}")
    lines += ["", "## Absolute figures", ""]
    for key, value in doc.items():
        if key in GOALS or key in ("curves", "notes", "profiles", "before"):
            continue
        if isinstance(value, dict):
            value = json.dumps(value, ensure_ascii=False)
        lines.append(f"- `{key}`: {value}")
    if doc.get("before"):
        lines += ["", "## Before this round of changes (same method, same machine)", ""]
        for key, value in doc["before"].items():
            lines.append(f"- `{key}`: {value}")
    if doc.get("curves"):
        lines += ["", "## Latency against load", "", "![latency](latency_vs_load.png)", ""]
        for name, curve in doc["curves"].items():
            lines += [
                f"{name} (open loop: requests leave on schedule whatever the answers):",
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
    if doc.get("profiles"):
        lines += ["", "## Profiles (py-spy, inclusive % of samples)", ""]
        for name, frames in doc["profiles"].items():
            lines += [f"{name}:", "", "| frame | % |", "| --- | --- |"]
            lines += [f"| `{frame}` | {pct} |" for frame, pct in frames]
            lines.append("")
    if doc.get("notes"):
        lines += ["", "## Notes", ""] + [f"- {n}" for n in doc["notes"]]
    return "\n".join(lines) + "\n"


def plot(curves: dict[str, list[dict[str, float]]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=120)
    for name, curve in curves.items():
        xs = [p["offered_rps"] for p in curve]
        ax.plot(xs, [p["p50_ms"] for p in curve], marker="o", label=f"{name} p50")
        ax.plot(xs, [p["p99_ms"] for p in curve], marker="s", linestyle="--", label=f"{name} p99")
    ax.set_xlabel("offered load (requests/s)")
    ax.set_ylabel("latency (ms)")
    ax.set_yscale("log")
    ax.set_title("Signed webhook latency against load (open loop)")
    ax.grid(True, which="both", alpha=0.3)
    if curves:
        ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def write_outputs(doc: dict[str, Any], out: Path) -> None:
    """latest.json, report.md and latency_vs_load.png in `out`."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "latest.json").write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n")
    plot(doc.get("curves") or {}, out / "latency_vs_load.png")
    (out / "report.md").write_text(render_report(doc))
