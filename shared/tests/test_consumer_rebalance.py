"""EventConsumer as one of several members of a consumer group, on a real broker: partitions
handed over in a rebalance keep every event applied once, and offsets never pass the effects."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from consumer_proc import effects, metadata
from kafka.structs import TopicPartition
from pydantic import BaseModel
from sqlalchemy import func, insert, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

import odr_shared.kafka as kafka_module
from odr_shared.db import make_engine, make_session_factory
from odr_shared.events import CloudEvent, OrderStatusChangedV1, build_event, order_id
from odr_shared.group_drill import Leave, run_group_drill
from odr_shared.inbox import INBOX_TABLE
from odr_shared.kafka import EventConsumer, EventHandler, ensure_topics, make_producer
from odr_shared.settings import ServiceSettings
from odr_shared.testing import TansuBroker, sample_order

pytestmark = pytest.mark.kafka

TOPIC = "t.rebalance"


def order_event(i: int) -> tuple[str, CloudEvent[BaseModel]]:
    code = f"R{i}-{uuid.uuid4().hex[:6]}"
    data = OrderStatusChangedV1(
        order_id=order_id("plt_r", code),
        platform_id="plt_r",
        **sample_order(code),  # type: ignore[arg-type]
    )
    event = build_event(
        source="odr/test", event_type="order.status_changed", subject=data.order_id, data=data
    )
    return TOPIC, event


def one_effect_row() -> dict[str, EventHandler]:
    def handler(session: Session, event: CloudEvent[BaseModel]) -> None:
        session.execute(insert(effects).values(event_id=event.id))

    return {"order.status_changed": handler}


# The services' own drills run on PostgreSQL (services/*/tests/**/test_consumer_group.py); this
# one shows that two members sharing a SQLite file (a local run with two workers) hold up too.
@pytest.mark.parametrize("leave", ["stop", "crash"])
def test_two_members_share_the_stream_through_a_join_and_a_leave(
    tmp_path: Path, leave: Leave
) -> None:
    engine = make_engine(f"sqlite:///{tmp_path}/drill.db")
    metadata.create_all(engine)
    sessions = make_session_factory(engine)
    try:
        report = run_group_drill(
            settings=ServiceSettings(),  # type: ignore[call-arg]
            group_id="g-rebalance",
            topics=[TOPIC],
            handlers=one_effect_row,
            session_factory=sessions,
            next_event=order_event,
            leave=leave,
        )
        with engine.connect() as c:
            rows = c.execute(select(effects.c.event_id)).scalars().all()
        # The effects table has no unique key: only the inbox keeps a second copy out.
        assert sorted(rows) == sorted(e.id for e in report.events)
    finally:
        engine.dispose()


# --- the handover itself, member by member --------------------------------------------------


def wait_until(what: str, condition: Callable[[], bool], timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"{what}: not within {timeout_s} s")


@dataclass
class Group:
    """A topic of its own with 4 partitions, a database with an effects table, and members."""

    broker: TansuBroker
    engine: Engine
    topic: str
    group_id: str
    settings: ServiceSettings
    threads: list[tuple[EventConsumer, threading.Thread]]
    failures: list[BaseException]

    def publish(self, count: int) -> list[str]:
        producer = make_producer(self.broker.bootstrap, "rebalance-test")
        ids = []
        try:
            for i in range(count):
                _, event = order_event(i)
                producer.send(
                    self.topic, key=(event.subject or "").encode(), value=event.to_json_bytes()
                ).get(timeout=15)
                ids.append(event.id)
        finally:
            producer.close()
        return ids

    def member(
        self,
        handler: EventHandler | None = None,
        kind: type[EventConsumer] = EventConsumer,
        settings: ServiceSettings | None = None,
    ) -> EventConsumer:
        member = kind(
            settings=settings or self.settings,
            group_id=self.group_id,
            handlers={"order.status_changed": handler or one_effect_row()["order.status_changed"]},
            topics=[self.topic],
            session_factory=make_session_factory(self.engine),
        )

        def run() -> None:
            try:
                member.run()
            except BaseException as exc:  # noqa: BLE001 - the test looks at it
                self.failures.append(exc)

        thread = threading.Thread(target=run, daemon=True)
        self.threads.append((member, thread))
        thread.start()
        return member

    def applied(self) -> int:
        with self.engine.connect() as c:
            return int(c.execute(select(func.count()).select_from(effects)).scalar_one())

    def inbox(self) -> int:
        with self.engine.connect() as c:
            table = metadata.tables[INBOX_TABLE]
            return int(c.execute(select(func.count()).select_from(table)).scalar_one())

    def all_partitions(self) -> frozenset[TopicPartition]:
        return frozenset(TopicPartition(self.topic, p) for p in range(4))


@pytest.fixture
def group(broker: TansuBroker, database_url: str) -> Iterator[Group]:
    topic = f"t.handover.{uuid.uuid4().hex[:6]}"
    ensure_topics(broker.bootstrap, [topic], partitions=4)
    engine = make_engine(database_url)
    metadata.create_all(engine)
    settings = ServiceSettings(  # type: ignore[call-arg]
        kafka_bootstrap_servers=broker.bootstrap, consumer_backoff_initial_s=0.05
    )
    g = Group(broker, engine, topic, f"g-{uuid.uuid4().hex[:6]}", settings, [], [])
    try:
        yield g
    finally:
        for member, _ in g.threads:
            member.stop()
        for _, thread in g.threads:
            thread.join(timeout=30)
        engine.dispose()


class CommitsOnlyOnHandover(EventConsumer):
    """A member whose commit after each batch never gets through (as if refused every time)."""

    def _commit_applied(self) -> None:
        return None


def test_a_member_commits_what_it_applied_when_its_partitions_are_revoked(group: Group) -> None:
    group.publish(40)
    first = group.member(kind=CommitsOnlyOnHandover)
    wait_until("the first member applied the backlog", lambda: group.applied() == 40)
    # The second member joins: the first hands half the partitions over at the rebalance.
    second = group.member()
    wait_until(
        "both members hold partitions",
        lambda: bool(first.assignment) and bool(second.assignment),
    )
    assert not first.assignment & second.assignment
    group.publish(40)
    wait_until("the second batch applied", lambda: group.inbox() == 80)
    # The first leaves: closing revokes the rest of its partitions.
    first.stop()
    wait_until(
        "the second member holds every partition",
        lambda: second.assignment == group.all_partitions(),
    )
    group.publish(20)
    wait_until("the last batch applied", lambda: group.inbox() == 100)
    second.stop()
    assert group.failures == []
    assert group.applied() == 100
    # Had the first member not committed on revoke, the second would have read its events again.
    assert second.stats.duplicates == 0
    assert first.stats.applied > 40
    assert second.stats.applied > 0


def test_a_batch_whose_effects_are_not_committed_is_not_committed_on_handover(
    group: Group,
) -> None:
    ids = group.publish(30)
    stuck = ids[17]
    failing = threading.Event()
    failing.set()
    attempts: list[str] = []

    def handler(session: Session, event: CloudEvent[BaseModel]) -> None:
        if event.id == stuck and failing.is_set():
            attempts.append(event.id)
            raise ConnectionError("the database went away")
        session.execute(insert(effects).values(event_id=event.id))

    # Backoff long enough that the member is stopped while it waits to try the event again.
    slow_retry = group.settings.model_copy(update={"consumer_backoff_initial_s": 60.0})
    first = group.member(handler, settings=slow_retry)
    wait_until("the event failed once", lambda: bool(attempts))
    first.stop()
    group.threads[0][1].join(timeout=30)
    # Stopping in the middle of a retry leaves the member's run with the handler's error.
    assert [type(f) for f in group.failures] == [ConnectionError]
    failing.clear()
    second = group.member(handler)
    wait_until("the second member applied everything", lambda: group.inbox() == 30)
    second.stop()
    assert group.applied() == 30
    with group.engine.connect() as c:
        assert c.execute(select(effects.c.event_id).where(effects.c.event_id == stuck)).all()
    assert second.stats.applied >= 1


def test_a_commit_refused_because_the_group_moved_on_is_not_fatal(
    group: Group, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    group.publish(20)
    release = threading.Event()
    held: list[str] = []

    def slow(session: Session, event: CloudEvent[BaseModel]) -> None:
        if not held:
            held.append(event.id)
            # Longer than max_poll_interval_ms: the client leaves the group meanwhile.
            release.wait(30)
        session.execute(insert(effects).values(event_id=event.id))

    with monkeypatch.context() as m:
        m.setitem(kafka_module.CONSUMER_GROUP_SETTINGS, "max_poll_interval_ms", 1500)
        member = group.member(slow)
        wait_until("the member is in its first batch", lambda: bool(held))
    caplog.set_level(logging.WARNING)
    wait_until(
        "the client left the group: its poll interval expired",
        lambda: any("poll timeout has expired" in r.getMessage() for r in caplog.records),
    )
    release.set()
    wait_until(
        "the refused commit was logged",
        lambda: any("offset commit refused" in r.getMessage() for r in caplog.records),
    )
    # The member is still running: it rejoins, reads the batch again and the inbox skips it.
    group.publish(10)
    wait_until("everything applied", lambda: group.inbox() == 30)
    assert group.failures == []
    assert group.threads[0][1].is_alive()
    member.stop()
    assert group.applied() == 30
