"""Gateway worker: relays the outbox, queues and sends outbound webhooks, erases data subjects
on privacy.events and purges what is past its retention period."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gateway.outbound import OutboundDispatcher, handlers
from gateway.privacy import Subjects, erasure_handlers
from gateway.retention import rules
from gateway.settings import GatewaySettings, get_settings
from odr_shared.crypto import DataCipher
from odr_shared.db import make_engine, make_session_factory
from odr_shared.events import CASES_TOPIC, MEDIATION_TOPIC, ORDERS_TOPIC, PRIVACY_TOPIC
from odr_shared.kafka import EventConsumer, make_producer
from odr_shared.logs import configure_logging
from odr_shared.outbox import OutboxRelay
from odr_shared.privacy import KeyStore, Opener
from odr_shared.retention import Purger
from odr_shared.worker import run_worker

CONSUMER_GROUP = "gateway"
# What the worker consumes: case and mediation events (outbound webhooks) and privacy requests.
CONSUMED_TOPICS = [CASES_TOPIC, MEDIATION_TOPIC, PRIVACY_TOPIC]


@dataclass
class Parts:
    relay: OutboxRelay
    consumer: EventConsumer
    dispatcher: OutboundDispatcher
    purger: Purger
    producer: Any

    def all(self) -> list[Any]:
        return [self.relay, self.consumer, self.dispatcher, self.purger]


def build_parts(settings: GatewaySettings) -> Parts:
    engine = make_engine(
        settings.database_url,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
    )
    sessions = make_session_factory(engine)
    cipher = DataCipher(settings.data_encryption_key)
    store = KeyStore.from_settings(settings)
    subjects = Subjects(settings, store)
    producer = make_producer(settings.kafka_bootstrap_servers, "gateway-relay")
    relay = OutboxRelay(
        engine,
        producer,
        poll_interval_s=settings.outbox_poll_interval_s,
        batch_size=settings.outbox_batch_size,
        name="gateway",
    )
    # The platform is a party to its cases: its webhooks carry offers, proposals, decisions and
    # their reasons, so the consumer opens sealed case and mediation events (keys from
    # complaints and mediation); `redact_for_platform` still strips the consumer's contact.
    opener = Opener.from_settings(
        settings, service="gateway", store=store, session_factory=sessions
    )
    consumer = EventConsumer(
        settings=settings,
        group_id=CONSUMER_GROUP,
        handlers={**handlers(), **erasure_handlers(cipher, subjects, forget=opener.forget)},
        topics=CONSUMED_TOPICS,
        session_factory=sessions,
        producer=producer,
        opener=opener,
    )
    dispatcher = OutboundDispatcher(sessions, cipher, settings)
    purger = Purger.from_settings(engine, rules(settings), settings)
    return Parts(relay, consumer, dispatcher, purger, producer)


def main(settings: GatewaySettings | None = None, install_signals: bool = True) -> None:
    settings = settings or get_settings()
    configure_logging("gateway-worker", settings.log_level, settings.log_format)
    parts = build_parts(settings)
    run_worker(
        "gateway-worker",
        parts.all(),
        bootstrap_servers=settings.kafka_bootstrap_servers,
        topics=[ORDERS_TOPIC, *CONSUMED_TOPICS],
        install_signals=install_signals,
        on_stop=parts.producer.close,
    )


if __name__ == "__main__":
    main()
