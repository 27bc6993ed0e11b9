"""Notifications worker: consumes cases.events, relays its outbox to notifications.events."""

from __future__ import annotations

from notifications.consumer import GROUP_ID, handlers
from notifications.settings import NotificationsSettings, get_settings
from odr_shared.db import make_engine, make_session_factory
from odr_shared.events import CASES_TOPIC, MEDIATION_TOPIC, NOTIFICATIONS_TOPIC, ORDERS_TOPIC
from odr_shared.kafka import EventConsumer, make_producer
from odr_shared.logs import configure_logging
from odr_shared.outbox import OutboxRelay
from odr_shared.worker import run_worker


def main(settings: NotificationsSettings | None = None) -> None:
    settings = settings or get_settings()
    configure_logging("notifications-worker", settings.log_level, settings.log_format)
    engine = make_engine(settings.database_url)
    producer = make_producer(settings.kafka_bootstrap_servers, "notifications-worker")
    consumer = EventConsumer(
        settings=settings,
        group_id=GROUP_ID,
        handlers=handlers(),
        topics=[NOTIFICATIONS_TOPIC, ORDERS_TOPIC, CASES_TOPIC, MEDIATION_TOPIC],
        session_factory=make_session_factory(engine),
        producer=producer,
    )
    relay = OutboxRelay(
        engine, producer, poll_interval_s=settings.outbox_poll_interval_s, name="notifications"
    )
    run_worker(
        "notifications-worker",
        [consumer, relay],
        bootstrap_servers=settings.kafka_bootstrap_servers,
        topics=[ORDERS_TOPIC, CASES_TOPIC, MEDIATION_TOPIC, NOTIFICATIONS_TOPIC],
        on_stop=producer.close,
    )


if __name__ == "__main__":
    main()
