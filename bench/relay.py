"""Outbox drain throughput on PostgreSQL: rows/s with one relay and with two, against one Tansu.

Each relay is its own process, as in production (one per worker pod). The relays start, settle
their slots (two relays: 32 each), then one transaction commits the backlog and the clock runs
from that commit until no row is left unsent. Runs alternate one and two relays so that both
see the same machine; the figure is the median of the runs.

    .venv/bin/python -m bench.relay [--rows 20000] [--runs 3] [--batch-size 2000]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from sqlalchemy import MetaData, text
from sqlalchemy.engine import Engine

ORDERS = 2000  # keys: an order's events share one


def serve(url: str, bootstrap: str, batch_size: int) -> None:
    """One relay process: publish until terminated."""
    import signal

    from odr_shared.db import make_engine
    from odr_shared.kafka import make_producer
    from odr_shared.outbox import OutboxRelay

    relay = OutboxRelay(
        make_engine(url, pool_size=1, max_overflow=1),
        make_producer(bootstrap, "bench-relay"),
        batch_size=batch_size,
        name="bench",
        rebalance_interval_s=0.2,
    )
    signal.signal(signal.SIGTERM, lambda *_: relay.stop())
    relay.run()


def _slot_holders(engine: Engine) -> list[int]:
    """Slots held per relay session in this database."""
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objsubid = 2"
                " AND granted AND database ="
                " (SELECT oid FROM pg_database WHERE datname = current_database())"
                " GROUP BY pid"
            )
        )
        return sorted(int(n) for (n,) in rows)


def _cpu_s(pid: int) -> float:
    """CPU seconds (user + system) a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _pending(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(
            conn.execute(
                text("SELECT count(*) FROM outbox_messages WHERE published_at IS NULL")
            ).scalar_one()
        )


def _backlog(rows: int, topic: str) -> list[tuple[str, Any]]:
    from odr_shared.events import OrderStatusChangedV1, build_event, order_id
    from odr_shared.testing import sample_order

    out = []
    for i in range(rows):
        code = f"B{i % ORDERS}"
        oid = order_id("plt_bench", code)
        data = OrderStatusChangedV1(
            order_id=oid,
            platform_id="plt_bench",
            **sample_order(code, "delivered"),
        )
        event = build_event(
            source="odr/bench", event_type="order.status_changed", subject=oid, data=data
        )
        out.append((oid, event))
    return out


def drain_once(
    engine: Engine,
    url: str,
    broker_pid: int,
    bootstrap: str,
    topic: str,
    relays: int,
    rows: int,
    batch: int,
) -> dict[str, float]:
    """One drain of `rows` rows by `relays` relay processes: rows/s, and CPU per 1,000 rows."""
    from odr_shared.outbox import OUTBOX_SLOTS, add_many_to_outbox

    backlog = _backlog(rows, topic)
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "bench.relay", "--serve", url, bootstrap, str(batch)]
        )
        for _ in range(relays)
    ]
    try:
        deadline = time.monotonic() + 60
        share = OUTBOX_SLOTS // relays
        while _slot_holders(engine) != [share] * relays:
            if time.monotonic() > deadline:
                raise TimeoutError(f"relays never settled: {_slot_holders(engine)}")
            time.sleep(0.1)
        with engine.begin() as conn:
            add_many_to_outbox(conn, topic, backlog)
        relay_cpu = sum(_cpu_s(p.pid) for p in procs)
        broker_cpu = _cpu_s(broker_pid)
        start = time.perf_counter()
        while _pending(engine) > 0:
            time.sleep(0.02)
        elapsed = time.perf_counter() - start
        relay_cpu = sum(_cpu_s(p.pid) for p in procs) - relay_cpu
        broker_cpu = _cpu_s(broker_pid) - broker_cpu
        return {
            "rows_per_s": rows / elapsed,
            "relay_cpu_ms_per_1000": 1e6 * relay_cpu / rows,
            "broker_cpu_ms_per_1000": 1e6 * broker_cpu / rows,
        }
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--serve", nargs=3, metavar=("URL", "BOOTSTRAP", "BATCH"))
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=2000)
    parser.add_argument("--partitions", type=int, default=3)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve[0], args.serve[1], int(args.serve[2]))
        return

    from odr_shared.db import make_engine
    from odr_shared.kafka import ensure_topics
    from odr_shared.outbox import outbox_table
    from odr_shared.testing import TansuBroker, temporary_postgres_database

    results: dict[int, list[dict[str, float]]] = {1: [], 2: []}
    with TansuBroker() as broker, temporary_postgres_database("odr_bench_relay") as url:
        assert broker.proc is not None
        topic = f"bench.relay.{uuid.uuid4().hex[:6]}"
        ensure_topics(broker.bootstrap, [topic], partitions=args.partitions)
        engine = make_engine(url, pool_size=2, max_overflow=2)
        md = MetaData()
        outbox_table(md)
        md.create_all(engine)

        def drain(relays: int) -> dict[str, float]:
            return drain_once(
                engine,
                url,
                broker.proc.pid,  # type: ignore[union-attr]
                broker.bootstrap,
                topic,
                relays,
                args.rows,
                args.batch_size,
            )

        try:
            drain(1)  # warm-up: the topic's first segments, PostgreSQL's caches
            for run in range(args.runs):
                for relays in (1, 2) if run % 2 == 0 else (2, 1):
                    one = drain(relays)
                    results[relays].append(one)
                    print(
                        f"run {run + 1}: {relays} relay(s): {one['rows_per_s']:,.0f} rows/s,"
                        f" relay CPU {one['relay_cpu_ms_per_1000']:.0f} ms and broker CPU"
                        f" {one['broker_cpu_ms_per_1000']:.0f} ms per 1,000 rows",
                        flush=True,
                    )
        finally:
            engine.dispose()

    def median(relays: int, name: str) -> float:
        return round(statistics.median(r[name] for r in results[relays]))

    summary: dict[str, Any] = {
        "rows": args.rows,
        "batch_size": args.batch_size,
        "partitions": args.partitions,
        "rows_per_s": {str(k): [round(r["rows_per_s"]) for r in v] for k, v in results.items()},
        "median_rows_per_s": {str(k): median(k, "rows_per_s") for k in results},
        "median_relay_cpu_ms_per_1000_rows": {
            str(k): median(k, "relay_cpu_ms_per_1000") for k in results
        },
        "median_broker_cpu_ms_per_1000_rows": {
            str(k): median(k, "broker_cpu_ms_per_1000") for k in results
        },
        "load_average_1m_at_end": os.getloadavg()[0],
    }
    summary["two_over_one"] = round(
        summary["median_rows_per_s"]["2"] / summary["median_rows_per_s"]["1"], 2
    )
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
