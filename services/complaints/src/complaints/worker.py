"""Complaints worker: consumes orders, mediation and privacy events, runs the deadline clock,
the privacy desk and the retention purge, relays the outbox."""

from __future__ import annotations

import logging
import threading

from complaints.consumer import GROUP_ID, batch_handlers, handlers
from complaints.deps import build_deps
from complaints.privacy.desk import PrivacyDesk
from complaints.retention import RetentionJob, rules
from complaints.service import Deps, check_deadlines
from complaints.settings import ComplaintsSettings, get_settings
from odr_shared.db import make_engine
from odr_shared.events import CASES_TOPIC, MEDIATION_TOPIC, NOTIFICATIONS_TOPIC, ORDERS_TOPIC
from odr_shared.kafka import EventConsumer, make_producer
from odr_shared.logs import configure_logging
from odr_shared.outbox import OutboxRelay
from odr_shared.privacy import PRIVACY_TOPIC, Opener
from odr_shared.retention import Purger
from odr_shared.worker import Stoppable, run_worker

log = logging.getLogger(__name__)


class DeadlineClock(Stoppable):
    """Escalates cases whose merchant deadline passed, every few seconds."""

    def __init__(self, deps: Deps, interval_s: float) -> None:
        self.deps = deps
        self.interval_s = interval_s
        self._stop = threading.Event()

    def run(self) -> None:
        while not self._stop.is_set():
            try:
                check_deadlines(self.deps)
            except Exception as exc:  # noqa: BLE001 - a database hiccup must not stop the clock
                log.warning("deadline check failed", extra={"error": str(exc)})
            self._stop.wait(self.interval_s)

    def stop(self) -> None:
        self._stop.set()


def main(settings: ComplaintsSettings | None = None) -> None:
    settings = settings or get_settings()
    configure_logging("complaints-worker", settings.log_level, settings.log_format)
    engine = make_engine(
        settings.database_url,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
    )
    deps = build_deps(settings, engine)
    producer = make_producer(settings.kafka_bootstrap_servers, "complaints-worker")
    # order.status_changed arrives sealed by the gateway: complaints needs the buyer.
    opener = Opener.from_settings(
        settings, service="complaints", store=deps.keys, session_factory=deps.sessions
    )
    consumer = EventConsumer(
        settings=settings,
        group_id=GROUP_ID,
        handlers=handlers(deps, forget=opener.forget),
        batch_handlers=batch_handlers(deps),
        topics=[ORDERS_TOPIC, MEDIATION_TOPIC, PRIVACY_TOPIC],
        session_factory=deps.sessions,
        producer=producer,
        opener=opener,
    )
    relay = OutboxRelay(
        engine, producer, poll_interval_s=settings.outbox_poll_interval_s, name="complaints"
    )
    purger = Purger.from_settings(engine, rules(settings), settings)
    run_worker(
        "complaints-worker",
        [
            consumer,
            relay,
            DeadlineClock(deps, settings.deadline_check_interval_s),
            PrivacyDesk(deps),
            RetentionJob(deps, purger, settings.retention_interval_s),
        ],
        bootstrap_servers=settings.kafka_bootstrap_servers,
        topics=[ORDERS_TOPIC, CASES_TOPIC, MEDIATION_TOPIC, NOTIFICATIONS_TOPIC, PRIVACY_TOPIC],
        on_stop=producer.close,
    )


if __name__ == "__main__":
    main()
