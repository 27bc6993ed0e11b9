"""The transactional outbox: events written with the state change, published later by a relay."""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Sequence
from typing import Any

from kafka import KafkaProducer
from sqlalchemy import (
    BigInteger,
    Column,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    func,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import Session

from odr_shared.db import READ_ONLY, BulkInsert, UTCDateTime, utcnow
from odr_shared.events import CloudEvent
from odr_shared.kafka import OutgoingMessage, send_all
from odr_shared.metrics import OUTBOX_PUBLISHED

log = logging.getLogger(__name__)

OUTBOX_TABLE = "outbox_messages"


def outbox_table(metadata: MetaData) -> Table:
    return Table(
        OUTBOX_TABLE,
        metadata,
        Column(
            "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
        ),
        Column("event_id", String(100), nullable=False, unique=True),
        Column("topic", String(200), nullable=False),
        Column("key", String(300), nullable=False),
        Column("event_type", String(100), nullable=False),
        Column("payload", LargeBinary, nullable=False),
        Column("created_at", UTCDateTime(), nullable=False),
        Column("published_at", UTCDateTime(), nullable=True, index=True),
        Column("attempts", Integer, nullable=False, server_default=text("0")),
        Column("last_error", Text, nullable=True),
    )


_outbox_metadata = MetaData()
_OUTBOX = outbox_table(_outbox_metadata)


_INSERT_MANY = BulkInsert(
    _OUTBOX, ("event_id", "topic", "key", "event_type", "payload", "created_at")
)


def add_to_outbox(session: Session, topic: str, key: str, event: CloudEvent[Any]) -> None:
    """Queue an event in the caller's transaction. Nothing leaves until that transaction commits."""
    session.execute(
        insert(_OUTBOX).values(
            event_id=event.id,
            topic=topic,
            key=key,
            event_type=event.type,
            payload=event.to_json_bytes(),
            created_at=utcnow(),
        )
    )


def add_many_to_outbox(
    session: Session | Connection, topic: str, rows: Sequence[tuple[str, CloudEvent[Any]]]
) -> None:
    if not rows:
        return
    now = utcnow()
    conn = session.connection() if isinstance(session, Session) else session
    _INSERT_MANY.execute(
        conn,
        [
            {
                "event_id": ev.id,
                "topic": topic,
                "key": key,
                "event_type": ev.type,
                "payload": ev.to_json_bytes(),
                "created_at": now,
            }
            for key, ev in rows
        ],
    )


def pending_count(session: Session) -> int:
    return int(
        session.execute(
            select(func.count()).select_from(_OUTBOX).where(_OUTBOX.c.published_at.is_(None))
        ).scalar_one()
    )


class OutboxRelay:
    """Publishes unsent outbox rows in id order and marks them sent.

    On PostgreSQL one relay at a time holds an advisory lock per batch, so replicas do not
    interleave one key's events; on SQLite the file lock does the same. A crash between publish
    and mark re-publishes the batch: consumers' inboxes absorb the duplicates.
    """

    ADVISORY_LOCK_ID = 0x0D0_0B0C

    def __init__(
        self,
        engine: Engine,
        producer: KafkaProducer,
        *,
        batch_size: int = 500,
        poll_interval_s: float = 0.05,
        name: str = "outbox",
    ) -> None:
        self.engine = engine
        self.producer = producer
        self.batch_size = batch_size
        self.poll_interval_s = poll_interval_s
        self.name = name
        self._stop = threading.Event()
        self.instance = uuid.uuid4().hex[:8]

    def stop(self) -> None:
        self._stop.set()

    def publish_batch(self) -> int:
        """Publish one batch; returns how many rows were published.

        No database transaction stays open while the broker is called, so a slow or absent
        broker never blocks the API's writes (on SQLite a transaction holds the file's lock).
        """
        is_pg = self.engine.dialect.name == "postgresql"
        with self.engine.connect() as lock_conn:
            if is_pg:
                got = lock_conn.execute(
                    text("SELECT pg_try_advisory_lock(:k)"), {"k": self.ADVISORY_LOCK_ID}
                ).scalar_one()
                lock_conn.commit()
                if not got:
                    return 0
            try:
                return self._publish_locked()
            finally:
                if is_pg:
                    lock_conn.execute(
                        text("SELECT pg_advisory_unlock(:k)"), {"k": self.ADVISORY_LOCK_ID}
                    )
                    lock_conn.commit()

    def _publish_locked(self) -> int:
        # A read transaction: on SQLite the write lock stays free for the API while it reads.
        with self.engine.connect().execution_options(**{READ_ONLY: True}) as conn:
            rows = conn.execute(
                select(
                    _OUTBOX.c.id,
                    _OUTBOX.c.topic,
                    _OUTBOX.c.key,
                    _OUTBOX.c.payload,
                    _OUTBOX.c.event_type,
                )
                .where(_OUTBOX.c.published_at.is_(None))
                .order_by(_OUTBOX.c.id)
                .limit(self.batch_size)
            ).all()
        if not rows:
            return 0
        ids = [r.id for r in rows]
        try:
            send_all(
                self.producer,
                (
                    OutgoingMessage(
                        topic=r.topic,
                        key=r.key,
                        value=bytes(r.payload),
                        headers=[("ce_type", r.event_type.encode())],
                    )
                    for r in rows
                ),
            )
        except Exception as exc:
            with Session(self.engine) as session, session.begin():
                session.execute(
                    update(_OUTBOX)
                    .where(_OUTBOX.c.id.in_(ids))
                    .values(attempts=_OUTBOX.c.attempts + 1, last_error=str(exc)[:2000])
                )
            raise
        with Session(self.engine) as session, session.begin():
            session.execute(
                update(_OUTBOX).where(_OUTBOX.c.id.in_(ids)).values(published_at=utcnow())
            )
        for r in rows:
            OUTBOX_PUBLISHED.labels(self.name, r.topic).inc()
        return len(rows)

    def run(self) -> None:
        backoff = self.poll_interval_s
        while not self._stop.is_set():
            try:
                n = self.publish_batch()
                backoff = self.poll_interval_s
            except Exception as exc:  # noqa: BLE001 - broker down: keep rows, retry with backoff
                log.warning("outbox publish failed", extra={"error": str(exc), "relay": self.name})
                n = 0
                backoff = min(max(backoff * 2, 0.5), 10.0)
            if n < self.batch_size:
                self._stop.wait(backoff)
