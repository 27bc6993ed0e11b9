"""Engines: SQLite writes take the lock up front, reads go without it; server pools are bounded."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event
from sqlalchemy.exc import OperationalError

from odr_shared.db import READ_ONLY, make_engine


def test_a_read_only_transaction_reads_while_a_writer_holds_the_sqlite_lock(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path}/ro.db")

    @event.listens_for(engine, "connect")
    def _fail_fast(dbapi_conn: Any, _record: Any) -> None:
        # After make_engine's pragmas: a lock wait fails in 0.2 s instead of 30 s.
        dbapi_conn.execute("PRAGMA busy_timeout=200")

    with engine.begin() as c:
        c.exec_driver_sql("CREATE TABLE t (x INTEGER)")
        c.exec_driver_sql("INSERT INTO t VALUES (1)")
    with engine.connect() as writer:
        writer.exec_driver_sql("INSERT INTO t VALUES (2)")  # BEGIN IMMEDIATE: holds the lock
        with engine.connect().execution_options(**{READ_ONLY: True}) as reader:
            # The committed state, without waiting for the writer.
            assert reader.exec_driver_sql("SELECT COUNT(*) FROM t").scalar_one() == 1
        with engine.connect() as other, pytest.raises(OperationalError, match="locked"):
            other.exec_driver_sql("SELECT COUNT(*) FROM t")  # a default transaction writes
        writer.commit()
    with engine.connect().execution_options(**{READ_ONLY: True}) as reader:
        assert reader.exec_driver_sql("SELECT COUNT(*) FROM t").scalar_one() == 2
    engine.dispose()


def _bulk_table() -> Any:
    from sqlalchemy import JSON, Column, Integer, LargeBinary, MetaData, String, Table

    from odr_shared.db import UTCDateTime

    return Table(
        "bulk_rows",
        MetaData(),
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("name", String(50), nullable=False, unique=True),
        Column("doc", JSON, nullable=True),
        Column("at", UTCDateTime(), nullable=False),
        Column("blob", LargeBinary, nullable=True),
    )


def test_bulk_insert_stores_exactly_what_sqlalchemy_would(database_url: str) -> None:
    """Same stored representation as a Core insert (JSON text, JSON null for None, UTC times,
    bytes) on each database, and RETURNING gives every row's id, across its 500-row chunks."""
    from datetime import UTC, datetime, timedelta, timezone

    from sqlalchemy import insert, select, text

    from odr_shared.db import BulkInsert

    table = _bulk_table()
    engine = make_engine(database_url)
    table.metadata.create_all(engine)
    at = datetime(2026, 11, 29, 23, 30, 1, 123456, tzinfo=timezone(timedelta(hours=7)))
    docs: list[Any] = [{"a": [1, "hai"], "ư": True}, None, [], "text"]

    def row(name: str, i: int) -> dict[str, Any]:
        return {"name": name, "doc": docs[i % 4], "at": at, "blob": bytes([i % 256]) * 3}

    bulk = BulkInsert(table, ("name", "doc", "at", "blob"))
    with engine.begin() as conn:
        conn.execute(insert(table), [row(f"core-{i}", i) for i in range(4)])
        bulk.execute(conn, [row(f"bulk-{i}", i) for i in range(4)])
        bulk.execute(conn, [])
        returned = bulk.execute_returning(
            conn, [row(f"ret-{i}", i) for i in range(1201)], ("id", "name")
        )
    assert len(returned) == 1201
    assert {name for _id, name in returned} == {f"ret-{i}" for i in range(1201)}
    assert len({id_ for id_, _name in returned}) == 1201
    if engine.dialect.name == "postgresql":
        # Pipelined single-row statements: each row's RETURNING in the rows' order.
        assert [name for _id, name in returned] == [f"ret-{i}" for i in range(1201)]
    with engine.connect() as conn:
        got = {r.name: r for r in conn.execute(select(table))}
        # What each database holds, as text: the bulk rows are byte-for-byte the Core rows.
        raw = {
            r[0]: tuple(r[1:])
            for r in conn.execute(
                text("SELECT name, CAST(doc AS TEXT), CAST(at AS TEXT), doc IS NULL FROM bulk_rows")
            )
        }
    for i in range(4):
        core, fast, ret = got[f"core-{i}"], got[f"bulk-{i}"], got[f"ret-{i}"]
        for r in (fast, ret):
            assert (r.doc, r.at, r.blob) == (core.doc, core.at, core.blob)
            assert r.at == at.astimezone(UTC)
        assert raw[f"bulk-{i}"] == raw[f"core-{i}"] == raw[f"ret-{i}"]
    ids = dict((name, id_) for id_, name in returned)
    assert all(got[name].id == id_ for name, id_ in ids.items())
    engine.dispose()


def test_the_pool_holds_what_db_pool_size_and_db_max_overflow_allow(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The settings read DB_POOL_SIZE and DB_MAX_OVERFLOW; on PostgreSQL a process then opens
    at most their sum, and one more checkout waits for a connection to come back (here it gives
    up at once). SQLite files keep their own pool: the settings do not apply to them."""
    from sqlalchemy.exc import TimeoutError as PoolTimeout

    from odr_shared.settings import ServiceSettings

    monkeypatch.setenv("DB_POOL_SIZE", "1")
    monkeypatch.setenv("DB_MAX_OVERFLOW", "1")
    settings = ServiceSettings()
    assert (settings.db_pool_size, settings.db_max_overflow) == (1, 1)
    engine = make_engine(
        database_url,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        pool_timeout=0.2,
    )
    try:
        first, second = engine.connect(), engine.connect()
        if engine.dialect.name == "sqlite":
            engine.connect().close()  # a third: the settings are not SQLite's limit
        else:
            assert engine.pool.size() == 1
            with pytest.raises(PoolTimeout):
                engine.connect()
            second.close()
            engine.connect().close()  # one came back: the next checkout gets it
        first.close()
        second.close()
    finally:
        engine.dispose()
