"""Fixed-window rate limits kept in the service's own database, so every replica sees one count."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from sqlalchemy import Column, Integer, MetaData, String, Table, bindparam, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

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


def hit_many(
    session: Session | Connection, limit: Limit, key: str, count: int, now: float | None = None
) -> int:
    """Count up to `count` hits in one statement pair; returns how many fit in the window.

    The same count as `count` calls of `hit` (a refused hit is not counted), for callers that
    store many requests in one transaction (group commit); the caller answers the rest with
    `too_many`.
    """
    if count <= 0:
        return 0
    now = time.time() if now is None else now
    window = int(now // limit.window_s) * limit.window_s
    bucket = f"{limit.name}:{key}"
    where = {"b_bucket": bucket, "b_window": window}
    hits = session.execute(_HITS, where).scalar_one_or_none()
    if hits is None:
        allowed = min(count, max(1, limit.max_hits))  # as `hit`: a new window takes one
        try:
            with session.begin_nested():
                session.execute(_NEW, {"bucket": bucket, "window_start": window, "hits": allowed})
            return allowed
        except IntegrityError:
            hits = 0
    allowed = max(0, min(count, limit.max_hits - hits))
    if allowed:
        session.execute(_ADD, {**where, "b_n": allowed})
    return allowed
