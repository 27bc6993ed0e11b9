"""Helpers of the outbox tests: events to write, an outbox database, a topic read back per key."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any

from kafka import KafkaConsumer
from sqlalchemy import MetaData
from sqlalchemy.engine import Engine

from odr_shared.db import make_engine
from odr_shared.events import CloudEvent, OrderStatusChangedV1, build_event, order_id
from odr_shared.inbox import inbox_table
from odr_shared.kafka import CONSUMER_GROUP_SETTINGS
from odr_shared.outbox import add_many_to_outbox, outbox_table
from odr_shared.testing import sample_order


def order_event(code: str, status: str = "delivered") -> tuple[str, CloudEvent[Any]]:
    oid = order_id("plt_t", code)
    data = OrderStatusChangedV1(
        order_id=oid,
        platform_id="plt_t",
        **sample_order(code, status),  # type: ignore[arg-type]
    )
    return oid, build_event(
        source="odr/test", event_type="order.status_changed", subject=oid, data=data
    )


def drain(bootstrap: str, topic: str, expect: int, timeout_s: float = 30) -> list[Any]:
    """Read the topic from the start until `expect` records arrived (or the time is up)."""
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=f"drain-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest",
        **CONSUMER_GROUP_SETTINGS,
    )
    out: list[Any] = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(out) < expect and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=500).values():
                out.extend(records)
    finally:
        consumer.close()
    return out


def outbox_db(url: str, **engine_options: Any) -> Engine:
    md = MetaData()
    outbox_table(md)
    inbox_table(md)
    engine = make_engine(url, **engine_options)
    md.create_all(engine)
    return engine


def write_order_events(
    engine: Engine, topic: str, *, orders: int, per_order: int, rows_per_commit: int = 100
) -> dict[str, list[str]]:
    """Queue `per_order` events for each of `orders` orders, interleaved, a few commits' worth;
    returns each key's event ids in the order they were written."""
    rows: list[tuple[str, CloudEvent[Any]]] = []
    for _ in range(per_order):
        for n in range(orders):
            rows.append(order_event(f"R{n}"))
    written: dict[str, list[str]] = {}
    for start in range(0, len(rows), rows_per_commit):
        chunk = rows[start : start + rows_per_commit]
        with engine.begin() as conn:
            add_many_to_outbox(conn, topic, chunk)
        for key, event in chunk:
            written.setdefault(key, []).append(event.id)
    return written


def event_ids_by_key(records: Sequence[Any]) -> dict[str, list[str]]:
    """Each key's event ids in topic order (a key lives in one partition), every copy kept."""
    by_key: dict[str, list[str]] = {}
    for r in sorted(records, key=lambda r: (r.partition, r.offset)):
        by_key.setdefault(r.key.decode(), []).append(json.loads(r.value)["id"])
    return by_key


def first_copies(ids: Sequence[str]) -> list[str]:
    """The ids without re-published copies: what a consumer's inbox lets through."""
    return list(dict.fromkeys(ids))


def until(condition: Callable[[], bool], timeout_s: float = 30, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"{what} not met in {timeout_s} s")
