"""Fixtures for the whole suite: a real Tansu broker, SQLite and PostgreSQL databases, the stack.

In CI (CI=true) PostgreSQL must be reachable and nothing may be skipped: a skip fails the run.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from odr_shared.testing import (
    POSTGRES_ADMIN_URL,
    TansuBroker,
    postgres_available,
    postgres_required,
    temporary_postgres_database,
)

ROOT = Path(__file__).parent
ARTIFACTS = ROOT / "test-artifacts"


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TansuBroker]:
    """A real Kafka-protocol broker (Tansu, in memory) on a free port, for the whole session."""
    log = tmp_path_factory.mktemp("tansu") / "tansu.log"
    with TansuBroker(log_path=log) as b:
        yield b


BOTH_DATABASES = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


def need_postgres() -> None:
    """Go on only if PostgreSQL is reachable: skip the test, or fail it in CI."""
    if not postgres_available():
        if postgres_required():
            pytest.fail("PostgreSQL is required in CI but not reachable")
        pytest.skip("PostgreSQL not reachable")


@pytest.fixture(params=BOTH_DATABASES)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database: a SQLite file, and a throwaway PostgreSQL database when reachable."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/test.db"
        return
    need_postgres()
    with temporary_postgres_database() as url:
        yield url


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A throwaway PostgreSQL database, for what SQLite cannot show (several writers at once)."""
    need_postgres()
    with temporary_postgres_database() as url:
        yield url


@pytest.fixture
def postgres_admin_url() -> str:
    """The URL through which tests create and drop PostgreSQL databases (ODR_TEST_POSTGRES_URL)."""
    need_postgres()
    return POSTGRES_ADMIN_URL


@pytest.fixture(scope="session", params=BOTH_DATABASES)
def stack(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[object]:
    """The whole platform (Tansu, SMTP sink, 4 APIs, 4 workers) on free ports in a temp folder,
    once on SQLite files and once on throwaway PostgreSQL databases (dropped at the end).

    pytest runs every test of one stack before it starts the other, so only one runs at a time.
    """
    from odr_cli.stack import Ports, Stack

    if request.param == "postgresql":
        need_postgres()
    var = tmp_path_factory.mktemp(f"stack-{request.param}")
    s = Stack(
        var,
        Ports.free(),
        database=request.param,
        postgres_url=POSTGRES_ADMIN_URL,
        database_prefix=f"odr_e2e_{uuid.uuid4().hex[:8]}",
        drop_databases=True,
        extra_env={"ENVIRONMENT": "test", "LOG_FORMAT": "json"},
    )
    try:
        s.start()
        yield s
    finally:
        s.stop()


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    # CI must run everything it should: a skipped test is a failure there.
    if os.environ.get("CI", "").lower() not in ("1", "true", "yes"):
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = reporter.stats.get("skipped", []) if reporter else []
    if skipped:
        reporter.write_line(f"CI: {len(skipped)} test(s) were skipped; failing the run", red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
