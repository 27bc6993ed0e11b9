"""Outbox relays side by side: slots shared on PostgreSQL, one relay at a time on SQLite."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaProducer
from outbox_helpers import (
    drain,
    event_ids_by_key,
    first_copies,
    outbox_db,
    until,
    write_order_events,
)
from prometheus_client import REGISTRY
from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError

from odr_shared import outbox
from odr_shared.kafka import ensure_topics, make_producer
from odr_shared.outbox import ALL_SLOTS, OutboxRelay
from odr_shared.testing import TansuBroker

pytestmark = pytest.mark.kafka
HERE = Path(__file__).parent


@pytest.fixture
def producers(broker: TansuBroker) -> Iterator[list[KafkaProducer]]:
    made: list[KafkaProducer] = []
    yield made
    for p in made:
        p.close()


def _pending(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(
            conn.execute(
                text("SELECT count(*) FROM outbox_messages WHERE published_at IS NULL")
            ).scalar_one()
        )


def _topic(broker: TansuBroker) -> str:
    topic = f"t.relays.{uuid.uuid4().hex[:6]}"
    ensure_topics(broker.bootstrap, [topic], partitions=3, with_dead_letter=False)
    return topic


def _relay(
    engine: Engine,
    broker: TansuBroker,
    producers: list[KafkaProducer],
    name: str,
    **options: Any,
) -> OutboxRelay:
    producers.append(make_producer(broker.bootstrap, name))
    return OutboxRelay(engine, producers[-1], name=name, **options)


def _slots_gauge(relay: OutboxRelay) -> float | None:
    return REGISTRY.get_sample_value(
        "odr_outbox_slots_owned", {"relay": relay.name, "instance": relay.instance}
    )


@pytest.mark.postgres
def test_two_relays_share_the_slots_and_publish_each_keys_events_in_order(
    broker: TansuBroker, postgres_url: str, producers: list[KafkaProducer]
) -> None:
    topic = _topic(broker)
    engine = outbox_db(postgres_url, pool_size=2, max_overflow=2)
    relays = [
        _relay(engine, broker, producers, f"relay-{x}", batch_size=50, rebalance_interval_s=0.1)
        for x in "ab"
    ]
    threads = [threading.Thread(target=r.run, daemon=True) for r in relays]
    for t in threads:
        t.start()
    try:
        until(
            lambda: all(len(r.owned_slots) == 32 for r in relays),
            what="two relays holding 32 slots each",
        )
        assert not relays[0].owned_slots & relays[1].owned_slots
        assert [_slots_gauge(r) for r in relays] == [32, 32]
        # Written while both relays poll: 3,000 events of 120 orders, interleaved.
        written = write_order_events(engine, topic, orders=120, per_order=25)
        until(lambda: _pending(engine) == 0, what="the outbox drained")
    finally:
        for r in relays:
            r.stop()
        for t in threads:
            t.join(timeout=15)
    total = sum(len(ids) for ids in written.values())
    assert all(r.published > 0 for r in relays), [r.published for r in relays]
    assert sum(r.published for r in relays) == total  # no crash, so no copies
    records = drain(broker.bootstrap, topic, total)
    assert len(records) == total
    assert event_ids_by_key(records) == written
    # Stopped relays leave no gauge behind, and their sessions released every lock.
    assert [_slots_gauge(r) for r in relays] == [None, None]
    with engine.connect() as conn:
        locks = conn.execute(
            text(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND database ="
                " (SELECT oid FROM pg_database WHERE datname = current_database())"
            )
        )
        assert locks.scalar_one() == 0
    engine.dispose()


def _step_until_split(relays: list[OutboxRelay]) -> None:
    """Run rounds of each relay in turn until both own slots (each round may publish)."""
    for _ in range(10):
        for r in relays:
            r.publish_batch()
        if all(r.owned_slots for r in relays):
            return
    raise AssertionError([len(r.owned_slots) for r in relays])


@pytest.mark.postgres
@pytest.mark.parametrize("how", ["stops", "loses_its_lock_connection_mid_round"])
def test_a_relays_slots_pass_to_the_other_and_each_keys_events_stay_in_order(
    broker: TansuBroker,
    postgres_url: str,
    producers: list[KafkaProducer],
    monkeypatch: pytest.MonkeyPatch,
    how: str,
) -> None:
    topic = _topic(broker)
    engine = outbox_db(postgres_url, pool_size=2, max_overflow=2)
    # Rounds are run one by one here, and every round re-counts the live relays.
    a, b = (
        _relay(engine, broker, producers, name, batch_size=40, rebalance_interval_s=0)
        for name in ("relay-a", "relay-b")
    )
    written = write_order_events(engine, topic, orders=60, per_order=20)
    total = sum(len(ids) for ids in written.values())
    _step_until_split([a, b])
    assert len(a.owned_slots) == len(b.owned_slots) == 32
    assert a.published > 0
    assert b.published > 0
    copies = 0
    if how == "stops":
        a.close()
    else:
        # The batch reaches the broker, then a's session is killed before a marks it sent.
        send_all = outbox.send_all

        def send_then_lose_the_lock_connection(producer: Any, messages: Any) -> None:
            send_all(producer, messages)
            with engine.connect() as conn:
                conn.execute(
                    text(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                        " WHERE application_name = :n"
                    ),
                    {"n": f"outbox-relay relay-a {a.instance}"},
                )

        monkeypatch.setattr(outbox, "send_all", send_then_lose_the_lock_connection)
        pending = _pending(engine)
        with pytest.raises(OperationalError):
            a.publish_batch()
        monkeypatch.undo()
        copies = 40
        assert a.owned_slots == frozenset()
        assert _pending(engine) == pending  # sent, but not marked: it will be sent again
    # Its slots are free: b takes them all and drains the outbox.
    while b.publish_batch() > 0:
        pass
    assert b.owned_slots == ALL_SLOTS
    assert _pending(engine) == 0
    if how != "stops":
        # a comes back on a new connection and gets its share once b gives it up.
        assert a.publish_batch() == 0
        b.publish_batch()
        a.publish_batch()
        assert len(a.owned_slots) == len(b.owned_slots) == 32
        assert not a.owned_slots & b.owned_slots
        a.close()
    b.close()
    # Every row was marked sent once, by the relay that owned its slot at the time.
    assert a.published + b.published == total
    records = drain(broker.bootstrap, topic, total + copies)
    assert len(records) == total + copies
    by_key = event_ids_by_key(records)
    # The re-sent batch is the only copy, and the first copy of each event is in key order.
    assert {k: first_copies(ids) for k, ids in by_key.items()} == written
    assert sum(len(ids) for ids in by_key.values()) - total == copies
    engine.dispose()


@pytest.mark.parametrize("how", ["stops", "dies"])
def test_on_sqlite_a_second_relay_waits_for_the_first_and_takes_over(
    broker: TansuBroker, tmp_path: Path, producers: list[KafkaProducer], how: str
) -> None:
    topic = _topic(broker)
    url = f"sqlite:///{tmp_path}/outbox.db"
    engine = outbox_db(url)
    written = write_order_events(engine, topic, orders=20, per_order=10)
    total = sum(len(ids) for ids in written.values())
    first: OutboxRelay | None = None
    process: subprocess.Popen[bytes] | None = None
    if how == "stops":
        first = _relay(engine, broker, producers, "relay-a", batch_size=50)
        assert first.publish_batch() == 50
    else:
        ready = tmp_path / "ready"
        process = subprocess.Popen(
            [
                sys.executable,
                str(HERE / "relay_proc.py"),
                "--db",
                url,
                "--bootstrap",
                broker.bootstrap,
                "--batch-size",
                "50",
                "--ready-file",
                str(ready),
            ]
        )
        until(ready.exists, timeout_s=60, what="the first relay's batch")
        assert ready.read_text() == "50"
    try:
        second = _relay(engine, broker, producers, "relay-b", batch_size=50)
        for _ in range(3):
            assert second.publish_batch() == 0
        assert second.owned_slots == frozenset()
        assert _slots_gauge(second) == 0
        assert _pending(engine) == total - 50
        if first is not None:
            first.close()
        else:
            assert process is not None
            process.send_signal(signal.SIGKILL)
            process.wait(timeout=10)
        published = 0
        while (n := second.publish_batch()) > 0:
            published += n
        assert published == total - 50
        assert second.owned_slots == ALL_SLOTS
        assert _slots_gauge(second) == 64
        second.close()
    finally:
        if process is not None and process.poll() is None:
            process.kill()
            process.wait(timeout=10)
    records = drain(broker.bootstrap, topic, total)
    assert len(records) == total
    assert event_ids_by_key(records) == written
    engine.dispose()
