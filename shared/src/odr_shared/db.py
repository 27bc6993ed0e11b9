"""SQLAlchemy 2 plumbing: a base with a naming convention, engines that behave on SQLite."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, NamedTuple

from sqlalchemy import DateTime, MetaData, Table, bindparam, create_engine, event, insert, text
from sqlalchemy.engine import Connection, Dialect, Engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.types import TypeDecorator

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def new_metadata() -> MetaData:
    return MetaData(naming_convention=NAMING_CONVENTION)


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC datetime on every backend (SQLite stores naive values)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given; use timezone-aware UTC")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


# Each service declares `class Base(DeclarativeBase)` with `new_metadata()` and this map, so no
# two services share a MetaData and every `Mapped[datetime]` is timezone-aware UTC.
TYPE_ANNOTATION_MAP: dict[Any, Any] = {datetime: UTCDateTime()}


# Execution option for a transaction that only reads: on SQLite it starts a read transaction
# instead of taking the write lock (`engine.connect().execution_options(**{READ_ONLY: True})`).
READ_ONLY = "odr_read_only"
# SQLite's default: the connection whose commit takes the WAL past this many pages checkpoints.
WORKER_CHECKPOINT_PAGES = 1000
# API processes checkpoint only past this (about 40 MB of WAL): their commits answer requests,
# and the worker beside them (its outbox relay commits every few tens of milliseconds under
# load) checkpoints long before, so a request does not wait for a checkpoint's page copying.
API_CHECKPOINT_PAGES = 10_000
# Connections each engine keeps open, and how many more it may open for a burst (both settable:
# DB_POOL_SIZE, DB_MAX_OVERFLOW). Small on purpose: every process of every service has its own
# pool, a process's transactions are short and the GIL lets few of them run at once, and the
# whole local stack (4 APIs, 4 workers: 8 pools) then needs at most 8 x 5 = 40 of a
# PostgreSQL's 100 connections. A request that finds the pool busy waits
# for a connection (up to 30 s) rather than failing.
DEFAULT_POOL_SIZE = 3
DEFAULT_MAX_OVERFLOW = 2


def make_engine(
    url: str,
    *,
    checkpoint_pages: int = WORKER_CHECKPOINT_PAGES,
    pool_size: int = DEFAULT_POOL_SIZE,
    max_overflow: int = DEFAULT_MAX_OVERFLOW,
    **kwargs: Any,
) -> Engine:
    """An engine; on SQLite, WAL and a busy timeout so an API and its worker can share the file.

    `checkpoint_pages` is SQLite's wal_autocheckpoint for this engine's connections (see
    API_CHECKPOINT_PAGES); `pool_size` and `max_overflow` bound a server database's connection
    pool (see DEFAULT_POOL_SIZE). Each applies to its kind of database only.
    """
    # A failing statement's bound values (names, phones, free text) stay out of its error, and
    # so out of logs and dead-letter headers, where no erasure could reach them.
    kwargs.setdefault("hide_parameters", True)
    if url.startswith("sqlite"):
        kwargs.setdefault("connect_args", {"check_same_thread": False, "timeout": 30})
        engine = create_engine(url, **kwargs)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            # Let SQLAlchemy, not pysqlite, open transactions so BEGIN IMMEDIATE is honoured.
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA synchronous=NORMAL")
            # 32 MB of page cache (default 2 MB): a group commit touches index pages all over
            # the file (random delivery keys, order ids), and re-reading them cost more than
            # writing them.
            cur.execute("PRAGMA cache_size=-32768")
            cur.execute(f"PRAGMA wal_autocheckpoint={int(checkpoint_pages)}")
            # Erased or purged personal data is overwritten with zeros, not left in the file's
            # free pages (PostgreSQL's VACUUM reclaims dead rows).
            cur.execute("PRAGMA secure_delete=ON")
            cur.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn: Any) -> None:
            if conn.get_execution_options().get(READ_ONLY):
                # WAL readers never block writers, nor wait for them.
                conn.exec_driver_sql("BEGIN")
                return
            # Take the write lock up front: avoids SQLITE_BUSY upgrade deadlocks between processes.
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    kwargs.setdefault("pool_pre_ping", True)
    return create_engine(url, pool_size=pool_size, max_overflow=max_overflow, **kwargs)


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(bind=engine, expire_on_commit=False)


@contextmanager
def transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    """One unit of work: commit on success, roll back on error. Only the owner commits."""
    with factory() as session, session.begin():
        yield session


def ping(engine: Engine) -> None:
    with engine.connect() as conn:
        conn.execute(text("SELECT 1"))


class BulkInsert:
    """`INSERT INTO table (columns)` for many rows at once through the driver's executemany.

    The same statement SQLAlchemy would run, with the same bind processing per column (JSON,
    UTC datetimes, each dialect's own), but compiled and looked up once per dialect instead of
    per call and row: on the gateway's hot path SQLAlchemy's per-row parameter handling cost
    more than SQLite spent inserting the rows. Rows are dicts keyed by column.
    """

    def __init__(self, table: Table, columns: Sequence[str]) -> None:
        self.table = table
        self.columns = tuple(columns)
        self._by_dialect: dict[str, _Compiled] = {}
        self._returning_sql: dict[tuple[str, ...], str] = {}  # PostgreSQL's

    def execute(self, conn: Connection, rows: Sequence[Mapping[str, Any]]) -> None:
        if not rows:
            return
        compiled = self._for(conn.dialect)
        conn.exec_driver_sql(compiled.sql, [compiled.to_params(row) for row in rows])

    def execute_returning(
        self, conn: Connection, rows: Sequence[Mapping[str, Any]], returning: Sequence[str]
    ) -> list[tuple[Any, ...]]:
        """The rows inserted, RETURNING `returning` of each: in the rows' order on PostgreSQL,
        in no set order on SQLite (it does not promise VALUES order), so return a column that
        identifies each row."""
        dialect = conn.dialect
        if dialect.name == "postgresql":
            return self._returning_pipelined(conn, rows, returning)
        procs = self._for(dialect).procs
        quote = dialect.identifier_preparer.quote
        mark = "?" if dialect.paramstyle == "qmark" else "%s"
        # Identifiers from the table's declaration, quoted by the dialect; values are bound.
        columns = ", ".join(quote(c) for c in self.columns)
        head = f"INSERT INTO {quote(self.table.name)} ({columns}) VALUES "  # noqa: S608
        one = "(" + ", ".join([mark] * len(self.columns)) + ")"
        tail = " RETURNING " + ", ".join(quote(c) for c in returning)
        out: list[tuple[Any, ...]] = []
        for start in range(0, len(rows), 500):
            chunk = rows[start : start + 500]
            params = [
                row[c] if p is None else p(row[c])
                for row in chunk
                for c, p in zip(self.columns, procs, strict=True)
            ]
            sql = head + ", ".join([one] * len(chunk)) + tail
            out.extend(tuple(r) for r in conn.exec_driver_sql(sql, tuple(params)))
        return out

    def _returning_pipelined(
        self, conn: Connection, rows: Sequence[Mapping[str, Any]], returning: Sequence[str]
    ) -> list[tuple[Any, ...]]:
        # psycopg's executemany: one single-row statement, prepared once and pipelined, each
        # row's RETURNING in order. A multi-row VALUES text changes with the row count and has
        # hundreds of parameters, which psycopg parses anew on every call (it caches only short
        # statements): that parse was a sixth of a group's CPU on the gateway's store path.
        compiled = self._for(conn.dialect)
        key = tuple(returning)
        sql = self._returning_sql.get(key)
        if sql is None:
            stmt = insert(self.table).values({c: bindparam(c) for c in self.columns})
            stmt = stmt.returning(*(self.table.c[c] for c in returning))
            sql = self._returning_sql[key] = str(stmt.compile(dialect=conn.dialect))
        params = [compiled.to_params(r) for r in rows]
        dbapi = conn.dialect.loaded_dbapi
        cursor: Any = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        try:
            cursor.executemany(sql, params, returning=True)
            out: list[tuple[Any, ...]] = []
            while True:
                out.extend(tuple(r) for r in cursor.fetchall())
                if not cursor.nextset():
                    return out
        except dbapi.Error as exc:
            # As SQLAlchemy would raise it (IntegrityError for a unique key a concurrent
            # transaction won), so callers handle one family of errors whatever ran the SQL.
            raise DBAPIError.instance(sql, params, exc, dbapi.Error) from exc
        finally:
            cursor.close()

    def _for(self, dialect: Dialect) -> _Compiled:
        found = self._by_dialect.get(dialect.name)
        if found is not None:
            return found
        stmt = insert(self.table).values({c: bindparam(c) for c in self.columns})
        compiled = stmt.compile(dialect=dialect)
        procs = {
            c: self.table.c[c].type.dialect_impl(dialect).bind_processor(dialect)
            for c in self.columns
        }
        if compiled.positional:
            order = [str(name) for name in compiled.positiontup or ()]
            assert sorted(order) == sorted(self.columns), order
            steps = [(c, procs[c]) for c in order]

            def to_params(row: Mapping[str, Any]) -> Any:
                return tuple(row[c] if p is None else p(row[c]) for c, p in steps)

        else:
            items = list(procs.items())

            def to_params(row: Mapping[str, Any]) -> Any:
                return {c: row[c] if p is None else p(row[c]) for c, p in items}

        found = _Compiled(str(compiled), to_params, [procs[c] for c in self.columns])
        self._by_dialect[dialect.name] = found
        return found


class _Compiled(NamedTuple):
    """A BulkInsert for one dialect: its SQL, a row's parameters, the columns' processors."""

    sql: str
    to_params: Callable[[Mapping[str, Any]], Any]
    procs: list[Any]  # in `columns` order; None where the driver takes the value as it is
