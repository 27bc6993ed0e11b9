"""A consumer process for the crash tests: applies each event as one row in `effects`.

With --gate-after N it blocks forever inside the handler of the (N+1)th event, i.e. in the middle
of a poll batch whose offsets are not committed yet, so the test can SIGKILL it there.
"""

from __future__ import annotations

import argparse
import json
import signal
import threading
import time
from pathlib import Path

from pydantic import BaseModel
from sqlalchemy import Column, Integer, MetaData, String, Table, insert
from sqlalchemy.orm import Session

from odr_shared.db import make_engine, make_session_factory
from odr_shared.events import CloudEvent
from odr_shared.inbox import inbox_table
from odr_shared.kafka import EventConsumer
from odr_shared.settings import ServiceSettings

metadata = MetaData()
effects = Table(
    "effects",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("event_id", String(100), nullable=False),  # deliberately not unique
)
inbox_table(metadata)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--db", required=True)
    p.add_argument("--bootstrap", required=True)
    p.add_argument("--topic", required=True)
    p.add_argument("--group", required=True)
    p.add_argument("--gate-after", type=int, default=0)
    p.add_argument("--gate-file", default="")
    p.add_argument("--stats-file", required=True)
    args = p.parse_args()

    engine = make_engine(args.db)
    metadata.create_all(engine)
    applied = 0

    def handler(session: Session, event: CloudEvent[BaseModel]) -> None:
        nonlocal applied
        if args.gate_after and applied >= args.gate_after:
            Path(args.gate_file).write_text("gated")
            while True:  # wait here to be killed, mid-batch
                time.sleep(1)
        session.execute(insert(effects).values(event_id=event.id))
        applied += 1

    settings = ServiceSettings(kafka_bootstrap_servers=args.bootstrap)  # type: ignore[call-arg]
    consumer = EventConsumer(
        settings=settings,
        group_id=args.group,
        handlers={"order.status_changed": handler},
        topics=[args.topic],
        session_factory=make_session_factory(engine),
    )

    def stop(*_: object) -> None:
        consumer.stop()

    signal.signal(signal.SIGTERM, stop)
    t = threading.Thread(target=consumer.run)
    t.start()
    t.join()
    Path(args.stats_file).write_text(
        json.dumps({"applied": consumer.stats.applied, "duplicates": consumer.stats.duplicates})
    )


if __name__ == "__main__":
    main()
