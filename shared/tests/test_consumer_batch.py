"""EventConsumer.process_batch without a broker: one transaction per poll, and on every kind of
error the same outcome as applying each record in its own transaction."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
from consumer_proc import effects, metadata
from kafka.errors import KafkaConnectionError, KafkaTimeoutError
from kafka.structs import TopicPartition
from prometheus_client import REGISTRY
from pydantic import BaseModel
from sqlalchemy import event, insert, select, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

import odr_shared.kafka as kafka_module
from odr_shared.db import make_engine, make_session_factory
from odr_shared.events import (
    Actor,
    CloudEvent,
    MediationEventV1,
    OrderStatusChangedV1,
    build_event,
    order_id,
)
from odr_shared.inbox import INBOX_TABLE, mark_many_processed, processed_among
from odr_shared.kafka import BatchHandler, EventConsumer
from odr_shared.settings import ServiceSettings
from odr_shared.testing import sample_order

TOPIC = "t.batch"
GROUP = "g-batch"

# The crash test's consumer process (consumer_proc.py) keeps its effects in the same tables.
inbox = metadata.tables[INBOX_TABLE]


@dataclass(frozen=True)
class Record:
    topic: str
    key: bytes | None
    value: bytes
    offset: int


@dataclass
class DeadLetter:
    topic: str
    key: bytes
    value: bytes
    headers: dict[str, bytes]
    effects_committed: int


class Sent:
    def get(self, timeout: float | None = None) -> None:
        return None


@dataclass
class FakeProducer:
    """Captures dead letters, and how many effects were committed when each was sent."""

    engine: Engine
    sent: list[DeadLetter] = field(default_factory=list)

    def send(self, topic: str, key: bytes, value: bytes, headers: list[tuple[str, bytes]]) -> Sent:
        self.sent.append(DeadLetter(topic, key, value, dict(headers), len(committed(self.engine))))
        return Sent()

    def flush(self, timeout: float | None = None) -> None:
        return None


@dataclass
class Rig:
    engine: Engine
    factory: sessionmaker[Session]
    producer: FakeProducer
    commits: list[int]
    calls: list[str]

    def consumer(
        self,
        handler: Callable[[Session, CloudEvent[BaseModel]], None],
        batch_handler: BatchHandler | None = None,
        **options: Any,
    ) -> EventConsumer:
        settings = ServiceSettings(
            kafka_bootstrap_servers="127.0.0.1:1",
            consumer_max_attempts=3,
            consumer_backoff_initial_s=0.01,
        )
        return EventConsumer(
            settings=settings,
            group_id=GROUP,
            handlers={"order.status_changed": handler, **options.pop("handlers", {})},
            topics=[TOPIC],
            session_factory=self.factory,
            producer=self.producer,
            batch_handlers={"order.status_changed": batch_handler} if batch_handler else None,
            **options,
        )

    def recording_handler(
        self, fail: Callable[[Session, str, int], bool] = lambda _s, _id, _n: False
    ) -> Callable[[Session, CloudEvent[BaseModel]], None]:
        """Inserts one effect row per call; `fail(session, event_id, nth_call)` makes it raise."""

        def handler(session: Session, ev: CloudEvent[BaseModel]) -> None:
            self.calls.append(ev.id)
            if fail(session, ev.id, self.calls.count(ev.id)):
                raise ValueError(f"cannot apply {ev.id}")
            session.execute(insert(effects).values(event_id=ev.id))

        return handler


@pytest.fixture
def rig(database_url: str) -> Iterator[Rig]:
    engine = make_engine(database_url)
    metadata.create_all(engine)
    factory = make_session_factory(engine)
    commits: list[int] = []
    event.listen(factory, "after_commit", lambda _session: commits.append(1))
    yield Rig(engine, factory, FakeProducer(engine), commits, [])
    engine.dispose()


def committed(engine: Engine) -> list[str]:
    """Effects visible to another connection, in the order they were written."""
    with engine.connect() as c:
        return list(c.execute(select(effects.c.event_id).order_by(effects.c.id)).scalars())


def inbox_ids(engine: Engine) -> set[str]:
    with engine.connect() as c:
        rows = c.execute(select(inbox.c.event_id).where(inbox.c.consumer_group == GROUP))
        return set(rows.scalars())


def order_record(code: str, offset: int = 0) -> tuple[str, Record]:
    oid = order_id("plt_t", code)
    data = OrderStatusChangedV1(order_id=oid, platform_id="plt_t", **sample_order(code))
    ev = build_event(source="odr/test", event_type="order.status_changed", subject=oid, data=data)
    return ev.id, Record(TOPIC, oid.encode(), ev.to_json_bytes(), offset)


def orders(n: int) -> tuple[list[str], list[Record]]:
    pairs = [order_record(f"B{i}", i) for i in range(n)]
    return [p[0] for p in pairs], [p[1] for p in pairs]


def consumed(outcome: str) -> float:
    value = REGISTRY.get_sample_value(
        "odr_events_consumed_total",
        {"group": GROUP, "type": "order.status_changed", "outcome": outcome},
    )
    return value or 0.0


def test_a_poll_is_applied_in_one_transaction_with_one_inbox_query_and_insert(rig: Rig) -> None:
    ids, records = orders(40)
    unhandled = build_event(
        source="odr/test",
        event_type="case.queued",
        subject="case-1",
        data=MediationEventV1(case_id="case-1", actor=Actor(role="system")),
    )
    records.insert(7, Record(TOPIC, b"case-1", unhandled.to_json_bytes(), 99))
    inbox_statements: list[str] = []

    def spy(_conn: Any, _cursor: Any, statement: str, *_rest: Any) -> None:
        if "inbox_events" in statement:
            inbox_statements.append(statement.split()[0].upper())

    event.listen(rig.engine, "before_cursor_execute", spy)
    applied_before = consumed("applied")
    consumer = rig.consumer(rig.recording_handler())
    consumer.process_batch(records)
    event.remove(rig.engine, "before_cursor_execute", spy)

    assert inbox_statements == ["SELECT", "INSERT"]
    assert len(rig.commits) == 1
    assert committed(rig.engine) == ids
    assert inbox_ids(rig.engine) == set(ids)
    assert consumer.stats.applied == 40
    assert consumer.stats.skipped == 1
    assert consumed("applied") - applied_before == 40
    assert rig.producer.sent == []


def test_duplicates_in_the_batch_and_already_in_the_inbox_are_applied_once(rig: Rig) -> None:
    ids, records = orders(4)
    consumer = rig.consumer(rig.recording_handler())
    consumer.process_batch(records[:1])  # the first event was applied by an earlier poll
    rig.commits.clear()
    duplicates_before = consumed("duplicate")

    consumer.process_batch([records[0], records[1], records[2], records[1], records[3], records[0]])

    assert len(rig.commits) == 1
    assert committed(rig.engine) == ids
    assert rig.calls == ids
    assert consumer.stats.applied == 4
    assert consumer.stats.duplicates == 3
    assert consumed("duplicate") - duplicates_before == 3


def test_a_handler_failing_once_is_retried_alone_after_the_records_before_it(rig: Rig) -> None:
    ids, records = orders(10)
    k = 4
    at_retry: list[tuple[int, list[str]]] = []

    def fail(session: Session, event_id: str, nth: int) -> bool:
        if event_id == ids[k] and nth == 2:
            # A fresh transaction that has written nothing yet sees only what is committed.
            visible = session.execute(select(effects.c.event_id).order_by(effects.c.id))
            at_retry.append((len(rig.commits), list(visible.scalars())))
        return event_id == ids[k] and nth == 1

    consumer = rig.consumer(rig.recording_handler(fail))
    consumer.process_batch(records)

    # The records before k were committed, in one transaction, before k was tried again alone.
    assert at_retry == [(1, ids[:k])]
    assert committed(rig.engine) == ids
    assert inbox_ids(rig.engine) == set(ids)
    # Prefix, k alone, the rest: three transactions, and k was tried twice as before batching.
    assert len(rig.commits) == 3
    assert rig.calls.count(ids[k]) == 2
    assert consumer.stats.applied == 10
    assert consumer.stats.dead_lettered == 0
    assert rig.producer.sent == []


def test_a_handler_always_failing_dead_letters_that_record_and_applies_the_rest(rig: Rig) -> None:
    ids, records = orders(10)
    k = 6
    consumer = rig.consumer(rig.recording_handler(lambda _s, event_id, _nth: event_id == ids[k]))
    consumer.process_batch(records)

    expected = ids[:k] + ids[k + 1 :]
    assert committed(rig.engine) == expected
    assert inbox_ids(rig.engine) == set(expected)
    # The batch's try plus two retries: the configured three attempts, no more.
    assert rig.calls.count(ids[k]) == 3
    assert consumer.stats.applied == 9
    assert consumer.stats.dead_lettered == 1
    [dead] = rig.producer.sent
    assert dead.topic == f"{TOPIC}.dlq"
    assert dead.value == records[k].value
    assert dead.key == records[k].key
    assert f"ValueError: cannot apply {ids[k]}" in dead.headers["dlq-error"].decode()
    assert dead.headers["dlq-attempts"] == b"3"
    # The handler's own traceback, not the "NoneType: None" of a format_exc outside an except.
    trace = dead.headers["dlq-trace"].decode()
    assert "in handler" in trace
    assert trace.rstrip().endswith(f"ValueError: cannot apply {ids[k]}")
    # Per-key order: it was dead-lettered after the records before it, before those after it.
    assert dead.effects_committed == k


def test_an_unparseable_record_is_dead_lettered_in_place_and_the_others_applied(
    rig: Rig,
) -> None:
    ids, records = orders(6)
    records.insert(3, Record(TOPIC, b"k", b"\x00garbage", 3))
    consumer = rig.consumer(rig.recording_handler())
    consumer.process_batch(records)

    assert committed(rig.engine) == ids
    assert rig.calls == ids
    assert len(rig.commits) == 2
    assert consumer.stats.applied == 6
    [dead] = rig.producer.sent
    assert dead.value == b"\x00garbage"
    assert "not JSON" in dead.headers["dlq-error"].decode()
    assert dead.headers["dlq-attempts"] == b"0"
    assert "EventParseError" in dead.headers["dlq-trace"].decode()
    assert dead.effects_committed == 3


def test_a_failed_batch_commit_falls_back_to_one_transaction_per_record(rig: Rig) -> None:
    ids, records = orders(5)
    failures: list[int] = []

    @event.listens_for(rig.factory, "before_commit")
    def fail_first_commit(_session: Session) -> None:
        if not failures:
            failures.append(1)
            raise OperationalError("COMMIT", {}, Exception("disk I/O error"))

    applied_before = consumed("applied")
    consumer = rig.consumer(rig.recording_handler())
    consumer.process_batch(records)

    assert committed(rig.engine) == ids
    assert inbox_ids(rig.engine) == set(ids)
    assert len(rig.commits) == 5
    # Counted once each, only for the commits that held.
    assert consumer.stats.applied == 5
    assert consumed("applied") - applied_before == 5
    assert consumer.stats.dead_lettered == 0


def test_an_inbox_row_committed_concurrently_rolls_the_batch_back_without_a_second_effect(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids, records = orders(5)
    # Another consumer of the group applied the third event after this batch looked it up.
    with rig.factory() as s, s.begin():
        mark_many_processed(s, GROUP, [(ids[2], "order.status_changed")])
    monkeypatch.setattr(kafka_module, "processed_among", lambda *_args: set())

    consumer = rig.consumer(rig.recording_handler())
    consumer.process_batch(records)

    assert committed(rig.engine) == ids[:2] + ids[3:]
    assert inbox_ids(rig.engine) == set(ids)
    assert consumer.stats.applied == 4
    assert consumer.stats.duplicates == 1
    assert consumer.stats.dead_lettered == 0


def test_inbox_lookup_is_chunked_and_per_group(rig: Rig) -> None:
    stored = [f"ev-{i}" for i in range(1200)]
    with rig.factory() as s, s.begin():
        mark_many_processed(s, GROUP, [(i, "order.status_changed") for i in stored])
        mark_many_processed(s, GROUP, [])
    with rig.factory() as s:
        asked = [*stored, *(f"new-{i}" for i in range(100))]
        assert processed_among(s, GROUP, asked) == set(stored)
        assert processed_among(s, "another-group", asked) == set()
        assert processed_among(s, GROUP, []) == set()
    with rig.engine.connect() as c:
        assert c.execute(text("SELECT COUNT(*) FROM inbox_events")).scalar_one() == 1200


# Batch handlers: consecutive new events of one type in one call.


def case_record(case_id: str, offset: int) -> tuple[str, Record]:
    ev = build_event(
        source="odr/test",
        event_type="case.queued",
        subject=case_id,
        data=MediationEventV1(case_id=case_id, actor=Actor(role="system")),
    )
    return ev.id, Record(TOPIC, case_id.encode(), ev.to_json_bytes(), offset)


def test_consecutive_new_events_of_a_type_go_to_its_batch_handler_together(rig: Rig) -> None:
    ids, records = orders(6)
    case_id, case = case_record("case-1", 99)
    consumer = rig.consumer(rig.recording_handler())  # the first event applied by an earlier poll
    consumer.process_batch(records[:1])
    rig.commits.clear()
    rig.calls.clear()
    batches: list[list[str]] = []

    def batch(session: Session, events: Sequence[CloudEvent[BaseModel]]) -> None:
        batches.append([e.id for e in events])
        for e in events:
            session.execute(insert(effects).values(event_id=e.id))

    def on_case(session: Session, ev: CloudEvent[BaseModel]) -> None:
        rig.calls.append(ev.id)
        session.execute(insert(effects).values(event_id=ev.id))

    consumer = rig.consumer(rig.recording_handler(), batch, handlers={"case.queued": on_case})
    # Orders 0 (in the inbox) 1 2 3, the case, orders 4 2 (again) 5.
    consumer.process_batch([*records[:4], case, records[4], records[2], records[5]])

    assert batches == [ids[1:4], [ids[4], ids[5]]]
    assert rig.calls == [case_id]  # the single order handler was never called
    assert len(rig.commits) == 1
    assert committed(rig.engine) == [ids[0], *ids[1:4], case_id, ids[4], ids[5]]
    assert inbox_ids(rig.engine) == {*ids, case_id}
    assert consumer.stats.applied == 6
    assert consumer.stats.duplicates == 2


def test_a_failing_batch_handler_falls_back_to_the_single_handler_for_its_events(
    rig: Rig,
) -> None:
    ids, records = orders(8)
    poison = ids[5]
    batches: list[list[str]] = []

    def batch(session: Session, events: Sequence[CloudEvent[BaseModel]]) -> None:
        batches.append([e.id for e in events])
        for e in events:
            if e.id == poison:
                raise ValueError("one bad event spoils the batch")
            session.execute(insert(effects).values(event_id=e.id))

    consumer = rig.consumer(
        rig.recording_handler(lambda _s, event_id, _nth: event_id == poison), batch
    )
    consumer.process_batch(records)

    assert batches == [ids]
    expected = [i for i in ids if i != poison]
    # Nothing of the failed batch call survived; each event was then applied alone, in order.
    assert committed(rig.engine) == expected
    assert [c for c in rig.calls if c != poison] == expected
    assert rig.calls.count(poison) == 3
    assert inbox_ids(rig.engine) == set(expected)
    assert consumer.stats.applied == 7
    [dead] = rig.producer.sent
    assert dead.value == records[5].value
    assert dead.effects_committed == 5  # per-key order: after the events before it


def test_a_batch_handler_needs_a_single_handler_to_fall_back_to(rig: Rig) -> None:
    with pytest.raises(ValueError, match="without a single handler"):
        EventConsumer(
            settings=ServiceSettings(kafka_bootstrap_servers="127.0.0.1:1"),
            group_id=GROUP,
            handlers={},
            batch_handlers={"order.status_changed": lambda _s, _e: None},
            topics=[TOPIC],
            session_factory=rig.factory,
        )


# The poll loop in a broker outage, against a stand-in for KafkaConsumer.


@dataclass
class PolledRecord:
    topic: str
    partition: int
    key: bytes | None
    value: bytes
    offset: int
    leader_epoch: int = -1


@dataclass
class FakeKafkaConsumer:
    """Serves a partition's records from its position; commits fail while `down` is set."""

    records: list[PolledRecord]
    down: bool = False
    position: int = 0
    commits: list[int] = field(default_factory=list)
    seeks: list[int] = field(default_factory=list)
    polls: int = 0
    on_poll: Callable[[FakeKafkaConsumer], None] = lambda _c: None

    @property
    def partition(self) -> TopicPartition:
        return TopicPartition(TOPIC, 0)

    def poll(self, timeout_ms: int = 0) -> dict[TopicPartition, list[PolledRecord]]:
        self.polls += 1
        self.on_poll(self)
        if self.down:
            raise KafkaConnectionError("socket disconnected")
        batch = self.records[self.position : self.position + 3]
        self.position += len(batch)
        return {self.partition: batch} if batch else {}

    def commit(self, offsets: dict[TopicPartition, Any], timeout_ms: int | None = None) -> None:
        if self.down:
            raise KafkaTimeoutError("Timeout after 2000 ms")
        self.commits.append(offsets[self.partition].offset)

    def assignment(self) -> set[TopicPartition]:
        return {self.partition}

    def seek(self, partition: TopicPartition, offset: int) -> None:
        self.seeks.append(offset)
        self.position = offset

    def close(self) -> None:
        return None


def polled(records: Sequence[Record]) -> list[PolledRecord]:
    return [PolledRecord(TOPIC, 0, r.key, r.value, i) for i, r in enumerate(records)]


def test_a_commit_failing_in_an_outage_is_retried_after_empty_polls(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids, records = orders(6)

    def script(c: FakeKafkaConsumer) -> None:
        # Down from the third poll (after two batches applied) to the eighth; stop at twelve.
        c.down = 3 <= c.polls < 8
        if c.polls >= 12:
            consumer.stop()

    fake = FakeKafkaConsumer(polled(records), on_poll=script)
    consumer = rig.consumer(rig.recording_handler(), retry_interval_s=0.0)
    monkeypatch.setattr(consumer, "_open", lambda: fake)
    consumer.run()

    assert committed(rig.engine) == ids
    assert fake.commits == [3, 6]
    assert consumer.stats.applied == 6


def test_a_batch_interrupted_by_a_broker_error_is_read_again(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids, records = orders(6)
    poison = ids[4]
    records[4] = Record(TOPIC, b"k", b"\x00garbage", 4)
    sends: list[int] = []

    def send(*_args: Any, **_kwargs: Any) -> Sent:
        sends.append(1)
        if len(sends) == 1:
            raise KafkaTimeoutError("the dead-letter topic is unreachable")
        return Sent()

    monkeypatch.setattr(rig.producer, "send", send)

    def script(c: FakeKafkaConsumer) -> None:
        if c.polls >= 6:
            consumer.stop()

    fake = FakeKafkaConsumer(polled(records), on_poll=script)
    consumer = rig.consumer(rig.recording_handler(), retry_interval_s=0.0)
    monkeypatch.setattr(consumer, "_open", lambda: fake)
    consumer.run()

    # The second batch (offsets 3-5) was interrupted after offset 3 was applied, then read again
    # from offset 3: the inbox skipped it, the dead letter went out, offset 5 was applied once.
    assert fake.seeks == [3]
    assert committed(rig.engine) == [i for i in ids if i != poison]
    assert fake.commits == [3, 6]
    assert len(sends) == 2
    assert consumer.stats.dead_lettered == 1
