"""The transactional outbox: events written with the state change, published later by relays."""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import random
import threading
import time
import uuid
import zlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Protocol

from kafka import KafkaProducer
from sqlalchemy import (
    BigInteger,
    Column,
    Index,
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
from odr_shared.metrics import OUTBOX_PUBLISHED, OUTBOX_SLOTS_OWNED

log = logging.getLogger(__name__)

OUTBOX_TABLE = "outbox_messages"

# Every row sits in the slot of its Kafka key, and a slot is published by one relay at a time, so
# one key's events leave in the order they were written while relays share the work.
# A constant, not configuration: a key's unsent rows must all be in the same slot. Were the count
# changed while rows wait, a key's older rows would keep their old slot and its newer rows get
# another; two relays could own those two slots and publish the newer rows first.
OUTBOX_SLOTS = 64
ALL_SLOTS = frozenset(range(OUTBOX_SLOTS))


def outbox_slot(key: str) -> int:
    """The slot of a Kafka key: a hash that is the same in every process and release."""
    return zlib.crc32(key.encode()) % OUTBOX_SLOTS


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
        Column("published_at", UTCDateTime(), nullable=True),
        Column("attempts", Integer, nullable=False, server_default=text("0")),
        Column("last_error", Text, nullable=True),
        Column("slot", Integer, nullable=False, server_default=text("0")),
        # The relay's poll: unsent rows in id order. Published rows are kept, so an index over
        # the whole table would grow forever; this one holds only what waits to be sent, and a
        # relay filters the few rows of other relays' slots as it walks it.
        Index(
            "ix_outbox_messages_unsent",
            "id",
            postgresql_where=text("published_at IS NULL"),
            sqlite_where=text("published_at IS NULL"),
        ),
    )


_outbox_metadata = MetaData()
_OUTBOX = outbox_table(_outbox_metadata)


_INSERT_MANY = BulkInsert(
    _OUTBOX, ("event_id", "topic", "key", "event_type", "payload", "created_at", "slot")
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
            slot=outbox_slot(key),
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
                "slot": outbox_slot(key),
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


class _SlotOwnership(Protocol):
    """Which slots a relay may publish now, and the connections it reads and marks rows on."""

    @property
    def owned(self) -> frozenset[int]: ...

    def claim(self) -> frozenset[int]:
        """Take or give up slots as the relay's share requires; the slots owned afterwards."""
        ...

    def reading(self) -> contextlib.AbstractContextManager[Connection]: ...

    def writing(self) -> contextlib.AbstractContextManager[Connection]: ...

    def close(self) -> None: ...


# Session advisory locks, scoped to the service's database by PostgreSQL. Membership is the
# bigint key the single-publisher relay of earlier releases took per batch: relays of this release
# hold it shared, so during a rolling upgrade an old relay (which tries it exclusively) publishes
# nothing once a new one is up, and cannot interleave a key's events with it.
MEMBERSHIP_LOCK = 0x0D0_0B0C
# Slot s is the lock (SLOT_LOCK_CLASS, s), in the two-int4 key space (objsubid 2 in pg_locks).
SLOT_LOCK_CLASS = 0x0D0_0B0C

_JOIN = text("SELECT pg_try_advisory_lock_shared(CAST(:k AS bigint))")
_LIVE_RELAYS = text(
    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted"
    " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
    " AND mode = 'ShareLock' AND objsubid = 1"
    " AND classid = CAST(:hi AS oid) AND objid = CAST(:lo AS oid)"
)
_TAKEN_SLOTS = text(
    "SELECT CAST(CAST(objid AS bigint) AS int) FROM pg_locks WHERE locktype = 'advisory'"
    " AND granted"
    " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
    " AND objsubid = 2 AND classid = CAST(:c AS oid)"
)
_TAKE_SLOT = text("SELECT pg_try_advisory_lock(CAST(:c AS int), CAST(:s AS int))")
_RELEASE_SLOTS = text(
    "SELECT pg_advisory_unlock(CAST(:c AS int), s) FROM unnest(CAST(:slots AS int[])) AS s"
)


class _AdvisoryLockSlots:
    """Slots held as session advisory locks on a connection of the relay's own (PostgreSQL).

    Every relay also holds the membership lock, shared, so each counts the live relays in
    pg_locks and keeps its fair share, ceil(64 / live): it gives up its extra slots when a relay
    joins and takes free ones when a relay leaves. A relay that dies or loses its connection
    loses its session, and PostgreSQL releases its locks with it.

    Rows are read and marked on that same connection, one autocommitted statement at a time: a
    mark that succeeds was made while the locks were held, no transaction stays open while the
    broker is called, and a failing statement drops the connection, so the relay starts again
    from nothing (reconnect, re-join, re-take) instead of publishing on without its locks.
    """

    def __init__(self, engine: Engine, label: str, rebalance_interval_s: float) -> None:
        self.engine = engine
        self.label = label
        self.rebalance_interval_s = rebalance_interval_s
        # Replaced, never changed in place: other threads (metrics, tests) read it.
        self._owned: frozenset[int] = frozenset()
        self._conn: Connection | None = None
        self._member = False
        self._next_rebalance = 0.0
        # Relays starting together try the free slots in different orders, so fewer tries fail.
        start = random.randrange(OUTBOX_SLOTS)
        self._preference = [(start + i) % OUTBOX_SLOTS for i in range(OUTBOX_SLOTS)]

    @property
    def owned(self) -> frozenset[int]:
        return self._owned

    def claim(self) -> frozenset[int]:
        with self._held() as conn:
            if not self._member:
                self._member = bool(conn.execute(_JOIN, {"k": MEMBERSHIP_LOCK}).scalar_one())
                if not self._member:
                    return frozenset()
            if time.monotonic() >= self._next_rebalance:
                self._rebalance(conn)
                self._next_rebalance = time.monotonic() + self.rebalance_interval_s
        return self.owned

    def _rebalance(self, conn: Connection) -> None:
        live = int(
            conn.execute(
                _LIVE_RELAYS, {"hi": MEMBERSHIP_LOCK >> 32, "lo": MEMBERSHIP_LOCK & 0xFFFFFFFF}
            ).scalar_one()
        )
        share = -(-OUTBOX_SLOTS // max(live, 1))
        before = len(self._owned)
        if len(self._owned) > share:
            extra = sorted(self._owned)[share:]
            conn.execute(_RELEASE_SLOTS, {"c": SLOT_LOCK_CLASS, "slots": extra})
            self._owned = self._owned.difference(extra)
        elif len(self._owned) < share:
            taken = set(conn.execute(_TAKEN_SLOTS, {"c": SLOT_LOCK_CLASS}).scalars())
            owned = set(self._owned)
            for slot in self._preference:
                if len(owned) >= share:
                    break
                if slot in taken:
                    continue
                # Another relay may take it between the look and the try: then it is theirs.
                if conn.execute(_TAKE_SLOT, {"c": SLOT_LOCK_CLASS, "s": slot}).scalar_one():
                    owned.add(slot)
            self._owned = frozenset(owned)
        if len(self._owned) != before:
            log.info(
                "outbox slots rebalanced",
                extra={
                    "relay": self.label,
                    "live": live,
                    "before": before,
                    "owned": len(self._owned),
                },
            )

    @contextmanager
    def _held(self) -> Iterator[Connection]:
        if self._conn is None:
            self._conn = self._connect()
        try:
            yield self._conn
        except BaseException:
            self._drop()
            raise

    def reading(self) -> contextlib.AbstractContextManager[Connection]:
        return self._held()

    def writing(self) -> contextlib.AbstractContextManager[Connection]:
        return self._held()

    def _connect(self) -> Connection:
        conn = self.engine.connect()
        try:
            # Each statement commits on its own: the session's locks outlive transactions, and
            # nothing is left open while the relay waits for the broker.
            conn.execution_options(isolation_level="AUTOCOMMIT")
            # Off the pool: closing this connection must end the session and release its locks,
            # not hand a session still holding them to the next borrower.
            conn.detach()
            conn.execute(
                text("SELECT set_config('application_name', :n, false)"), {"n": self.label[:63]}
            )
        except BaseException:
            conn.close()
            raise
        return conn

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        self._owned = frozenset()
        self._member = False
        self._next_rebalance = 0.0
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()

    def close(self) -> None:
        self._drop()


class _FileLockSlots:
    """Every slot to the one relay holding an exclusive lock on a file beside the database (SQLite).

    SQLite serves one worker per service on one machine; the lock keeps a second relay (a worker
    started twice) from interleaving a key's events with the first. It waits, trying each round,
    and the kernel releases the lock when its holder exits or dies, so the second takes over.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        database = engine.url.database
        # A database in memory lives in one process, which has no other relay.
        self.path = f"{database}.relay-lock" if database and database != ":memory:" else None
        self._fd: int | None = None

    @property
    def owned(self) -> frozenset[int]:
        return ALL_SLOTS if self.path is None or self._fd is not None else frozenset()

    def claim(self) -> frozenset[int]:
        if self.path is not None and self._fd is None:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
            try:
                # flock, not fcntl's record locks: those are per process, and would let two
                # relays of one process both believe they hold it.
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                return frozenset()
            self._fd = fd
            log.info("outbox relay holds the lock", extra={"lock": self.path})
        return self.owned

    @contextmanager
    def reading(self) -> Iterator[Connection]:
        # A read transaction: the write lock stays free for the API while the relay reads.
        with self.engine.connect().execution_options(**{READ_ONLY: True}) as conn:
            yield conn

    @contextmanager
    def writing(self) -> Iterator[Connection]:
        with self.engine.begin() as conn:
            yield conn

    def close(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)  # releases the lock


class OutboxRelay:
    """Publishes the unsent rows of the slots it owns, in id order, and marks them sent.

    Any number of relays can run against one outbox. A row's slot comes from its Kafka key, and
    each slot is owned by one relay at a time (`_AdvisoryLockSlots` on PostgreSQL, where relays
    share the slots; `_FileLockSlots` on SQLite, where one relay owns them all), so a key's
    events leave in the order they were written while the relays share the work.

    A round publishes up to `batch_size` rows, waits for every acknowledgement, then marks them
    sent; ownership changes only between rounds. A crash or a lost lock connection between
    publish and mark re-publishes those rows, by whichever relay owns their slot next: consumers'
    inboxes absorb the duplicates, and the first copy of each event is still in key order.
    """

    def __init__(
        self,
        engine: Engine,
        producer: KafkaProducer,
        *,
        batch_size: int = 500,
        poll_interval_s: float = 0.05,
        name: str = "outbox",
        rebalance_interval_s: float = 1.0,
    ) -> None:
        self.engine = engine
        self.producer = producer
        self.batch_size = batch_size
        self.poll_interval_s = poll_interval_s
        self.name = name
        self._stop = threading.Event()
        self.instance = uuid.uuid4().hex[:8]
        self.published = 0
        self._slots: _SlotOwnership
        if engine.dialect.name == "postgresql":
            self._slots = _AdvisoryLockSlots(
                engine, f"outbox-relay {name} {self.instance}", rebalance_interval_s
            )
        else:
            self._slots = _FileLockSlots(engine)
        self._gauge = OUTBOX_SLOTS_OWNED.labels(name, self.instance)

    @property
    def owned_slots(self) -> frozenset[int]:
        return self._slots.owned

    def stop(self) -> None:
        self._stop.set()

    def close(self) -> None:
        """Give up every slot at once, so other relays need not wait for this one's session."""
        self._slots.close()
        with contextlib.suppress(KeyError):
            OUTBOX_SLOTS_OWNED.remove(self.name, self.instance)

    def __enter__(self) -> OutboxRelay:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def publish_batch(self) -> int:
        """One round: claim this relay's share of slots, publish a batch of theirs; how many.

        No database transaction stays open while the broker is called, so a slow or absent
        broker never blocks the API's writes (on SQLite a transaction holds the file's lock).
        """
        try:
            slots = self._slots.claim()
        finally:
            self._gauge.set(len(self._slots.owned))
        if not slots:
            return 0
        query = select(
            _OUTBOX.c.id, _OUTBOX.c.topic, _OUTBOX.c.key, _OUTBOX.c.payload, _OUTBOX.c.event_type
        ).where(_OUTBOX.c.published_at.is_(None))
        if slots != ALL_SLOTS:
            query = query.where(_OUTBOX.c.slot.in_(sorted(slots)))
        with self._slots.reading() as conn:
            rows = conn.execute(query.order_by(_OUTBOX.c.id).limit(self.batch_size)).all()
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
            with self._slots.writing() as conn:
                conn.execute(
                    update(_OUTBOX)
                    .where(_OUTBOX.c.id.in_(ids))
                    .values(attempts=_OUTBOX.c.attempts + 1, last_error=str(exc)[:2000])
                )
            raise
        with self._slots.writing() as conn:
            conn.execute(update(_OUTBOX).where(_OUTBOX.c.id.in_(ids)).values(published_at=utcnow()))
        for r in rows:
            OUTBOX_PUBLISHED.labels(self.name, r.topic).inc()
        self.published += len(rows)
        return len(rows)

    def run(self) -> None:
        backoff = self.poll_interval_s
        try:
            while not self._stop.is_set():
                try:
                    n = self.publish_batch()
                    backoff = self.poll_interval_s
                except Exception as exc:  # noqa: BLE001 - broker or database away: retry
                    log.warning(
                        "outbox publish failed", extra={"error": str(exc), "relay": self.name}
                    )
                    n = 0
                    backoff = min(max(backoff * 2, 0.5), 10.0)
                if n < self.batch_size:
                    self._stop.wait(backoff)
        finally:
            self.close()
