"""Where the stack keeps the services' data: ODR_DATABASE, its PostgreSQL databases, given URLs."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from odr_cli.stack import SERVICES, Stack, StackError, database_from_env, stack_from_env
from odr_shared.testing import free_port


def test_odr_database_is_sqlite_unless_postgres_is_asked_for() -> None:
    assert database_from_env({}) == "sqlite"
    assert database_from_env({"ODR_DATABASE": ""}) == "sqlite"
    assert database_from_env({"ODR_DATABASE": "Postgres"}) == "postgres"
    assert database_from_env({"ODR_DATABASE": "postgresql"}) == "postgres"
    with pytest.raises(StackError, match=r"ODR_DATABASE='mysql'.*sqlite or postgres"):
        database_from_env({"ODR_DATABASE": "mysql"})
    with pytest.raises(StackError, match=r"database='pg'"):
        Stack(Path("var"), database="pg")


def test_odr_stack_refuses_an_unknown_database_before_starting_anything(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "odr_cli.main", "stack", "--var", str(tmp_path / "var")],
        env={**os.environ, "ODR_DATABASE": "oracle"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 2
    assert "ODR_DATABASE='oracle'" in out.stderr
    assert not (tmp_path / "var").exists()


def test_on_sqlite_each_service_has_a_file_in_the_stack_folder(tmp_path: Path) -> None:
    stack = Stack(tmp_path)
    for name in SERVICES:
        url = stack.database_url(name)
        assert url == f"sqlite:///{tmp_path.resolve()}/{name}.db"
        assert stack.env[f"{name.upper()}_DATABASE_URL"] == url
    assert stack.owned_databases == {}


def test_make_run_on_postgres_names_one_database_per_service_and_a_set_url_wins(
    tmp_path: Path,
) -> None:
    env = {
        "ODR_DATABASE": "postgres",
        "ODR_POSTGRES_URL": "postgresql+psycopg://odr:s3cret@db.internal:6543/postgres?sslmode=require",
        "MEDIATION_DATABASE_URL": "postgresql+psycopg://odr@elsewhere/mediation_dev",
    }
    stack = stack_from_env(tmp_path, env)
    assert stack.owned_databases == {
        "gateway": "odr_gateway",
        "complaints": "odr_complaints",
        "notifications": "odr_notifications",
    }
    assert stack.database_url("complaints") == (
        "postgresql+psycopg://odr:s3cret@db.internal:6543/odr_complaints?sslmode=require"
    )
    assert stack.database_url("mediation") == env["MEDIATION_DATABASE_URL"]
    assert stack.env["MEDIATION_DATABASE_URL"] == env["MEDIATION_DATABASE_URL"]
    # A set URL wins on SQLite too.
    on_sqlite = stack_from_env(tmp_path, {"MEDIATION_DATABASE_URL": "sqlite:////srv/m.db"})
    assert on_sqlite.database_url("mediation") == "sqlite:////srv/m.db"
    assert on_sqlite.database_url("gateway").endswith("/gateway.db")
    with pytest.raises(StackError, match="prefix"):
        Stack(tmp_path, database="postgres", database_prefix="odr; DROP")


def test_an_unreachable_server_is_named_in_the_error(tmp_path: Path) -> None:
    port = free_port()  # nothing listens there
    url = f"postgresql+psycopg://odr:s3cret@127.0.0.1:{port}/postgres"
    stack = Stack(tmp_path, database="postgres", postgres_url=url)
    with pytest.raises(StackError) as err:
        stack.prepare_databases()
    message = str(err.value)
    assert f"127.0.0.1:{port}" in message
    assert "ODR_POSTGRES_URL" in message
    assert "s3cret" not in message


def _databases(admin_url: str, prefix: str) -> set[str]:
    engine = create_engine(admin_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                text("SELECT datname FROM pg_database WHERE datname LIKE :p"), {"p": f"{prefix}_%"}
            )
            return {r[0] for r in rows}
    finally:
        engine.dispose()


def test_the_stack_creates_its_databases_keeps_them_and_drops_only_what_it_created(
    postgres_admin_url: str, tmp_path: Path
) -> None:
    prefix = f"odr_stacktest_{uuid.uuid4().hex[:8]}"
    names = {f"{prefix}_{name}" for name in SERVICES}
    first = Stack(
        tmp_path, database="postgres", postgres_url=postgres_admin_url, database_prefix=prefix
    )
    try:
        assert set(first.prepare_databases()) == names
        assert _databases(postgres_admin_url, prefix) == names
        engine = create_engine(first.database_url("complaints"))
        with engine.begin() as conn:
            conn.execute(text("CREATE TABLE kept (n int)"))
            conn.execute(text("INSERT INTO kept VALUES (7)"))
        engine.dispose()

        # The next run (make run again) finds them: nothing created, the data is still there.
        again = Stack(
            tmp_path,
            database="postgres",
            postgres_url=postgres_admin_url,
            database_prefix=prefix,
            drop_databases=True,
        )
        assert again.prepare_databases() == []
        again.stop()  # it created nothing, so it drops nothing
        engine = create_engine(again.database_url("complaints"))
        with engine.connect() as conn:
            assert conn.execute(text("SELECT n FROM kept")).scalar_one() == 7
        engine.dispose()

        # --reset: the stack's own databases go, and come back empty.
        first.reset_databases()
        assert _databases(postgres_admin_url, prefix) == set()
    finally:
        first.reset_databases()


def test_a_throwaway_stack_drops_its_databases_even_with_a_session_still_open(
    postgres_admin_url: str, tmp_path: Path
) -> None:
    prefix = f"odr_stacktest_{uuid.uuid4().hex[:8]}"
    stack = Stack(
        tmp_path,
        database="postgres",
        postgres_url=postgres_admin_url,
        database_prefix=prefix,
        drop_databases=True,
    )
    try:
        stack.prepare_databases()
        reader = create_engine(stack.database_url("gateway")).connect()  # a test that forgot
        reader.execute(text("SELECT 1"))
        stack.stop()
        assert _databases(postgres_admin_url, prefix) == set()
        reader.invalidate()
    finally:
        stack.reset_databases()
