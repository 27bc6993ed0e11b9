"""The send loop: picks due deliveries, holds them for quiet hours and the rate limit, sends
them through their channel, retries with backoff, and dead-letters what finally fails.

It runs beside the Kafka consumer, not inside it, so a slow provider never holds up
consumption. Each step is a short transaction: nothing is locked while a provider is called.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time as _time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol

from kafka import KafkaProducer
from sqlalchemy import func, or_, select, true, update
from sqlalchemy.orm import Session, sessionmaker

from notifications.channels.base import Channel, Message, ProviderResult
from notifications.deliveries import content_from_json
from notifications.models import Delivery
from notifications.policy import QuietHours, RateLimit, RetryPolicy
from odr_shared.crypto import DataCipher
from odr_shared.db import utcnow
from odr_shared.events import NOTIFICATIONS_TOPIC, dead_letter_topic
from odr_shared.kafka import OutgoingMessage, send_all
from odr_shared.logs import scrub
from odr_shared.worker import Stoppable

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]


class DeadLetters(Protocol):
    def publish(self, topic: str, key: str, value: bytes, headers: list[tuple[str, bytes]]) -> None:
        """Publish and wait for the broker's acknowledgement; raise if it did not come."""
        ...


class KafkaDeadLetters:
    def __init__(self, producer: KafkaProducer) -> None:
        self.producer = producer

    def publish(self, topic: str, key: str, value: bytes, headers: list[tuple[str, bytes]]) -> None:
        send_all(self.producer, [OutgoingMessage(topic, key, value, headers)])


def delivery_reference(d: Delivery) -> str:
    """Stable per (event, recipient, channel), unique across databases: the idempotency key."""
    digest = hashlib.sha256(f"{d.event_id}|{d.recipient_hash}|{d.channel}".encode()).hexdigest()
    return f"odr-{digest[:32]}"


@dataclass
class DispatchStats:
    sent: int = 0
    retried: int = 0
    failed: int = 0
    held: int = 0
    dead_lettered: int = 0
    errors: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Claim:
    delivery_id: int
    attempt: int
    channel: str
    message: Message


class Dispatcher(Stoppable):
    def __init__(
        self,
        *,
        session_factory: sessionmaker[Session],
        cipher: DataCipher,
        channels: Mapping[str, Channel],
        dead_letters: DeadLetters,
        retry: RetryPolicy,
        rate_limit: RateLimit,
        quiet_hours: QuietHours,
        clock: Clock = utcnow,
        batch_size: int = 50,
        lease: timedelta = timedelta(minutes=2),
        poll_interval_s: float = 0.5,
        concurrency: int = 8,
        urgent_only: bool = False,
    ) -> None:
        self.sessions = session_factory
        self.cipher = cipher
        self.channels = channels
        self.dead_letters = dead_letters
        self.retry = retry
        self.rate_limit = rate_limit
        self.quiet_hours = quiet_hours
        self.clock = clock
        self.batch_size = batch_size
        self.lease = lease
        self.poll_interval_s = poll_interval_s
        self.concurrency = max(1, concurrency)
        # The urgent lane (one-time codes) runs beside the main loop, so a code never waits
        # for a round of slow sends; the main loop sends urgent ones too when it gets there.
        self.urgent_only = urgent_only
        self.stats = DispatchStats()
        self._stop = threading.Event()
        self._stats_lock = threading.Lock()
        # Sends run in parallel, so one slow provider call does not hold up a one-time code
        # claimed in the same round.
        self._pool: ThreadPoolExecutor | None = None

    # -- the loop -----------------------------------------------------------------------------

    def run(self) -> None:
        log.info("dispatcher started", extra={"urgent_only": self.urgent_only})
        try:
            while not self._stop.is_set():
                try:
                    busy = self.run_once()
                except Exception as exc:  # a database blip must not end the loop
                    log.exception("dispatch round failed")
                    self._count("errors", f"{type(exc).__name__}: {exc}")
                    busy = 0
                if not busy:
                    self._stop.wait(self.poll_interval_s)
        finally:
            self.close()

    def stop(self) -> None:
        self._stop.set()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    def run_once(self) -> int:
        """One round: claim due deliveries, send them, record the outcomes, dead-letter.
        Returns how many deliveries it touched (0: nothing to do)."""
        claims = self.claim()
        if len(claims) > 1 and self.concurrency > 1:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.concurrency, "notifications-send")
            list(self._pool.map(self._deliver, claims))
        else:
            for claim in claims:
                self._deliver(claim)
        if self.urgent_only:
            return len(claims)
        return len(claims) + self.dead_letter_failed()

    def _deliver(self, claim: Claim) -> None:
        self.record(claim, self._send(claim))

    def _count(self, name: str, error: str | None = None) -> None:
        with self._stats_lock:
            if error is not None:
                self.stats.errors.append(error)
            else:
                setattr(self.stats, name, getattr(self.stats, name) + 1)

    # -- steps --------------------------------------------------------------------------------

    def claim(self) -> list[Claim]:
        now = self.clock()
        claims: list[Claim] = []
        with self.sessions() as session, session.begin():
            due = (
                select(Delivery)
                .where(
                    or_(Delivery.status == "pending", Delivery.status == "sending"),
                    Delivery.next_attempt_at <= now,
                    Delivery.urgent.is_(True) if self.urgent_only else true(),
                )
                # One-time codes first: they are never delayed behind a backlog.
                .order_by(Delivery.urgent.desc(), Delivery.next_attempt_at, Delivery.id)
                .limit(self.batch_size)
                .with_for_update(skip_locked=True)
            )
            for d in list(session.execute(due).scalars()):
                if d.recipient_enc is None or d.content_enc is None:
                    # Erased meanwhile (notifications.privacy cancels what it erases): never sent.
                    d.status, d.next_attempt_at = "cancelled", None
                    continue
                if not d.urgent:
                    hold = self.quiet_hours.release_at(now) or self._rate_release(session, d, now)
                    if hold is not None:
                        d.status, d.next_attempt_at = "pending", hold
                        self._count("held")
                        continue
                d.status = "sending"
                d.attempts += 1
                d.next_attempt_at = now + self.lease
                session.flush()
                content = content_from_json(self.cipher.decrypt(d.content_enc))
                claims.append(
                    Claim(
                        delivery_id=d.id,
                        attempt=d.attempts,
                        channel=d.channel,
                        message=Message(
                            to=self.cipher.decrypt(d.recipient_enc),
                            text=content.text,
                            subject=content.subject,
                            html=content.html,
                            reference=delivery_reference(d),
                            language=d.language,
                        ),
                    )
                )
        return claims

    def _rate_release(self, session: Session, d: Delivery, now: datetime) -> datetime | None:
        if self.rate_limit.max_messages <= 0:
            return None
        window_start = now - self.rate_limit.window
        sent = (
            session.execute(
                select(Delivery.sent_at).where(
                    Delivery.recipient_hash == d.recipient_hash,
                    Delivery.urgent.is_(False),
                    Delivery.status == "sent",
                    Delivery.sent_at > window_start,
                )
            )
            .scalars()
            .all()
        )
        # Sends in flight count as sent now: they will be, a moment from now.
        in_flight = session.execute(
            select(func.count())
            .select_from(Delivery)
            .where(
                Delivery.recipient_hash == d.recipient_hash,
                Delivery.urgent.is_(False),
                Delivery.status == "sending",
                Delivery.id != d.id,
            )
        ).scalar_one()
        times = [t for t in sent if t is not None] + [now] * int(in_flight)
        return self.rate_limit.release_at(now, times)

    def _send(self, claim: Claim) -> ProviderResult:
        channel = self.channels.get(claim.channel)
        if channel is None:
            return ProviderResult.failed(f"no {claim.channel} channel configured")
        try:
            return channel.send(claim.message)
        except Exception as exc:  # an adapter bug must not end the loop
            log.exception("channel raised", extra={"channel": claim.channel})
            return ProviderResult.retry(f"{type(exc).__name__}: {exc}")

    def record(self, claim: Claim, result: ProviderResult) -> None:
        now = self.clock()
        values: dict[str, object]
        if result.outcome == "sent":
            values = {
                "status": "sent",
                "sent_at": now,
                "provider_id": result.provider_id,
                "last_error": None,
                "next_attempt_at": None,
            }
            self._count("sent")
        else:
            error = scrub(result.error or "unknown error")[:2000]
            retry_at = (
                self.retry.next_attempt_at(now, claim.attempt)
                if result.outcome == "retry"
                else None
            )
            if retry_at is not None:
                values = {"status": "pending", "next_attempt_at": retry_at, "last_error": error}
                self._count("retried")
            else:
                values = {"status": "failed", "next_attempt_at": None, "last_error": error}
                self._count("failed")
            log.warning(
                "delivery attempt failed",
                extra={
                    "delivery_id": claim.delivery_id,
                    "channel": claim.channel,
                    "attempt": claim.attempt,
                    "outcome": values["status"],
                    "error": error,
                },
            )
        with self.sessions() as session, session.begin():
            # Only the holder of this claim may settle it (a lease may have run out meanwhile).
            session.execute(
                update(Delivery)
                .where(
                    Delivery.id == claim.delivery_id,
                    Delivery.status == "sending",
                    Delivery.attempts == claim.attempt,
                )
                .values(**values)
            )

    def dead_letter_failed(self) -> int:
        """Publish each failed delivery once to its source topic's dead-letter topic.

        The report names the delivery, never its recipient (not even masked): it travels on
        Kafka, where nothing personal goes in clear and an erasure could not reach it; the
        operator finds the recipient through `GET /v1/deliveries` while the row still holds it.
        """
        with self.sessions() as session:
            failed = list(
                session.execute(
                    select(Delivery)
                    .where(Delivery.status == "failed", Delivery.dead_lettered_at.is_(None))
                    .order_by(Delivery.id)
                    .limit(self.batch_size)
                ).scalars()
            )
        done = 0
        for d in failed:
            topic = dead_letter_topic(
                d.source_topic if d.source_topic != "unknown" else NOTIFICATIONS_TOPIC
            )
            report = {
                "delivery_id": d.id,
                "event_id": d.event_id,
                "event_type": d.event_type,
                "channel": d.channel,
                "template": d.template,
                "language": d.language,
                "case_id": d.case_id,
                "order_id": d.order_id,
                "attempts": d.attempts,
                "error": d.last_error,
            }
            headers = [
                ("dlq-error", (d.last_error or "").encode()[:4000]),
                ("dlq-source-topic", d.source_topic.encode()),
                ("dlq-consumer-group", b"notifications-dispatcher"),
                ("dlq-attempts", str(d.attempts).encode()),
                ("dlq-at", str(_time.time()).encode()),
            ]
            # Publish first, then mark: a crash in between repeats a dead letter, never loses one.
            self.dead_letters.publish(topic, d.event_id, json.dumps(report).encode(), headers)
            with self.sessions() as session, session.begin():
                session.execute(
                    update(Delivery)
                    .where(Delivery.id == d.id)
                    .values(dead_lettered_at=self.clock())
                )
            self._count("dead_lettered")
            done += 1
        return done
