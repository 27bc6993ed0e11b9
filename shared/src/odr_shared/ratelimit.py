"""Fixed-window rate limits kept in the service's own database, so every replica sees one count."""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass

from sqlalchemy import Column, Integer, MetaData, String, Table, bindparam, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from odr_shared.metrics import RATE_LIMIT_LEASES
from odr_shared.problems import Problem

RATE_LIMIT_TABLE = "rate_limit_windows"


def rate_limit_table(metadata: MetaData) -> Table:
    return Table(
        RATE_LIMIT_TABLE,
        metadata,
        Column("bucket", String(200), primary_key=True),
        Column("window_start", Integer, primary_key=True),
        Column("hits", Integer, nullable=False),
    )


_T = rate_limit_table(MetaData())
# Built once: hot paths (webhooks, one-time codes) count a hit per request or per group.
_HITS = select(_T.c.hits).where(
    _T.c.bucket == bindparam("b_bucket"), _T.c.window_start == bindparam("b_window")
)
_ADD = (
    update(_T)
    .where(_T.c.bucket == bindparam("b_bucket"), _T.c.window_start == bindparam("b_window"))
    .values(hits=_T.c.hits + bindparam("b_n", type_=Integer))
)
_NEW = _T.insert()


@dataclass(frozen=True)
class Limit:
    name: str
    max_hits: int
    window_s: int


def hit(session: Session, limit: Limit, key: str, now: float | None = None) -> None:
    """Count one hit; raise a 429 problem with Retry-After once the window is full."""
    now = time.time() if now is None else now
    window = int(now // limit.window_s) * limit.window_s
    bucket = f"{limit.name}:{key}"
    where = {"b_bucket": bucket, "b_window": window}
    hits = session.execute(_HITS, where).scalar_one_or_none()
    if hits is None:
        try:
            with session.begin_nested():
                session.execute(_NEW, {"bucket": bucket, "window_start": window, "hits": 1})
            return
        except IntegrityError:
            hits = 0
    if hits >= limit.max_hits:
        raise too_many(limit, now)
    session.execute(_ADD, {**where, "b_n": 1})


def too_many(limit: Limit, now: float | None = None) -> Problem:
    """The 429 problem (with Retry-After to the end of the current window)."""
    now = time.time() if now is None else now
    window = int(now // limit.window_s) * limit.window_s
    retry_after = max(1, math.ceil(window + limit.window_s - now))
    return Problem(
        429,
        "Too Many Requests",
        f"rate limit {limit.name}: at most {limit.max_hits} per {limit.window_s} s",
        headers={"Retry-After": str(retry_after)},
        retry_after=retry_after,
    )


class LeasedLimiter:
    """A fixed-window limit shared by every process, counted without a lock per request.

    `hit` counts in the request's own transaction: every writer of one key then queues on that
    key's row until the writer before it commits (a group commit holds it for the whole group),
    across processes and pods too. Here a process leases a slice of the window's allowance
    (`lease_fraction` of it, at least what is asked) in a short transaction of its own, and
    counts against the slice in memory; the shared row is touched once per slice. The window's
    total never exceeds the limit: what a process leased and did not use is lost when the
    window ends, so under many processes the limit errs on the strict side by at most one
    slice per process.
    """

    def __init__(self, engine: Engine, limit: Limit, lease_fraction: float = 0.02) -> None:
        self.engine = engine
        self.limit = limit
        self.lease = max(1, math.ceil(limit.max_hits * lease_fraction))
        # Per key: (window start, hits left in this process's slice).
        self._left: dict[str, tuple[int, int]] = {}
        self._lock = threading.Lock()
        self._insert = pg_insert if engine.dialect.name == "postgresql" else sqlite_insert

    def take(self, key: str, count: int = 1, now: float | None = None) -> int:
        """Count up to `count` hits; how many fit in the window (the rest get `too_many`)."""
        if count <= 0:
            return 0
        now = time.time() if now is None else now
        window = int(now // self.limit.window_s) * self.limit.window_s
        with self._lock:
            start, left = self._left.get(key, (window, 0))
            if start != window:
                left = 0
            if left < count:
                # Leasing holds this process's other writers of the key for one short
                # transaction, never for another process's group commit.
                left += self._lease(key, window, max(self.lease, count - left))
            allowed = min(count, left)
            self._left[key] = (window, left - allowed)
            return allowed

    def _lease(self, key: str, window: int, want: int) -> int:
        bucket = f"{self.limit.name}:{key}"
        where = {"b_bucket": bucket, "b_window": window}
        new = self._insert(_T).values(bucket=bucket, window_start=window, hits=0)
        with self.engine.begin() as conn:
            conn.execute(new.on_conflict_do_nothing())
            hits: int = conn.execute(_HITS.with_for_update(), where).scalar_one()
            granted = max(0, min(want, self.limit.max_hits - hits))
            if granted:
                conn.execute(_ADD, {**where, "b_n": granted})
        RATE_LIMIT_LEASES.labels(self.limit.name, "granted" if granted else "exhausted").inc()
        return granted

    def too_many(self, now: float | None = None) -> Problem:
        return too_many(self.limit, now)
