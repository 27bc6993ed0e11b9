"""Each service's Alembic history builds its models' schema on SQLite and PostgreSQL, and unwinds."""

from __future__ import annotations

import importlib

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text

from odr_shared.db import make_engine, utcnow
from odr_shared.migrate import downgrade, upgrade
from odr_shared.outbox import outbox_slot

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


@pytest.mark.parametrize("service", SERVICES)
def test_outbox_slots_migration_gives_waiting_rows_their_keys_slot(
    service: str, database_url: str
) -> None:
    pkg = importlib.import_module(service)
    upgrade(pkg.SERVICE_ROOT, database_url, "0001")
    engine = make_engine(database_url)
    keys = [f"plt_m:K{i}" for i in range(40)]
    with engine.begin() as conn:
        for i, key in enumerate(keys):
            conn.execute(
                text(
                    "INSERT INTO outbox_messages (event_id, topic, key, event_type, payload,"
                    " created_at, published_at) VALUES (:e, 't', :k, 'x', :p, :c, :pub)"
                ),
                {
                    "e": f"ev-{i}",
                    "k": key,
                    "p": b"{}",
                    "c": utcnow(),
                    "pub": utcnow() if i % 2 else None,  # every other row already sent
                },
            )
    engine.dispose()
    upgrade(pkg.SERVICE_ROOT, database_url)
    engine = make_engine(database_url)
    with engine.connect() as conn:
        rows = conn.execute(
            text("SELECT key, slot, published_at FROM outbox_messages ORDER BY id")
        ).all()
        indexes = {ix["name"] for ix in inspect(conn).get_indexes("outbox_messages")}
    engine.dispose()
    waiting = {r.key: r.slot for r in rows if r.published_at is None}
    assert waiting == {key: outbox_slot(key) for key in keys[::2]}
    assert len(set(waiting.values())) > 1
    assert {r.slot for r in rows if r.published_at is not None} == {0}
    assert "ix_outbox_messages_unsent" in indexes
    assert "ix_outbox_messages_published_at" not in indexes
    downgrade(pkg.SERVICE_ROOT, database_url, "0001")
    engine = make_engine(database_url)
    with engine.connect() as conn:
        columns = {c["name"] for c in inspect(conn).get_columns("outbox_messages")}
        assert conn.execute(text("SELECT count(*) FROM outbox_messages")).scalar_one() == 40
    engine.dispose()
    assert "slot" not in columns
