"""kafka-python wrappers: an idempotent acks=all producer with checked futures, topic set-up,
and a consumer loop that applies each event once and commits offsets only after the effect."""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.admin import NewTopic
from kafka.errors import TopicAlreadyExistsError
from pydantic import BaseModel
from sqlalchemy.orm import Session, sessionmaker

from odr_shared.events import CloudEvent, EventParseError, dead_letter_topic, parse_event
from odr_shared.inbox import already_processed, mark_processed
from odr_shared.metrics import EVENTS_CONSUMED, EVENTS_DEAD_LETTERED
from odr_shared.settings import ServiceSettings

log = logging.getLogger(__name__)

# Joins in ~3 s on Tansu and on Kafka; the 3.x default of 45 s makes a join take ~20 s.
CONSUMER_GROUP_SETTINGS: dict[str, Any] = {
    "session_timeout_ms": 6000,
    "heartbeat_interval_ms": 1000,
    "max_poll_interval_ms": 300_000,
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


def ensure_topics(
    bootstrap_servers: str,
    topics: Iterable[str],
    partitions: int = 3,
    replication: int = 1,
    with_dead_letter: bool = True,
) -> None:
    """Create the topics and their dead-letter twins if missing (production: KafkaTopic CRs)."""
    names: list[str] = []
    for t in topics:
        names.append(t)
        if with_dead_letter:
            names.append(dead_letter_topic(t))
    admin = KafkaAdminClient(bootstrap_servers=bootstrap_list(bootstrap_servers))
    try:
        existing = set(admin.list_topics())
        missing = [n for n in names if n not in existing]
        if missing:
            with contextlib.suppress(TopicAlreadyExistsError):
                admin.create_topics(
                    [
                        NewTopic(n, 1 if n.endswith(".dlq") else partitions, replication)
                        for n in missing
                    ]
                )
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


@dataclass
class ConsumerStats:
    applied: int = 0
    duplicates: int = 0
    skipped: int = 0
    dead_lettered: int = 0
    errors: list[str] = field(default_factory=list)


class EventConsumer:
    """Consume topics for one consumer group and apply each event exactly once.

    For each message: parse (failure -> dead-letter at once); look the event id up in the inbox;
    run the handler and record the id in the same transaction; on an error, retry with
    exponential backoff, then dead-letter with the error. Offsets are committed after the batch's
    effects are committed, so a crash re-delivers, and the inbox makes re-delivery harmless.
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
    ) -> None:
        self.settings = settings
        self.group_id = group_id
        self.handlers = handlers
        self.topics = list(topics)
        self.session_factory = session_factory
        self.max_poll_records = max_poll_records
        self._producer = producer
        self._stop = threading.Event()
        self.stats = ConsumerStats()
        self._consumer: KafkaConsumer | None = None

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
            *self.topics,
            bootstrap_servers=bootstrap_list(self.settings.kafka_bootstrap_servers),
            group_id=self.group_id,
            client_id=f"{self.group_id}-consumer",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=self.max_poll_records,
            **CONSUMER_GROUP_SETTINGS,
        )
        return consumer

    def run(self) -> None:
        self._consumer = self._open()
        log.info("consumer started", extra={"group": self.group_id, "topics": self.topics})
        try:
            while not self._stop.is_set():
                batch = self._consumer.poll(timeout_ms=500)
                if not batch:
                    continue
                for _tp, records in batch.items():
                    for record in records:
                        self.process_record(record.topic, record.key, record.value, record.offset)
                self._consumer.commit()
        finally:
            self._consumer.close()

    def process_record(self, topic: str, key: bytes | None, value: bytes, offset: int = -1) -> None:
        try:
            event = parse_event(value)
        except EventParseError as exc:
            # A type nobody here handles is not an error for this group; garbage is.
            self._dead_letter(topic, key, value, str(exc), attempts=0)
            return
        handler = self.handlers.get(event.type)
        if handler is None:
            self.stats.skipped += 1
            return
        delay = self.settings.consumer_backoff_initial_s
        last_error = ""
        for attempt in range(1, self.settings.consumer_max_attempts + 1):
            try:
                applied = self._apply(handler, event)
            except Exception as exc:
                last_error = f"{type(exc).__name__}: {exc}"
                log.warning(
                    "event handler failed",
                    extra={
                        "group": self.group_id,
                        "event_id": event.id,
                        "event_type": event.type,
                        "attempt": attempt,
                        "error": last_error,
                    },
                )
                if attempt < self.settings.consumer_max_attempts:
                    if self._stop.wait(delay):
                        raise
                    delay = min(delay * 2, self.settings.consumer_backoff_max_s)
                continue
            if applied:
                self.stats.applied += 1
                EVENTS_CONSUMED.labels(self.group_id, event.type, "applied").inc()
            else:
                self.stats.duplicates += 1
                EVENTS_CONSUMED.labels(self.group_id, event.type, "duplicate").inc()
            return
        self._dead_letter(
            topic, key, value, last_error, attempts=self.settings.consumer_max_attempts
        )

    def _apply(self, handler: EventHandler, event: CloudEvent[BaseModel]) -> bool:
        with self.session_factory() as session, session.begin():
            if already_processed(session, self.group_id, event.id):
                return False
            handler(session, event)
            mark_processed(session, self.group_id, event.id, event.type)
        return True

    def _dead_letter(
        self, topic: str, key: bytes | None, value: bytes, error: str, attempts: int
    ) -> None:
        self.stats.dead_lettered += 1
        self.stats.errors.append(error)
        EVENTS_DEAD_LETTERED.labels(self.group_id, topic).inc()
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
            ("dlq-trace", traceback.format_exc(limit=3).encode()[:2000]),
        ]
        fut = self.producer.send(
            dead_letter_topic(topic), key=key or b"", value=value, headers=headers
        )
        self.producer.flush(timeout=15)
        fut.get(timeout=15)
