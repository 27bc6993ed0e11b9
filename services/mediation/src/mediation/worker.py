"""Mediation worker: consumes cases.events, sweeps queue and SLAs, relays its outbox."""

from __future__ import annotations

from mediation.consumer import GROUP_ID, handlers
from mediation.settings import MediationSettings, get_settings
from mediation.sweeper import Sweeper
from odr_shared.db import make_engine, make_session_factory
from odr_shared.events import CASES_TOPIC, MEDIATION_TOPIC, NOTIFICATIONS_TOPIC
from odr_shared.kafka import EventConsumer, make_producer
from odr_shared.logs import configure_logging
from odr_shared.outbox import OutboxRelay
from odr_shared.worker import run_worker


def main(settings: MediationSettings | None = None) -> None:
    settings = settings or get_settings()
    configure_logging("mediation-worker", settings.log_level, settings.log_format)
    engine = make_engine(
        settings.database_url,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
    )
    sessions = make_session_factory(engine)
    producer = make_producer(settings.kafka_bootstrap_servers, "mediation-worker")
    consumer = EventConsumer(
        settings=settings,
        group_id=GROUP_ID,
        handlers=handlers(settings),
        topics=[CASES_TOPIC],
        session_factory=sessions,
        producer=producer,
    )
    relay = OutboxRelay(
        engine, producer, poll_interval_s=settings.outbox_poll_interval_s, name="mediation"
    )
    run_worker(
        "mediation-worker",
        [consumer, relay, Sweeper(sessions, settings)],
        bootstrap_servers=settings.kafka_bootstrap_servers,
        topics=[CASES_TOPIC, MEDIATION_TOPIC, NOTIFICATIONS_TOPIC],
        on_stop=producer.close,
    )


if __name__ == "__main__":
    main()
