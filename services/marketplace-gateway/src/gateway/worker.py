"""Gateway worker: relays the outbox to orders.events."""

from __future__ import annotations

from gateway.settings import GatewaySettings, get_settings
from odr_shared.db import make_engine
from odr_shared.events import CASES_TOPIC, MEDIATION_TOPIC, ORDERS_TOPIC
from odr_shared.kafka import make_producer
from odr_shared.logs import configure_logging
from odr_shared.outbox import OutboxRelay
from odr_shared.worker import run_worker


def main(settings: GatewaySettings | None = None) -> None:
    settings = settings or get_settings()
    configure_logging("gateway-worker", settings.log_level, settings.log_format)
    engine = make_engine(settings.database_url)
    producer = make_producer(settings.kafka_bootstrap_servers, "gateway-relay")
    relay = OutboxRelay(
        engine, producer, poll_interval_s=settings.outbox_poll_interval_s, name="gateway"
    )
    run_worker(
        "gateway-worker",
        [relay],
        bootstrap_servers=settings.kafka_bootstrap_servers,
        topics=[ORDERS_TOPIC, CASES_TOPIC, MEDIATION_TOPIC],
        on_stop=producer.close,
    )


if __name__ == "__main__":
    main()
