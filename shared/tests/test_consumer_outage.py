"""A worker rides out a broker outage: the network to the broker is cut for 15 s while events
are in flight; afterwards every event is applied exactly once, the worker process is still
running and the group's lag returns to zero."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from consumer_proc import effects, metadata
from kafka import KafkaConsumer
from kafka.structs import TopicPartition
from outbox_helpers import drain, order_event
from sqlalchemy import func, select

from odr_shared.db import make_engine
from odr_shared.kafka import ensure_topics, make_producer
from odr_shared.testing import BrokerLink, TansuBroker, free_port

pytestmark = pytest.mark.kafka
HERE = Path(__file__).parent
PARTITIONS = 3


def wait_for(what: str, condition: Callable[[], bool], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def lag(bootstrap: str, topic: str, group: str, ends: dict[TopicPartition, int]) -> int:
    """Records of the topic not yet committed by the group (read without joining it)."""
    reader = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    try:
        return sum(end - (reader.committed(p) or 0) for p, end in ends.items())
    finally:
        reader.close()


def end_offsets(bootstrap: str, topic: str, count: int) -> dict[TopicPartition, int]:
    """Each partition's end, from its records: Tansu's ListOffsets can answer the start of the
    last record batch instead."""
    ends = {TopicPartition(topic, p): 0 for p in range(PARTITIONS)}
    for r in drain(bootstrap, topic, count):
        tp = TopicPartition(topic, r.partition)
        ends[tp] = max(ends[tp], r.offset + 1)
    return ends


def test_a_worker_rides_out_a_broker_outage(tmp_path: Path) -> None:
    broker_port = free_port()
    topic, group = f"t.outage.{uuid.uuid4().hex[:6]}", f"g-outage-{uuid.uuid4().hex[:6]}"
    db = f"sqlite:///{tmp_path}/outage.db"
    with (
        BrokerLink(broker_port) as link,
        TansuBroker(broker_port, tmp_path / "tansu.log", advertised_port=link.port) as broker,
    ):
        ensure_topics(broker.bootstrap, [topic], partitions=PARTITIONS)
        engine = make_engine(db)
        metadata.create_all(engine)
        log = open(tmp_path / "worker.log", "wb")  # noqa: SIM115
        worker = subprocess.Popen(
            [
                *(sys.executable, str(HERE / "outage_proc.py"), "--db", db),
                *("--bootstrap", broker.bootstrap, "--topic", topic, "--group", group),
                *("--handler-ms", "20"),
            ],
            cwd=HERE,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        producer = make_producer(broker.bootstrap)

        def applied() -> int:
            with engine.connect() as c:
                return int(c.execute(select(func.count()).select_from(effects)).scalar_one())

        def publish(n: int) -> list[str]:
            ids = []
            futures = []
            for i in range(n):
                key, event = order_event(f"O{i % 40}")
                ids.append(event.id)
                futures.append(producer.send(topic, key=key.encode(), value=event.to_json_bytes()))
            producer.flush(timeout=20)
            for f in futures:
                f.get(timeout=20)
            return ids

        try:
            ids = publish(400)
            # Cut while the worker is in the middle of them (20 ms each: ~8 s of work).
            wait_for("the first events applied", lambda: applied() >= 50, 30)
            link.cut()
            cut_at = applied()
            time.sleep(15)
            assert worker.poll() is None, "the worker died during the outage"
            link.restore()
            ids += publish(100)
            wait_for("every event applied", lambda: applied() >= len(ids), 40)
            ends = end_offsets(broker.bootstrap, topic, len(ids))
            assert sum(ends.values()) == len(ids)
            wait_for(
                "the lag back to zero", lambda: lag(broker.bootstrap, topic, group, ends) == 0, 20
            )
            assert worker.poll() is None, "the worker died after the outage"
            with engine.connect() as c:
                rows = c.execute(select(effects.c.event_id)).scalars().all()
            assert cut_at < 400, "the outage should start with events in flight"
            assert sorted(rows) == sorted(ids)  # each once: none lost, none applied twice
        finally:
            producer.close(timeout=2)
            if worker.poll() is None:
                worker.send_signal(signal.SIGTERM)
                try:
                    worker.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    worker.kill()
                    worker.wait()
            log.close()
            engine.dispose()
        assert worker.returncode == 0, (tmp_path / "worker.log").read_text()[-3000:]
