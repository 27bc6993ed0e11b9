"""Notifications worker: consumes the platform's topics into deliveries (and privacy.events into
erasures), runs the send loop, and purges what is past retention."""

from __future__ import annotations

from dataclasses import dataclass

from kafka import KafkaProducer

from notifications import bootstrap, retention
from notifications.consumer import GROUP_ID, handlers
from notifications.dispatcher import Clock, Dispatcher
from notifications.settings import NotificationsSettings, get_settings
from odr_shared.db import make_engine, make_session_factory, utcnow
from odr_shared.events import (
    CASES_TOPIC,
    MEDIATION_TOPIC,
    NOTIFICATIONS_TOPIC,
    ORDERS_TOPIC,
    PRIVACY_TOPIC,
)
from odr_shared.kafka import EventConsumer, make_producer
from odr_shared.logs import configure_logging
from odr_shared.outbox import OutboxRelay
from odr_shared.retention import Purger
from odr_shared.worker import Stoppable, run_worker

TOPICS = [NOTIFICATIONS_TOPIC, ORDERS_TOPIC, CASES_TOPIC, MEDIATION_TOPIC, PRIVACY_TOPIC]


@dataclass(frozen=True)
class WorkerParts:
    consumer: EventConsumer
    relay: OutboxRelay
    dispatcher: Dispatcher  # every due delivery, and dead letters
    urgent_dispatcher: Dispatcher  # one-time codes only, never stuck behind slow sends
    purger: Purger  # retention (notifications.retention)

    def all(self) -> list[EventConsumer | OutboxRelay | Stoppable]:
        return [
            self.consumer,
            self.relay,
            self.dispatcher,
            self.urgent_dispatcher,
            self.purger,
        ]


def build_parts(
    settings: NotificationsSettings, producer: KafkaProducer, *, clock: Clock = utcnow
) -> WorkerParts:
    """The worker's loops; tests run the very same parts in threads."""
    engine = make_engine(
        settings.database_url,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
    )
    sessions = make_session_factory(engine)
    store = bootstrap.key_store(settings)
    opener = bootstrap.opener(settings, store, sessions)
    consumer = EventConsumer(
        settings=settings,
        group_id=GROUP_ID,
        handlers=handlers(bootstrap.notifier(settings, clock=clock), store, opener),
        topics=TOPICS,
        session_factory=sessions,
        producer=producer,
        opener=opener,
    )
    relay = OutboxRelay(
        engine, producer, poll_interval_s=settings.outbox_poll_interval_s, name="notifications"
    )
    return WorkerParts(
        consumer=consumer,
        relay=relay,
        dispatcher=bootstrap.dispatcher(settings, sessions, producer, clock=clock),
        urgent_dispatcher=bootstrap.dispatcher(
            settings, sessions, producer, clock=clock, urgent_only=True
        ),
        purger=Purger.from_settings(engine, retention.rules(settings), settings),
    )


def main(settings: NotificationsSettings | None = None) -> None:
    settings = settings or get_settings()
    configure_logging("notifications-worker", settings.log_level, settings.log_format)
    producer = make_producer(settings.kafka_bootstrap_servers, "notifications-worker")
    parts = build_parts(settings, producer)

    def on_stop() -> None:
        producer.close()
        opener = parts.consumer.opener
        if opener is not None and opener.client is not None:
            opener.client.close()

    run_worker(
        "notifications-worker",
        parts.all(),
        bootstrap_servers=settings.kafka_bootstrap_servers,
        topics=TOPICS,
        on_stop=on_stop,
    )


if __name__ == "__main__":
    main()
