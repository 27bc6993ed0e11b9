"""Complaints worker: consumes orders.events (and later cases' inputs), relays its outbox."""

from __future__ import annotations

from complaints.consumer import GROUP_ID, handlers
from complaints.settings import ComplaintsSettings, get_settings
from odr_shared.crypto import DataCipher
from odr_shared.db import make_engine, make_session_factory
from odr_shared.events import CASES_TOPIC, MEDIATION_TOPIC, NOTIFICATIONS_TOPIC, ORDERS_TOPIC
from odr_shared.kafka import EventConsumer, make_producer
from odr_shared.logs import configure_logging
from odr_shared.outbox import OutboxRelay
from odr_shared.worker import run_worker


def main(settings: ComplaintsSettings | None = None) -> None:
    settings = settings or get_settings()
    configure_logging("complaints-worker", settings.log_level, settings.log_format)
    engine = make_engine(settings.database_url)
    producer = make_producer(settings.kafka_bootstrap_servers, "complaints-worker")
    consumer = EventConsumer(
        settings=settings,
        group_id=GROUP_ID,
        handlers=handlers(DataCipher(settings.data_encryption_key)),
        topics=[ORDERS_TOPIC, MEDIATION_TOPIC],
        session_factory=make_session_factory(engine),
        producer=producer,
    )
    relay = OutboxRelay(
        engine, producer, poll_interval_s=settings.outbox_poll_interval_s, name="complaints"
    )
    run_worker(
        "complaints-worker",
        [consumer, relay],
        bootstrap_servers=settings.kafka_bootstrap_servers,
        topics=[ORDERS_TOPIC, CASES_TOPIC, MEDIATION_TOPIC, NOTIFICATIONS_TOPIC],
        on_stop=producer.close,
    )


if __name__ == "__main__":
    main()
