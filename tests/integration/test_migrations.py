"""Each service's Alembic history builds its models' schema on SQLite and PostgreSQL, and unwinds."""

from __future__ import annotations

import importlib

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from odr_shared.db import make_engine
from odr_shared.migrate import downgrade, upgrade

SERVICES = ["gateway", "complaints", "mediation", "notifications"]


@pytest.mark.parametrize("service", SERVICES)
def test_migrations_match_models_and_round_trip(service: str, database_url: str) -> None:
    pkg = importlib.import_module(service)
    models = importlib.import_module(f"{service}.models")
    upgrade(pkg.SERVICE_ROOT, database_url)
    engine = make_engine(database_url)
    with engine.connect() as conn:
        diff = compare_metadata(
            MigrationContext.configure(conn, opts={"compare_type": False}), models.Base.metadata
        )
    assert diff == [], f"{service}: models and migrations disagree: {diff}"
    tables = set(inspect(engine).get_table_names())
    assert {"outbox_messages", "inbox_events"} <= tables
    engine.dispose()
    downgrade(pkg.SERVICE_ROOT, database_url)
    engine = make_engine(database_url)
    assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    engine.dispose()
    upgrade(pkg.SERVICE_ROOT, database_url)
