"""LeasedLimiter: a shared window counted in slices, on SQLite and PostgreSQL."""

from __future__ import annotations

from sqlalchemy import MetaData, text

from odr_shared.db import make_engine
from odr_shared.ratelimit import LeasedLimiter, Limit, rate_limit_table


def _hits(engine, bucket: str, window: int) -> int | None:  # type: ignore[no-untyped-def]
    with engine.connect() as c:
        return c.execute(
            text("SELECT hits FROM rate_limit_windows WHERE bucket = :b AND window_start = :w"),
            {"b": bucket, "w": window},
        ).scalar_one_or_none()


def test_processes_lease_slices_and_the_window_never_exceeds_its_limit(database_url: str) -> None:
    engine = make_engine(database_url)
    md = MetaData()
    rate_limit_table(md)
    md.create_all(engine)
    limit = Limit("webhooks", 50, 60)
    a = LeasedLimiter(engine, limit, lease_fraction=0.2)  # slices of 10
    b = LeasedLimiter(engine, limit, lease_fraction=0.2)
    now = 1_000_000.0  # in the window from 999,960 to 1,000,020
    try:
        assert a.take("p1", 3, now) == 3
        # One slice leased for three hits: the row counts the slice, not the hits.
        assert _hits(engine, "webhooks:p1", 999_960) == 10
        assert a.take("p1", 7, now) == 7  # from the slice, no lease
        assert _hits(engine, "webhooks:p1", 999_960) == 10
        assert b.take("p1", 25, now) == 25  # more than a slice: leases what it asks
        assert a.take("p1", 30, now) == 15  # what is left of the window
        assert b.take("p1", 1, now) == 0
        assert _hits(engine, "webhooks:p1", 999_960) == 50
        # Another key, and the next window, start afresh.
        assert b.take("p2", 5, now) == 5
        assert a.take("p1", 5, now + 60) == 5
        problem = a.too_many(now)
        assert problem.status == 429
        assert problem.headers["Retry-After"] == "20"
    finally:
        engine.dispose()
