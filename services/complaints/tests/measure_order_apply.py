"""CPU per order event on the complaints worker's apply path, one by one vs batch handler.

Not a test (benchmarks assert nothing): run it by hand against PostgreSQL,

    .venv/bin/python services/complaints/tests/measure_order_apply.py [--events 5000]

It makes a throwaway database (prefix odr_cs_), feeds the same order events through
EventConsumer.process_batch in polls of 200, once with the single handler only and once with the
batch handler, and prints the worker process's CPU time (time.process_time) and the statements
it sent per event. PostgreSQL's own CPU is not in these figures.
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import event

from complaints import SERVICE_ROOT
from complaints.consumer import GROUP_ID, batch_handlers, handlers
from complaints.deps import build_deps
from complaints.settings import ComplaintsSettings
from odr_shared.db import make_engine
from odr_shared.events import OrderStatusChangedV1, build_event, order_id
from odr_shared.kafka import EventConsumer
from odr_shared.migrate import upgrade
from odr_shared.testing import sample_order, temporary_postgres_database

STATUSES = ["created", "paid", "ready_to_ship", "shipped", "delivered", "completed"]
T0 = datetime(2026, 11, 20, 3, tzinfo=UTC)


@dataclass(frozen=True)
class Record:
    topic: str
    key: bytes | None
    value: bytes
    offset: int


def stream(n: int, seed: int) -> list[Record]:
    """Orders moving through their statuses, interleaved, some events late or redelivered."""
    rng = random.Random(seed)
    out: list[Record] = []
    progress: dict[str, int] = {}
    codes = [f"M{seed}-{i}" for i in range(n // 3)]
    while len(out) < n:
        code = rng.choice(codes)
        step = progress.get(code, 0)
        if step >= len(STATUSES):
            continue
        late = step > 1 and rng.random() < 0.05
        at = step - 1 if late else step
        progress[code] = step + 1
        order = sample_order(code, status=STATUSES[at], status_at=(T0 + timedelta(hours=at)))
        if rng.random() < 0.3:
            order["items"] = []
        data = OrderStatusChangedV1.model_validate(
            {**order, "order_id": order_id("plat-m", code), "platform_id": "plat-m"}
        )
        ev = build_event(
            source="measure", event_type="order.status_changed", subject=data.order_id, data=data
        )
        rec = Record("orders.events", data.order_id.encode(), ev.to_json_bytes(), len(out))
        out.append(rec)
        if rng.random() < 0.02:
            out.append(rec)  # redelivered
    return out[:n]


def run(url: str, records: list[Record], batched: bool) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        settings = ComplaintsSettings(database_url=url, storage_dir=tmp, environment="test")
        engine = make_engine(url)
        deps = build_deps(settings, engine)
        consumer = EventConsumer(
            settings=settings,
            group_id=GROUP_ID,
            handlers=handlers(deps),
            batch_handlers=batch_handlers(deps) if batched else None,
            topics=["orders.events"],
            session_factory=deps.sessions,
        )
        statements = 0

        def count(*_args: Any) -> None:
            nonlocal statements
            statements += 1

        event.listen(engine, "before_cursor_execute", count)
        cpu, wall = time.process_time(), time.perf_counter()
        for start in range(0, len(records), 200):
            consumer.process_batch(records[start : start + 200])
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        engine.dispose()
    n = len(records)
    return {
        "applied": consumer.stats.applied,
        "duplicates": consumer.stats.duplicates,
        "cpu_ms_per_event": round(cpu * 1000 / n, 3),
        "wall_ms_per_event": round(wall * 1000 / n, 3),
        "statements_per_event": round(statements / n, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    for rnd in range(args.rounds):
        for batched in (False, True):
            with temporary_postgres_database("odr_cs_measure") as url:
                upgrade(SERVICE_ROOT, url)
                # Same shape of stream each time, new ids (a fresh database anyway).
                result = run(url, stream(args.events, seed=rnd), batched)
            print("batched" if batched else "one-by-one", f"round {rnd}", result, flush=True)


if __name__ == "__main__":
    main()
