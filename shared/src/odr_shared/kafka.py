"""kafka-python wrappers: an idempotent acks=all producer with checked futures, topic set-up,
and a consumer loop that applies each event once, a poll's worth per transaction, and commits
offsets only after the effects, also when a rebalance hands its partitions to another member
and while the broker is away for minutes."""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from kafka import (
    AsyncConsumerRebalanceListener,
    KafkaAdminClient,
    KafkaConsumer,
    KafkaProducer,
)
from kafka.admin import NewTopic
from kafka.errors import (
    CommitFailedError,
    KafkaError,
    RebalanceInProgressError,
    TopicAlreadyExistsError,
)
from kafka.structs import OffsetAndMetadata, TopicPartition
from pydantic import BaseModel
from sqlalchemy.orm import Session, sessionmaker

from odr_shared.events import CloudEvent, EventParseError, dead_letter_topic, parse_event
from odr_shared.inbox import (
    already_processed,
    mark_many_processed,
    mark_processed,
    processed_among,
)
from odr_shared.metrics import EVENTS_CONSUMED, EVENTS_DEAD_LETTERED
from odr_shared.privacy.opening import KeyUnavailable, Opener, redacted
from odr_shared.settings import ServiceSettings, TopicSettings

log = logging.getLogger(__name__)

# Joins in ~3 s on Tansu and on Kafka; the 3.x default of 45 s makes a join take ~20 s.
CONSUMER_GROUP_SETTINGS: dict[str, Any] = {
    "session_timeout_ms": 6000,
    "heartbeat_interval_ms": 1000,
    "max_poll_interval_ms": 300_000,
}

# After a broker outage clients come back within seconds: kafka-python's reconnect backoff grows
# to 30 s by default, so a worker could sit idle half a minute after the broker is back.
RECONNECT_SETTINGS: dict[str, Any] = {
    "reconnect_backoff_ms": 100,
    "reconnect_backoff_max_ms": 2000,
}


def bootstrap_list(servers: str) -> list[str]:
    return [s.strip() for s in servers.split(",") if s.strip()]


def make_producer(
    bootstrap_servers: str, client_id: str | None = None, **overrides: Any
) -> KafkaProducer:
    config: dict[str, Any] = {
        "bootstrap_servers": bootstrap_list(bootstrap_servers),
        "client_id": client_id or "odr-producer",
        "acks": "all",
        "enable_idempotence": True,
        "linger_ms": 5,
        "retries": 5,
        "max_in_flight_requests_per_connection": 5,
        "request_timeout_ms": 15_000,
        # A send waits at most this long for metadata when the broker is away; the outbox
        # keeps the rows and the relay tries again.
        "max_block_ms": 10_000,
        **RECONNECT_SETTINGS,
    }
    config.update(overrides)
    return KafkaProducer(**config)


@dataclass(frozen=True)
class OutgoingMessage:
    topic: str
    key: str
    value: bytes
    headers: Sequence[tuple[str, bytes]] = ()


def send_all(
    producer: KafkaProducer, messages: Iterable[OutgoingMessage], timeout_s: float = 15
) -> None:
    """Send and wait for every broker acknowledgement; raises on the first failure."""
    futures = [
        producer.send(m.topic, key=m.key.encode(), value=m.value, headers=list(m.headers))
        for m in messages
    ]
    producer.flush(timeout=timeout_s)
    for fut in futures:
        fut.get(timeout=timeout_s)


# Dead letters are read by people and replays, not by a group that scales out.
DEAD_LETTER_PARTITIONS = 1


def ensure_topics(
    bootstrap_servers: str,
    topics: Iterable[str],
    partitions: int | None = None,
    replication: int | None = None,
    with_dead_letter: bool = True,
) -> None:
    """Create the topics and their dead-letter twins if missing (production: KafkaTopic CRs).

    Partitions and replicas not given come from ``KAFKA_TOPIC_PARTITIONS`` and
    ``KAFKA_TOPIC_REPLICATION``; dead-letter twins get one partition. Topics that exist keep theirs.
    """
    if partitions is None or replication is None:
        layout = TopicSettings()
        partitions = layout.partitions if partitions is None else partitions
        replication = layout.replication if replication is None else replication
    wanted: dict[str, int] = {}
    for t in topics:
        wanted[t] = partitions
        if with_dead_letter:
            wanted[dead_letter_topic(t)] = DEAD_LETTER_PARTITIONS
    admin = KafkaAdminClient(bootstrap_servers=bootstrap_list(bootstrap_servers))
    try:
        existing = set(admin.list_topics())
        missing = [NewTopic(n, k, replication) for n, k in wanted.items() if n not in existing]
        if missing:
            with contextlib.suppress(TopicAlreadyExistsError):
                admin.create_topics(missing)
    finally:
        admin.close()


def broker_reachable(bootstrap_servers: str, timeout_s: float = 1.0) -> bool:
    """A cheap readiness check: can we open a TCP connection to any bootstrap server?"""
    for server in bootstrap_list(bootstrap_servers):
        host, _, port = server.rpartition(":")
        try:
            with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s):
                return True
        except OSError:
            continue
    return False


EventHandler = Callable[[Session, CloudEvent[BaseModel]], None]
# Applies several events of one type, in the order given, in the caller's transaction: the same
# effects as the single handler applied to each in turn.
BatchHandler = Callable[[Session, Sequence[CloudEvent[BaseModel]]], None]


class ConsumedRecord(Protocol):
    """What the consumer reads of a kafka-python ConsumerRecord."""

    @property
    def topic(self) -> str: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes: ...
    @property
    def offset(self) -> int: ...


@dataclass(frozen=True)
class _Parsed:
    record: ConsumedRecord
    event: CloudEvent[BaseModel]
    handler: EventHandler


@dataclass(frozen=True)
class _Record:
    topic: str
    key: bytes | None
    value: bytes
    offset: int


class _HandlerFailed(Exception):
    """Carries a handler's error out of the batch transaction so that it rolls back.

    `index` is the failing event's place in the run; for a batch handler, the events from
    `index` to `end` (exclusive) were handed to it together and any of them may be the culprit.
    """

    def __init__(self, index: int, error: Exception, end: int | None = None) -> None:
        super().__init__(index, error)
        self.index = index
        self.error = error
        self.end = end


@dataclass
class ConsumerStats:
    applied: int = 0
    duplicates: int = 0
    skipped: int = 0
    dead_lettered: int = 0
    errors: list[str] = field(default_factory=list)


class EventConsumer:
    """Consume topics for one consumer group and apply each event exactly once.

    A poll's records are applied together: parse each (events of types with no handler are
    skipped), look all their ids up in the inbox at once, run the handlers in poll order and record
    the new ids, all in one transaction, so one commit covers up to `max_poll_records` events. An id
    already in the inbox, or seen earlier in the batch, is a duplicate and its handler is not run.

    Errors are handled as if each event had its own transaction. When a record at position k does
    not parse, or its handler raises, the events before k are applied and committed on their own,
    and k alone gets the per-record treatment: garbage is dead-lettered at once; a failing handler
    is retried with exponential backoff (the batch's try counts as the first attempt), then
    dead-lettered with the error. Batching resumes after k. If the batch transaction fails outside
    a handler (its commit, the inbox insert losing a race), its events are applied one by one.
    Offsets are committed after the poll's effects are committed, so a crash re-delivers, and the
    inbox makes re-delivery harmless.

    With `batch_handlers`, consecutive new events (not in the inbox) of a type that has one are
    handed to it together, in the same transaction, instead of one handler call each. If it
    raises, the transaction rolls back and those events are applied alone through the single
    handler (so a poison event is still retried and dead-lettered, and the others applied).

    Several instances with one `group_id` share the topics' partitions. When the group rebalances
    (a member joins, leaves or dies), a member hands over its partitions between two polls, so
    no batch is half-applied then; before giving them up it commits the offsets of what it has
    applied and not yet committed (`_Handover`). It never commits past a batch whose effects are
    not committed. A commit the group refuses because it has moved on is logged, not fatal: the
    partitions' next owner reads from the last committed offset and the inbox skips what this
    member already applied.

    A broker outage does not stop the member. A failed offset commit (the broker unreachable,
    `commit_timeout_s` passed) is logged and tried again on the next rounds, also after empty
    polls, so what was applied is committed once the broker is back. A batch whose handling a
    broker error interrupted (a dead letter that could not be sent) is read again from its first
    offset, not skipped; the inbox skips what of it was applied. The clients reconnect within
    about 2 s of the broker's return (`RECONNECT_SETTINGS`).
    """

    def __init__(
        self,
        *,
        settings: ServiceSettings,
        group_id: str,
        handlers: dict[str, EventHandler],
        topics: Sequence[str],
        session_factory: sessionmaker[Session],
        producer: KafkaProducer | None = None,
        max_poll_records: int = 200,
        batch_handlers: Mapping[str, BatchHandler] | None = None,
        commit_timeout_s: float = 10.0,
        retry_interval_s: float = 1.0,
        consumer_config: Mapping[str, Any] | None = None,
        opener: Opener | None = None,
    ) -> None:
        self.settings = settings
        # Opens sealed (v2) events for handlers that need the personal data; without one they
        # read sealed events without it (odr_shared.privacy.redacted).
        self.opener = opener
        self.group_id = group_id
        self.handlers = handlers
        self.batch_handlers = dict(batch_handlers or {})
        # A batch handler's fallback is the single handler, so each needs one.
        unpaired = set(self.batch_handlers).difference(handlers)
        if unpaired:
            raise ValueError(f"batch handlers without a single handler: {sorted(unpaired)}")
        self.commit_timeout_s = commit_timeout_s
        # How long to wait before trying the broker again after it failed us.
        self.retry_interval_s = retry_interval_s
        # Extra KafkaConsumer settings (tests: short request timeouts).
        self.consumer_config = dict(consumer_config or {})
        self._next_commit_try = 0.0
        self.topics = list(topics)
        self.session_factory = session_factory
        self.max_poll_records = max_poll_records
        self._producer = producer
        self._stop = threading.Event()
        self.stats = ConsumerStats()
        self._consumer: KafkaConsumer | None = None
        # The partitions the group gave this member, as of the last rebalance.
        self.assignment: frozenset[TopicPartition] = frozenset()
        # Per partition, the offset after the last record whose batch's effects are committed,
        # and the last such offset the group accepted. The rebalance listener runs on the
        # client's I/O thread, but only while this member's thread waits in poll() or close().
        self._applied: dict[TopicPartition, OffsetAndMetadata] = {}
        self._committed: dict[TopicPartition, int] = {}

    @property
    def producer(self) -> KafkaProducer:
        if self._producer is None:
            self._producer = make_producer(
                self.settings.kafka_bootstrap_servers, f"{self.group_id}-dlq"
            )
        return self._producer

    def stop(self) -> None:
        self._stop.set()

    def _open(self) -> KafkaConsumer:
        consumer = KafkaConsumer(
            bootstrap_servers=bootstrap_list(self.settings.kafka_bootstrap_servers),
            group_id=self.group_id,
            client_id=f"{self.group_id}-consumer",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=self.max_poll_records,
            **{**CONSUMER_GROUP_SETTINGS, **RECONNECT_SETTINGS, **self.consumer_config},
        )
        consumer.subscribe(self.topics, listener=_Handover(self, consumer))
        return consumer

    def run(self) -> None:
        self._consumer = self._open()
        log.info("consumer started", extra={"group": self.group_id, "topics": self.topics})
        try:
            while not self._stop.is_set():
                try:
                    batch = self._consumer.poll(timeout_ms=500)
                except KafkaError as exc:
                    self._broker_failed("poll failed", exc)
                    continue
                if batch:
                    try:
                        self.process_batch(
                            [record for records in batch.values() for record in records]
                        )
                    except KafkaError as exc:
                        # A dead letter could not be sent: read the batch again once the broker
                        # is back; the inbox skips what of it was applied.
                        self._rewind(batch)
                        self._broker_failed("batch interrupted by a broker error", exc)
                        continue
                    # Only now, with the whole poll's effects committed, do its offsets count.
                    for partition, records in batch.items():
                        last = records[-1]
                        self._applied[partition] = OffsetAndMetadata(
                            last.offset + 1, "", last.leader_epoch
                        )
                # Also after an empty poll: a commit that failed in an outage is retried here.
                self._commit_applied()
        finally:
            # Leaving the group revokes the partitions: the listener commits what was applied.
            self._consumer.close()

    def _uncommitted(self, partitions: Iterable[TopicPartition]) -> dict[TopicPartition, Any]:
        return {
            p: self._applied[p]
            for p in partitions
            if p in self._applied and self._committed.get(p) != self._applied[p].offset
        }

    def _broker_failed(self, what: str, exc: KafkaError) -> None:
        log.warning(
            f"{what}; trying again",
            extra={"group": self.group_id, "error": f"{type(exc).__name__}: {exc}"},
        )
        self._stop.wait(self.retry_interval_s)

    def _rewind(self, batch: Mapping[TopicPartition, Sequence[Any]]) -> None:
        """Seek each partition of an unfinished batch back to its first record (what follows the
        last applied one); a partition the group has taken away is read by its next owner."""
        assert self._consumer is not None
        assigned = self._consumer.assignment()
        for partition, records in batch.items():
            if records and partition in assigned:
                self._consumer.seek(partition, records[0].offset)

    def _commit_applied(self) -> None:
        assert self._consumer is not None
        offsets = self._uncommitted(self._applied)
        if not offsets or time.monotonic() < self._next_commit_try:
            return
        try:
            self._consumer.commit(offsets, timeout_ms=int(self.commit_timeout_s * 1000))
        except (CommitFailedError, RebalanceInProgressError) as exc:
            self._commit_refused(offsets, exc)
            return
        except KafkaError as exc:
            # The broker is away (a timeout, a lost connection): keep the offsets and try again.
            log.warning(
                "offset commit failed; it is tried again, and until then a restart re-reads "
                "these events, which the inbox skips",
                extra={
                    "group": self.group_id,
                    "partitions": _names(offsets),
                    "error": f"{type(exc).__name__}: {exc}",
                },
            )
            self._next_commit_try = time.monotonic() + self.retry_interval_s
            return
        self._next_commit_try = 0.0
        self._committed.update({p: o.offset for p, o in offsets.items()})

    def _commit_refused(self, offsets: dict[TopicPartition, Any], exc: Exception) -> None:
        log.warning(
            "offset commit refused: the group has moved on; the partitions' next owner reads "
            "them again and the inbox skips what was applied",
            extra={
                "group": self.group_id,
                "partitions": _names(offsets),
                "error": f"{type(exc).__name__}: {exc}",
            },
        )

    def _forget(self, partitions: Iterable[TopicPartition]) -> None:
        # Another member owns them now; what we knew of their offsets is stale.
        for p in partitions:
            self._applied.pop(p, None)
            self._committed.pop(p, None)
        self.assignment = self.assignment.difference(partitions)

    def process_batch(self, records: Sequence[ConsumedRecord]) -> None:
        """Apply a poll's records, in the order given, in as few transactions as errors allow."""
        run: list[_Parsed] = []
        for record in records:
            try:
                event = parse_event(record.value)
            except EventParseError:
                # What came before goes first: the dead letter keeps its place in its key's order.
                self._apply_run(run)
                run = []
                self.process_record(record.topic, record.key, record.value, record.offset)
                continue
            handler = self.handlers.get(event.type)
            if handler is None:
                self.stats.skipped += 1
                continue
            run.append(_Parsed(record, event, handler))
        if self.opener is not None and run:
            # One key request per owning service for the whole poll, not one per event.
            self.opener.prefetch(p.event for p in run)
        self._apply_run(run)

    def _apply_run(self, run: Sequence[_Parsed]) -> None:
        while run:
            try:
                failed = self._apply_together(run)
            except Exception as exc:  # noqa: BLE001 - any database error: each event retries alone
                log.warning(
                    "batch transaction failed; applying its events one by one",
                    extra={
                        "group": self.group_id,
                        "events": len(run),
                        "error": f"{type(exc).__name__}: {exc}",
                    },
                )
                # Nothing of the run was committed; the inbox stops any event that another
                # consumer of the group committed meanwhile.
                for item in run:
                    self._apply_with_retries(item)
                return
            if failed is None:
                return
            # The prefix has just run cleanly, but a second run is a new transaction that can fail
            # too (a lock, a lost connection): it gets the same treatment, not blind trust.
            self._apply_run(run[: failed.index])
            if failed.end is None:
                self._apply_with_retries(run[failed.index], first_error=failed.error)
                run = run[failed.index + 1 :]
                continue
            log.warning(
                "batch handler failed; applying its events one by one",
                extra={
                    "group": self.group_id,
                    "events": failed.end - failed.index,
                    "error": f"{type(failed.error).__name__}: {failed.error}",
                },
            )
            for item in run[failed.index : failed.end]:
                self._apply_with_retries(item)
            run = run[failed.end :]

    def _apply_together(self, run: Sequence[_Parsed]) -> _HandlerFailed | None:
        """Apply the run in one transaction; on a handler's error roll it all back and say where.

        Any other error (the inbox query or insert, the commit) is raised.
        """
        outcomes: list[tuple[str, str]] = []
        try:
            with self.session_factory() as session, session.begin():
                seen = processed_among(session, self.group_id, (p.event.id for p in run))
                new: list[tuple[str, str]] = []
                # Consecutive new events of a type with a batch handler, not yet handled.
                group: list[tuple[int, _Parsed]] = []
                for index, item in enumerate(run):
                    event = item.event
                    if event.id in seen:
                        outcomes.append((event.type, "duplicate"))
                        continue
                    seen.add(event.id)
                    if group and group[0][1].event.type != event.type:
                        self._handle_group(session, group)
                        group = []
                    if event.type in self.batch_handlers:
                        group.append((index, item))
                    else:
                        self._handle_one(session, index, item)
                    new.append((event.id, event.type))
                    outcomes.append((event.type, "applied"))
                if group:
                    self._handle_group(session, group)
                mark_many_processed(session, self.group_id, new)
        except _HandlerFailed as failed:
            return failed
        for event_type, outcome in outcomes:
            self._count(event_type, outcome)
        return None

    def _readable(self, event: CloudEvent[BaseModel]) -> CloudEvent[BaseModel] | None:
        """The event as handlers read it: sealed personal fields opened, or left out.

        None: nothing to apply (an order whose buyer was erased, or that this consumer may not
        read); the event still counts as processed. A key owner out of reach raises
        KeyUnavailable, which is retried like any handler error.
        """
        if self.opener is not None:
            return self.opener.open(event)
        return redacted(event)

    def _handle_one(self, session: Session, index: int, item: _Parsed) -> None:
        try:
            event = self._readable(item.event)
            if event is not None:
                item.handler(session, event)
            # Flush here so a constraint violation is blamed on this event's handler, as in
            # its own transaction, not on the commit of them all.
            session.flush()
        except Exception as exc:
            raise _HandlerFailed(index, exc) from exc

    def _handle_group(self, session: Session, group: Sequence[tuple[int, _Parsed]]) -> None:
        if len(group) == 1:
            self._handle_one(session, *group[0])
            return
        first, last = group[0][0], group[-1][0]
        try:
            events = [self._readable(item.event) for _, item in group]
            self.batch_handlers[group[0][1].event.type](
                session, [e for e in events if e is not None]
            )
            session.flush()
        except Exception as exc:
            raise _HandlerFailed(first, exc, end=last + 1) from exc

    def process_record(self, topic: str, key: bytes | None, value: bytes, offset: int = -1) -> None:
        """Apply one record in its own transaction: what a batch falls back to on an error."""
        try:
            event = parse_event(value)
        except EventParseError as exc:
            # A type nobody here handles is not an error for this group; garbage is.
            self._dead_letter(topic, key, value, str(exc), attempts=0, cause=exc)
            return
        handler = self.handlers.get(event.type)
        if handler is None:
            self.stats.skipped += 1
            return
        self._apply_with_retries(_Parsed(_Record(topic, key, value, offset), event, handler))

    def _apply_with_retries(self, item: _Parsed, first_error: Exception | None = None) -> None:
        """Apply one event alone, retrying with backoff, then dead-letter it.

        `first_error` is the error of an attempt already made (in a batch): it counts as
        attempt 1, so an event gets the same number of tries and waits either way.

        A sealed event whose key owner cannot be reached (KeyUnavailable) is not the event's
        fault: it waits for the owner (backoff up to CONSUMER_BACKOFF_MAX_S), as long as it
        takes, and never counts those tries towards the dead letter. Later events of its
        partitions wait behind it, as they would for a broker outage.
        """
        event = item.event
        error = first_error
        delay = self.settings.consumer_backoff_initial_s
        last_error = ""
        last_exc: Exception | None = None
        attempt = 1
        while attempt <= self.settings.consumer_max_attempts:
            if error is None:
                try:
                    applied = self._apply(item.handler, event)
                except Exception as exc:  # noqa: BLE001 - retried, then dead-lettered with it
                    error = exc
                else:
                    self._count(event.type, "applied" if applied else "duplicate")
                    return
            last_error = f"{type(error).__name__}: {error}"
            last_exc = error
            waiting_for_keys = isinstance(error, KeyUnavailable)
            log.warning(
                "waiting for a key owner" if waiting_for_keys else "event handler failed",
                extra={
                    "group": self.group_id,
                    "event_id": event.id,
                    "event_type": event.type,
                    "attempt": attempt,
                    "error": last_error,
                },
            )
            if waiting_for_keys or attempt < self.settings.consumer_max_attempts:
                if self._stop.wait(delay):
                    raise error
                delay = min(delay * 2, self.settings.consumer_backoff_max_s)
            if not waiting_for_keys:
                attempt += 1
            error = None
        record = item.record
        self._dead_letter(
            record.topic,
            record.key,
            record.value,
            last_error,
            attempts=self.settings.consumer_max_attempts,
            cause=last_exc,
        )

    def _apply(self, handler: EventHandler, event: CloudEvent[BaseModel]) -> bool:
        with self.session_factory() as session, session.begin():
            if already_processed(session, self.group_id, event.id):
                return False
            readable = self._readable(event)
            if readable is not None:
                handler(session, readable)
            mark_processed(session, self.group_id, event.id, event.type)
        return True

    def _count(self, event_type: str, outcome: str) -> None:
        if outcome == "applied":
            self.stats.applied += 1
        else:
            self.stats.duplicates += 1
        EVENTS_CONSUMED.labels(self.group_id, event_type, outcome).inc()

    def _dead_letter(
        self,
        topic: str,
        key: bytes | None,
        value: bytes,
        error: str,
        attempts: int,
        cause: BaseException | None = None,
    ) -> None:
        log.error(
            "event dead-lettered",
            extra={"group": self.group_id, "topic": topic, "error": error, "attempts": attempts},
        )
        headers = [
            ("dlq-error", error.encode()[:4000]),
            ("dlq-source-topic", topic.encode()),
            ("dlq-consumer-group", self.group_id.encode()),
            ("dlq-attempts", str(attempts).encode()),
            ("dlq-at", str(time.time()).encode()),
            # The failure's own traceback (the innermost frames are the telling ones); this is
            # not always called inside the except block that caught it.
            (
                "dlq-trace",
                "".join(traceback.format_exception(cause)).encode()[-2000:] if cause else b"",
            ),
        ]
        fut = self.producer.send(
            dead_letter_topic(topic), key=key or b"", value=value, headers=headers
        )
        self.producer.flush(timeout=15)
        fut.get(timeout=15)
        # Counted once it is on the dead-letter topic: a send that failed (the broker away)
        # makes the batch be read again, and the event tried and dead-lettered again.
        self.stats.dead_lettered += 1
        self.stats.errors.append(error)
        EVENTS_DEAD_LETTERED.labels(self.group_id, topic).inc()


def _names(partitions: Iterable[TopicPartition]) -> list[str]:
    return sorted(f"{p.topic}[{p.partition}]" for p in partitions)


class _Handover(AsyncConsumerRebalanceListener):  # type: ignore[misc] # kafka-python is untyped
    """What an EventConsumer does when the group moves its partitions.

    The client awaits these on its I/O thread, where a blocking call such as commit() is refused:
    hence the async listener, which awaits the commit and keeps heartbeats going meanwhile.
    """

    def __init__(self, member: EventConsumer, consumer: KafkaConsumer) -> None:
        self.member = member
        self.consumer = consumer

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        member = self.member
        offsets = member._uncommitted(revoked)
        if offsets:
            try:
                await self.consumer.commit_async(offsets, callback=_reported_here)
            except KafkaError as exc:
                member._commit_refused(offsets, exc)
            else:
                member._committed.update({p: o.offset for p, o in offsets.items()})
        if revoked:  # a first join revokes nothing
            log.info(
                "partitions revoked",
                extra={
                    "group": member.group_id,
                    "partitions": _names(revoked),
                    "committed_on_revoke": _names(offsets),
                },
            )
        member._forget(revoked)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        # Eager rebalancing hands over the whole assignment, cooperative only what is added.
        self.member.assignment = self.member.assignment.union(assigned)
        log.info(
            "partitions assigned",
            extra={"group": self.member.group_id, "partitions": _names(assigned)},
        )

    async def on_partitions_lost(self, lost: set[TopicPartition]) -> None:
        # Evicted (a session or poll interval expired): their offsets can no longer be committed.
        log.warning(
            "partitions lost: this member was evicted from the group; their next owner reads "
            "from the last committed offset and the inbox skips what was applied",
            extra={"group": self.member.group_id, "partitions": _names(lost)},
        )
        self.member._forget(lost)


def _reported_here(_offsets: object, _outcome: object) -> None:
    """The awaited commit's outcome is handled where it is awaited, not by the client later."""
