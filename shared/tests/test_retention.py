"""Retention rules: only rows past their period go, in bounded batches; a dry run touches nothing."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import Column, Engine, Integer, MetaData, String, Table, Text, func, insert, select

from odr_shared.db import UTCDateTime, make_engine, utcnow
from odr_shared.inbox import inbox_table
from odr_shared.privacy import subject_keys_table
from odr_shared.ratelimit import rate_limit_table
from odr_shared.retention import Purger, Rule, shared_rules
from odr_shared.settings import ServiceSettings

md = MetaData()
bodies = Table(
    "bodies",
    md,
    Column("id", Integer, primary_key=True),
    Column("kind", String(20)),
    Column("body", Text, nullable=True),
    Column("created_at", UTCDateTime()),
)
inbox = inbox_table(md)
windows = rate_limit_table(md)
keys = subject_keys_table(md)


@pytest.fixture
def engine(tmp_path: object) -> Iterator[Engine]:
    e = make_engine(f"sqlite:///{tmp_path}/r.db")  # type: ignore[str-bytes-safe]
    md.create_all(e)
    yield e
    e.dispose()


def fill(engine: Engine) -> None:
    now = utcnow()
    with engine.begin() as conn:
        conn.execute(
            insert(bodies),
            [
                {"kind": k, "body": f"b{i}", "created_at": now - timedelta(days=d)}
                for i, (k, d) in enumerate(
                    [("webhook", 40)] * 7 + [("webhook", 10)] * 3 + [("rejected", 40)] * 2
                )
            ],
        )
        conn.execute(
            insert(inbox),
            [
                {
                    "consumer_group": "g",
                    "event_id": f"e{i}",
                    "event_type": "t",
                    "processed_at": now - timedelta(days=d),
                }
                for i, d in enumerate([45, 45, 45, 1])
            ],
        )
        conn.execute(
            insert(keys),
            [
                {
                    "kid": "t_sp_old",
                    "subject_id": "sp_old",
                    "wrapped_key": b"",
                    "created_at": now - timedelta(days=45),
                },
                {"kid": "t_sp_new", "subject_id": "sp_new", "wrapped_key": b"", "created_at": now},
                # a live key is never a tombstone, however old
                {
                    "kid": "k_live",
                    "subject_id": "sp_live",
                    "wrapped_key": b"w",
                    "created_at": now - timedelta(days=900),
                },
            ],
        )
        t = int(time.time())
        conn.execute(
            insert(windows),
            [
                {"bucket": "otp:x", "window_start": t - 5 * 86400, "hits": 1},
                {"bucket": "otp:x", "window_start": t - 60, "hits": 1},
            ],
        )


def count(engine: Engine, table: Table, *where: object) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table).where(*where)).scalar_one())  # type: ignore[arg-type]


def test_purge_removes_only_expired_rows_in_batches(engine: Engine) -> None:
    fill(engine)
    rules = [
        Rule("webhook_bodies", bodies, "created_at", 30, where="kind = 'webhook'"),
        *shared_rules(ServiceSettings()),  # type: ignore[call-arg]
    ]
    purger = Purger(engine, [r for r in rules if r.name != "outbox_sent"], batch_size=2, pause_s=0)
    dry = purger.purge(dry_run=True)
    assert dry == {
        "webhook_bodies": 7,
        "inbox": 3,
        "erasure_tombstones": 1,
        "rate_limit_windows": 1,
    }
    assert count(engine, bodies) == 12
    assert count(engine, inbox) == 4
    done = purger.purge()
    assert done == dry
    assert count(engine, bodies, bodies.c.kind == "webhook") == 3  # the young ones
    assert count(engine, bodies, bodies.c.kind == "rejected") == 2  # another rule's business
    assert count(engine, inbox) == 1
    assert count(engine, windows) == 1
    with engine.connect() as conn:
        assert sorted(conn.execute(select(keys.c.kid)).scalars()) == ["k_live", "t_sp_new"]
    assert set(purger.purge().values()) == {0}


def test_clear_rule_empties_columns_and_keeps_the_row(engine: Engine) -> None:
    fill(engine)
    purger = Purger(
        engine,
        [Rule("bodies", bodies, "created_at", 30, clear={"body": None})],
        batch_size=3,
        pause_s=0,
    )
    assert purger.purge() == {"bodies": 9}
    assert count(engine, bodies) == 12
    assert count(engine, bodies, bodies.c.body.is_(None)) == 9
    assert purger.purge(dry_run=True) == {"bodies": 0}


def test_rule_by_table_name_reflects_it(engine: Engine) -> None:
    fill(engine)
    purger = Purger(
        engine, [Rule("rejected", "bodies", "created_at", 30, where="kind = 'rejected'")]
    )
    assert purger.purge() == {"rejected": 2}
