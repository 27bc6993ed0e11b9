"""SQLite engines: write transactions take the lock up front, read-only ones never wait for it."""

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
