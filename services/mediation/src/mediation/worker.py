"""Mediation worker: consumes cases.events and privacy.events, sweeps queue and SLAs, relays its
outbox, purges what is past its retention."""

from __future__ import annotations

from kafka import KafkaProducer

from mediation import privacy, retention
from mediation.consumer import GROUP_ID, handlers
from mediation.settings import MediationSettings, get_settings
from mediation.sweeper import Sweeper
from odr_shared.db import make_engine, make_session_factory
from odr_shared.events import CASES_TOPIC, MEDIATION_TOPIC, NOTIFICATIONS_TOPIC, PRIVACY_TOPIC
from odr_shared.kafka import EventConsumer, make_producer
from odr_shared.logs import configure_logging
from odr_shared.outbox import OutboxRelay
from odr_shared.privacy import Opener
from odr_shared.retention import Purger
from odr_shared.worker import run_worker


def _close(producer: KafkaProducer, opener: Opener) -> None:
    producer.close()
    if opener.client is not None:
        opener.client.close()


def main(settings: MediationSettings | None = None) -> None:
    settings = settings or get_settings()
    configure_logging("mediation-worker", settings.log_level, settings.log_format)
    engine = make_engine(
        settings.database_url,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
    )
    sessions = make_session_factory(engine)
    store = privacy.install(sessions, settings)
    producer = make_producer(settings.kafka_bootstrap_servers, "mediation-worker")
    # Mediation's handlers read the consumer's contact, reasons and details (see
    # mediation.consumer): sealed cases.events are opened with complaints' keys.
    opener = Opener.from_settings(
        settings, service=privacy.SERVICE, store=store, session_factory=sessions
    )
    consumer = EventConsumer(
        settings=settings,
        group_id=GROUP_ID,
        handlers=handlers(settings, store, opener),
        topics=[CASES_TOPIC, PRIVACY_TOPIC],
        session_factory=sessions,
        producer=producer,
        opener=opener,
    )
    relay = OutboxRelay(
        engine, producer, poll_interval_s=settings.outbox_poll_interval_s, name="mediation"
    )
    purger = Purger.from_settings(engine, retention.rules(settings), settings)
    run_worker(
        "mediation-worker",
        [consumer, relay, Sweeper(sessions, settings), purger],
        bootstrap_servers=settings.kafka_bootstrap_servers,
        topics=[CASES_TOPIC, MEDIATION_TOPIC, NOTIFICATIONS_TOPIC, PRIVACY_TOPIC],
        on_stop=lambda: _close(producer, opener),
    )


if __name__ == "__main__":
    main()
