"""Test infrastructure: two members of one consumer group share a live stream while the second
joins and the first leaves, and every event must be applied exactly once (the services' tests)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from kafka import KafkaProducer
from kafka.structs import TopicPartition
from pydantic import BaseModel
from sqlalchemy import MetaData, func, select
from sqlalchemy.orm import Session, sessionmaker

from odr_shared.events import CloudEvent
from odr_shared.inbox import inbox_table
from odr_shared.kafka import (
    ConsumedRecord,
    EventConsumer,
    EventHandler,
    ensure_topics,
    make_producer,
)
from odr_shared.settings import ServiceSettings
from odr_shared.testing import TansuBroker

# How the first member leaves: it stops (its last batch is committed, then it leaves the group),
# or it crashes after a batch's effects are committed and before that batch's offsets are.
Leave = Literal["stop", "crash"]

# Enough applied events in each phase that both members have really worked on their partitions.
PHASE_EVENTS = 8

_INBOX = inbox_table(MetaData())


class MemberCrashed(Exception):
    """Raised by a drill member in place of its offset commit: a process dying at that point."""


@dataclass(frozen=True)
class Application:
    """A handler call by a member: the event, and the member's partitions at that moment."""

    event_id: str
    assignment: frozenset[TopicPartition]


class _Member(EventConsumer):
    """An EventConsumer that can crash right after a batch's effects are committed."""

    crash: threading.Event

    def process_batch(self, records: Sequence[ConsumedRecord]) -> None:
        super().process_batch(records)
        if self.crash.is_set():
            raise MemberCrashed(self.group_id)


@dataclass
class MemberReport:
    name: str
    consumer: EventConsumer
    applications: list[Application] = field(default_factory=list)
    crashed: bool = False
    failure: BaseException | None = None

    def applied_while(self, predicate: Callable[[frozenset[TopicPartition]], bool]) -> int:
        return sum(1 for a in self.applications if predicate(a.assignment))


@dataclass
class DrillReport:
    """What was produced, where it went, and what each member did."""

    events: list[CloudEvent[BaseModel]]
    partition_of: dict[str, TopicPartition]
    all_partitions: frozenset[TopicPartition]
    first: MemberReport
    second: MemberReport


class _Stream(threading.Thread):
    """Produces the events from `next_event(i)`, one every `pause_s` or so, until stopped."""

    def __init__(
        self,
        producer: KafkaProducer,
        next_event: Callable[[int], tuple[str, CloudEvent[BaseModel]]],
        pause_s: float = 0.05,
    ) -> None:
        super().__init__(name="drill-stream", daemon=True)
        self.producer = producer
        self.next_event = next_event
        self.pause_s = pause_s
        self.events: list[CloudEvent[BaseModel]] = []
        self.partition_of: dict[str, TopicPartition] = {}
        self.failure: BaseException | None = None
        self._stop_sending = threading.Event()
        self._lock = threading.Lock()

    def run(self) -> None:
        try:
            while not self._stop_sending.is_set():
                topic, event = self.next_event(len(self.events))
                key = (event.subject or event.id).encode()
                sent = self.producer.send(topic, key=key, value=event.to_json_bytes())
                meta = sent.get(timeout=15)
                with self._lock:
                    self.events.append(event)
                    self.partition_of[event.id] = TopicPartition(meta.topic, meta.partition)
                self._stop_sending.wait(self.pause_s)
        except BaseException as exc:  # noqa: BLE001 - reported by the drill
            self.failure = exc

    def stop(self) -> None:
        self._stop_sending.set()
        if self.ident is not None:
            self.join(timeout=30)

    def produced(self) -> int:
        with self._lock:
            return len(self.events)


class _Drill:
    """The broker, the stream and the members of one drill; see run_group_drill."""

    def __init__(
        self,
        broker: TansuBroker,
        settings: ServiceSettings,
        group_id: str,
        topics: Sequence[str],
        handlers: Callable[[], dict[str, EventHandler]],
        session_factory: sessionmaker[Session],
        next_event: Callable[[int], tuple[str, CloudEvent[BaseModel]]],
        partitions: int,
        timeout_s: float,
    ) -> None:
        self.settings = settings.model_copy(update={"kafka_bootstrap_servers": broker.bootstrap})
        self.group_id = group_id
        self.topics = list(topics)
        self.handlers = handlers
        self.session_factory = session_factory
        self.timeout_s = timeout_s
        self.all_partitions = frozenset(
            TopicPartition(t, p) for t in topics for p in range(partitions)
        )
        ensure_topics(broker.bootstrap, topics, partitions=partitions)
        self.producer = make_producer(broker.bootstrap, "drill-stream")
        self.stream = _Stream(self.producer, next_event)
        self.members: list[tuple[MemberReport, _Member, threading.Thread]] = []
        self.closed = False

    def start(self, name: str) -> MemberReport:
        """A new member, with the service's handlers, in a thread as in a worker of its own."""
        member = _Member(
            settings=self.settings,
            group_id=self.group_id,
            handlers={},
            topics=self.topics,
            session_factory=self.session_factory,
            producer=self.producer,  # for dead letters, which a valid stream should not have
        )
        member.crash = threading.Event()
        report = MemberReport(name, member)

        def recording(handler: EventHandler) -> EventHandler:
            def apply(session: Session, event: CloudEvent[BaseModel]) -> None:
                handler(session, event)
                report.applications.append(Application(event.id, member.assignment))

            return apply

        member.handlers = {t: recording(h) for t, h in self.handlers().items()}

        def run() -> None:
            try:
                member.run()
            except MemberCrashed:
                report.crashed = True
            except BaseException as exc:  # noqa: BLE001 - reported by the drill
                report.failure = exc

        thread = threading.Thread(target=run, name=f"drill-{name}", daemon=True)
        self.members.append((report, member, thread))
        thread.start()
        return report

    def wait(self, what: str, condition: Callable[[], bool]) -> None:
        deadline = time.monotonic() + self.timeout_s
        while time.monotonic() < deadline:
            if self.stream.failure is not None:
                raise AssertionError(f"drill: producing failed: {self.stream.failure!r}")
            for report, _, _ in self.members:
                if report.failure is not None:
                    raise AssertionError(f"drill: the {report.name} member failed") from (
                        report.failure
                    )
            if condition():
                return
            time.sleep(0.05)
        raise AssertionError(f"drill: {what} did not happen within {self.timeout_s:.0f} s")

    def run(self, leave: Leave) -> DrillReport:
        def alone(assignment: frozenset[TopicPartition]) -> bool:
            return assignment == self.all_partitions

        def shared(assignment: frozenset[TopicPartition]) -> bool:
            return bool(assignment) and assignment != self.all_partitions

        self.stream.start()
        first = self.start("first")
        self.wait(
            "the first member applying events alone",
            lambda: first.applied_while(alone) >= PHASE_EVENTS,
        )
        second = self.start("second")
        self.wait(
            "both members applying events after the second joined",
            lambda: (
                first.applied_while(shared) >= PHASE_EVENTS
                and second.applied_while(shared) >= PHASE_EVENTS
            ),
        )
        _, first_member, first_thread = self.members[0]
        if leave == "stop":
            first_member.stop()
        else:
            first_member.crash.set()
        self.wait("the first member leaving", lambda: not first_thread.is_alive())
        self.wait(
            "the second member applying events alone",
            lambda: second.applied_while(alone) >= PHASE_EVENTS,
        )
        self.stream.stop()
        produced = self.stream.produced()
        self.wait(
            f"all {produced} events reaching the inbox",
            lambda: _inbox_count(self.session_factory, self.group_id) >= produced,
        )
        self.close()
        return DrillReport(
            self.stream.events, self.stream.partition_of, self.all_partitions, first, second
        )

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.stream.stop()
        for _, member, _ in self.members:
            member.stop()
        for _, _, thread in self.members:
            thread.join(timeout=30)
        self.producer.close()


def run_group_drill(
    *,
    settings: ServiceSettings,
    group_id: str,
    topics: Sequence[str],
    handlers: Callable[[], dict[str, EventHandler]],
    session_factory: sessionmaker[Session],
    next_event: Callable[[int], tuple[str, CloudEvent[BaseModel]]],
    leave: Leave,
    partitions: int = 6,
    timeout_s: float = 60,
) -> DrillReport:
    """Run the drill on a broker of its own and check what every consumer group must guarantee.

    The first member starts while `next_event` is streamed onto the topics (`topics`, each with
    `partitions` partitions: the group's subscription); the second joins mid-stream; once both
    have applied events on their own partitions the first leaves (`leave`) and the second takes
    over everything. Then it checks: each event id is in the inbox once, both members applied
    some events, each only on partitions it held at the time, disjoint while both were members,
    and no event was applied twice or dead-lettered; after a crash some were read twice (and
    skipped), after a stop none was. It returns the report, so that the caller checks the
    service's own effect rows (one per event, or as the service defines them).
    """
    with TansuBroker() as broker:
        drill = _Drill(
            broker,
            settings,
            group_id,
            topics,
            handlers,
            session_factory,
            next_event,
            partitions,
            timeout_s,
        )
        try:
            report = drill.run(leave)
        finally:
            drill.close()
    _check(report, session_factory, group_id, leave)
    return report


def _inbox_count(session_factory: sessionmaker[Session], group_id: str) -> int:
    with session_factory() as session:
        return int(
            session.execute(
                select(func.count()).select_from(_INBOX).where(_INBOX.c.consumer_group == group_id)
            ).scalar_one()
        )


def _expect(condition: bool, failure: str) -> None:
    if not condition:
        raise AssertionError(f"drill: {failure}")


def _check(
    report: DrillReport, session_factory: sessionmaker[Session], group_id: str, leave: Leave
) -> None:
    produced = [e.id for e in report.events]
    _expect(len(set(produced)) == len(produced), "next_event must give each event its own id")
    with session_factory() as session:
        in_inbox = list(
            session.execute(
                select(_INBOX.c.event_id).where(_INBOX.c.consumer_group == group_id)
            ).scalars()
        )
    _expect(sorted(in_inbox) == sorted(produced), "each event id must be in the inbox once")

    first, second = report.first, report.second
    for member in (first, second):
        stats = member.consumer.stats
        _expect(member.failure is None, f"the {member.name} member failed: {member.failure!r}")
        _expect(stats.dead_lettered == 0, f"the {member.name} member dead-lettered: {stats.errors}")
        _expect(stats.applied > 0, f"the {member.name} member applied nothing")
        _expect(
            all(report.partition_of[a.event_id] in a.assignment for a in member.applications),
            f"the {member.name} member applied an event of a partition it did not hold",
        )
    # Each event's effects were committed once, by one member; a re-delivery was a duplicate.
    applied = first.consumer.stats.applied + second.consumer.stats.applied
    _expect(applied == len(produced), f"{applied} events applied of {len(produced)} produced")

    def partitions_while_shared(member: MemberReport) -> set[TopicPartition]:
        return {
            report.partition_of[a.event_id]
            for a in member.applications
            if a.assignment != report.all_partitions
        }

    first_shared = partitions_while_shared(first)
    second_shared = partitions_while_shared(second)
    _expect(bool(first_shared), "the first member applied nothing while both were members")
    _expect(bool(second_shared), "the second member applied nothing while both were members")
    _expect(not first_shared & second_shared, "while both were members they shared a partition")

    _expect(first.crashed == (leave == "crash"), f"the first member was to {leave}")
    duplicates = first.consumer.stats.duplicates + second.consumer.stats.duplicates
    if leave == "crash":
        # The crashed batch's offsets were never committed: the second member read it again and
        # the inbox stopped every event in it.
        _expect(duplicates > 0, "the crashed batch was not read again")
    else:
        # Each handover committed the offsets of everything applied before it: nothing came twice.
        _expect(duplicates == 0, f"{duplicates} events were delivered twice in clean handovers")
