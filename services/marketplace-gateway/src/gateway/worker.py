"""Gateway worker: relays the outbox to orders.events, queues and sends outbound webhooks."""

from __future__ import annotations

from gateway.outbound import OutboundDispatcher, handlers
from gateway.settings import GatewaySettings, get_settings
from odr_shared.crypto import DataCipher
from odr_shared.db import make_engine, make_session_factory
from odr_shared.events import CASES_TOPIC, MEDIATION_TOPIC, ORDERS_TOPIC
from odr_shared.kafka import EventConsumer, make_producer
from odr_shared.logs import configure_logging
from odr_shared.outbox import OutboxRelay
from odr_shared.worker import run_worker

CONSUMER_GROUP = "gateway"


def build_parts(
    settings: GatewaySettings,
) -> tuple[OutboxRelay, EventConsumer, OutboundDispatcher, object]:
    engine = make_engine(
        settings.database_url,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
    )
    sessions = make_session_factory(engine)
    cipher = DataCipher(settings.data_encryption_key)
    producer = make_producer(settings.kafka_bootstrap_servers, "gateway-relay")
    relay = OutboxRelay(
        engine,
        producer,
        poll_interval_s=settings.outbox_poll_interval_s,
        batch_size=settings.outbox_batch_size,
        name="gateway",
    )
    consumer = EventConsumer(
        settings=settings,
        group_id=CONSUMER_GROUP,
        handlers=handlers(),
        topics=[CASES_TOPIC, MEDIATION_TOPIC],
        session_factory=sessions,
        producer=producer,
    )
    dispatcher = OutboundDispatcher(sessions, cipher, settings)
    return relay, consumer, dispatcher, producer


def main(settings: GatewaySettings | None = None, install_signals: bool = True) -> None:
    settings = settings or get_settings()
    configure_logging("gateway-worker", settings.log_level, settings.log_format)
    relay, consumer, dispatcher, producer = build_parts(settings)
    run_worker(
        "gateway-worker",
        [relay, consumer, dispatcher],
        bootstrap_servers=settings.kafka_bootstrap_servers,
        topics=[ORDERS_TOPIC, CASES_TOPIC, MEDIATION_TOPIC],
        install_signals=install_signals,
        on_stop=producer.close,  # type: ignore[attr-defined]
    )


if __name__ == "__main__":
    main()
