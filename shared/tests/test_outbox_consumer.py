"""Outbox relay and idempotent consumer against a real broker, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from outbox_helpers import drain, order_event, outbox_db
from sqlalchemy import func, select, text

from odr_shared.db import make_engine, make_session_factory
from odr_shared.kafka import EventConsumer, ensure_topics, make_producer
from odr_shared.outbox import OutboxRelay, add_to_outbox, pending_count
from odr_shared.settings import ServiceSettings
from odr_shared.testing import TansuBroker, free_port

pytestmark = pytest.mark.kafka
HERE = Path(__file__).parent


def test_outbox_rows_reach_the_topic_in_order_once_committed(
    broker: TansuBroker, database_url: str
) -> None:
    topic = f"t.outbox.{uuid.uuid4().hex[:6]}"
    ensure_topics(broker.bootstrap, [topic], partitions=3)
    engine = outbox_db(database_url)
    factory = make_session_factory(engine)
    keys = [f"plt_t:DH{i % 5}" for i in range(50)]
    with factory() as s, s.begin():
        for i, key in enumerate(keys):
            add_to_outbox(s, topic, key, order_event(f"DH{i % 5}", "paid")[1])
    # A rolled-back transaction leaves nothing to publish.
    with pytest.raises(RuntimeError), factory() as s, s.begin():
        add_to_outbox(s, topic, "plt_t:ROLLED", order_event("ROLLED")[1])
        raise RuntimeError("use case failed")
    producer = make_producer(broker.bootstrap)
    published = 0
    with OutboxRelay(engine, producer, batch_size=20) as relay:
        while (n := relay.publish_batch()) > 0:
            published += n
    assert published == 50
    with factory() as s:
        assert pending_count(s) == 0
    records = drain(broker.bootstrap, topic, 50)
    assert len(records) == 50
    assert all(r.key != b"plt_t:ROLLED" for r in records)
    # Per key, order of publication is the order of writing.
    by_key: dict[bytes, list[int]] = {}
    written = {}
    for r in records:
        ev = json.loads(r.value)
        written.setdefault(ev["id"], r.offset)
        by_key.setdefault(r.key, []).append(r.offset)
    for offsets in by_key.values():
        assert offsets == sorted(offsets)
    producer.close()
    engine.dispose()


def test_outbox_keeps_rows_while_the_broker_is_down(database_url: str) -> None:
    engine = outbox_db(database_url)
    factory = make_session_factory(engine)
    down = TansuBroker(port=free_port()).start()
    producer = make_producer(down.bootstrap, max_block_ms=2000, request_timeout_ms=2000)
    topic = "t.down"
    ensure_topics(down.bootstrap, [topic])
    down.stop()
    with factory() as s, s.begin():
        add_to_outbox(s, topic, "k", order_event("DOWN")[1])
    relay = OutboxRelay(engine, producer)
    with relay, pytest.raises(Exception):  # noqa: B017 - any broker error
        relay.publish_batch()
    with factory() as s:
        assert pending_count(s) == 1
        row = s.execute(text("SELECT attempts, last_error FROM outbox_messages")).one()
        assert row.attempts == 1
        assert row.last_error
    producer.close(timeout=1)
    engine.dispose()


def test_consumer_applies_once_retries_then_dead_letters(
    broker: TansuBroker, database_url: str
) -> None:
    topic = f"t.consume.{uuid.uuid4().hex[:6]}"
    ensure_topics(broker.bootstrap, [topic])
    engine = outbox_db(database_url)
    settings = ServiceSettings(  # type: ignore[call-arg]
        kafka_bootstrap_servers=broker.bootstrap,
        consumer_max_attempts=3,
        consumer_backoff_initial_s=0.01,
    )
    seen: list[str] = []
    attempts: dict[str, int] = {}

    def handler(session, event) -> None:  # type: ignore[no-untyped-def]
        attempts[event.data.order_code] = attempts.get(event.data.order_code, 0) + 1
        if event.data.order_code == "FLAKY" and attempts["FLAKY"] < 2:
            raise ConnectionError("transient")
        if event.data.order_code == "BROKEN":
            raise ValueError("this order cannot be applied")
        seen.append(event.id)

    consumer = EventConsumer(
        settings=settings,
        group_id="g-test",
        handlers={"order.status_changed": handler},
        topics=[topic],
        session_factory=make_session_factory(engine),
    )
    ok_key, ok = order_event("OK")
    _, flaky = order_event("FLAKY")
    _, broken = order_event("BROKEN")
    consumer.process_record(topic, ok_key.encode(), ok.to_json_bytes())
    consumer.process_record(topic, ok_key.encode(), ok.to_json_bytes())  # redelivered
    consumer.process_record(topic, b"k", flaky.to_json_bytes())
    consumer.process_record(topic, b"k", broken.to_json_bytes())
    consumer.process_record(topic, b"k", b"\x00garbage")
    assert seen == [ok.id, flaky.id]
    assert consumer.stats.duplicates == 1
    assert attempts == {"OK": 1, "FLAKY": 2, "BROKEN": 3}
    assert consumer.stats.dead_lettered == 2
    dlq = drain(broker.bootstrap, f"{topic}.dlq", 2)
    errors = {dict(r.headers)["dlq-error"].decode() for r in dlq}
    assert any("ValueError: this order cannot be applied" in e for e in errors)
    assert any("not JSON" in e for e in errors)
    assert {dict(r.headers)["dlq-attempts"] for r in dlq} == {b"3", b"0"}
    consumer.producer.close()
    engine.dispose()


def _count(engine, table: str) -> int:  # type: ignore[no-untyped-def]
    with engine.connect() as c:
        return int(c.execute(select(func.count()).select_from(text(table))).scalar_one())


# Runs consumer_proc.py with a gate after a batch's effects are committed and before its offsets
# are: the one crash that re-delivers events already applied.
GATE_AFTER_EFFECTS_COMMIT = """
import sys, time
from pathlib import Path
sys.path.insert(0, sys.argv.pop(1))
gate_after, gate_file = int(sys.argv.pop(1)), Path(sys.argv.pop(1))
import consumer_proc
from odr_shared.kafka import EventConsumer
apply_batch = EventConsumer.process_batch
def gated(self, records):
    apply_batch(self, records)
    if self.stats.applied >= gate_after:
        gate_file.write_text("gated")
        while True:
            time.sleep(1)
EventConsumer.process_batch = gated
consumer_proc.main()
"""


@pytest.mark.parametrize("kill_at", ["in_handler", "after_effects_commit"])
def test_consumer_killed_mid_batch_applies_each_event_exactly_once(
    broker: TansuBroker, database_url: str, tmp_path: Path, kill_at: str
) -> None:
    n = 1500
    topic = f"t.crash.{uuid.uuid4().hex[:6]}"
    ensure_topics(broker.bootstrap, [topic], partitions=3)
    producer = make_producer(broker.bootstrap)
    futures = []
    for i in range(n):
        key, ev = order_event(f"C{i}")
        futures.append(producer.send(topic, key=key.encode(), value=ev.to_json_bytes()))
    producer.flush()
    for f in futures:
        f.get(timeout=10)
    producer.close()

    gate = tmp_path / "gate"
    proc_args = [
        "--db",
        database_url,
        "--bootstrap",
        broker.bootstrap,
        "--topic",
        topic,
        "--group",
        "crash-group",
    ]
    args = [sys.executable, str(HERE / "consumer_proc.py"), *proc_args]
    if kill_at == "in_handler":
        # Blocks in the handler of the 531st event: its batch's transaction is open.
        gated = [*args, "--gate-after", "530", "--gate-file", str(gate)]
    else:
        gated = [sys.executable, "-c", GATE_AFTER_EFFECTS_COMMIT, str(HERE), "530", str(gate)]
        gated += proc_args
    first = subprocess.Popen([*gated, "--stats-file", "/dev/null"])
    try:
        deadline = time.monotonic() + 120
        while not gate.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert gate.exists(), "consumer never reached the gate"
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
    finally:
        if first.poll() is None:
            first.kill()
    engine = make_engine(database_url)
    committed = _count(engine, "effects")
    # Whole batches only: each effect with its inbox row, nothing of the batch in flight.
    assert _count(engine, "inbox_events") == committed
    if kill_at == "in_handler":
        assert 0 < committed <= 530
    else:
        assert committed >= 530

    second = subprocess.Popen([*args, "--stats-file", str(tmp_path / "s2.json")])
    try:
        deadline = time.monotonic() + 180
        while _count(engine, "inbox_events") < n and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(1.0)  # anything extra would show up now
    finally:
        second.send_signal(signal.SIGTERM)
        second.wait(timeout=30)
    stats = json.loads((tmp_path / "s2.json").read_text())
    assert _count(engine, "effects") == n
    with engine.connect() as c:
        distinct = c.execute(text("SELECT COUNT(DISTINCT event_id) FROM effects")).scalar_one()
    assert distinct == n
    assert stats["applied"] == n - committed
    if kill_at == "after_effects_commit":
        # The restarted consumer really was handed events it had already applied.
        assert stats["duplicates"] > 0
    engine.dispose()
