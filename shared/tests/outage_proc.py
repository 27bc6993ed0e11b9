"""A worker process for the outage drill: one EventConsumer under run_worker, as the services run.

Each event becomes one row in `effects` (no unique key: only the inbox keeps a second copy out);
the handler takes a few milliseconds so that events are still in flight when the link is cut.
"""

from __future__ import annotations

import argparse
import time

from consumer_proc import effects, metadata
from pydantic import BaseModel
from sqlalchemy import insert
from sqlalchemy.orm import Session

from odr_shared.db import make_engine, make_session_factory
from odr_shared.events import CloudEvent
from odr_shared.kafka import EventConsumer
from odr_shared.logs import configure_logging
from odr_shared.settings import ServiceSettings
from odr_shared.worker import run_worker


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--db", required=True)
    p.add_argument("--bootstrap", required=True)
    p.add_argument("--topic", required=True)
    p.add_argument("--group", required=True)
    p.add_argument("--handler-ms", type=float, default=5)
    args = p.parse_args()

    configure_logging("outage-worker", "INFO", "json")
    engine = make_engine(args.db)
    metadata.create_all(engine)

    def handler(session: Session, event: CloudEvent[BaseModel]) -> None:
        time.sleep(args.handler_ms / 1000)
        session.execute(insert(effects).values(event_id=event.id))

    settings = ServiceSettings(kafka_bootstrap_servers=args.bootstrap)  # type: ignore[call-arg]
    consumer = EventConsumer(
        settings=settings,
        group_id=args.group,
        handlers={"order.status_changed": handler},
        topics=[args.topic],
        session_factory=make_session_factory(engine),
        max_poll_records=50,
        # Short timeouts, so that a 15 s outage outlasts several of them.
        commit_timeout_s=2,
        retry_interval_s=0.5,
        consumer_config={"request_timeout_ms": 3000},
    )
    run_worker("outage-worker", [consumer], bootstrap_servers=args.bootstrap)


if __name__ == "__main__":
    main()
