"""Retention: every kind of record has a period, and a purge in each worker removes what is past it.

A `Rule` names a table, the column that dates a row, the period, and optionally an extra SQL
condition. It deletes the rows past the period, or, with `clear`, empties some columns of them
(a delivery's body goes while its facts stay). The `Purger` runs the rules in bounded batches: it
picks at most `batch_size` primary keys, deletes (or empties) just those in a short transaction of
their own, and goes on until a batch comes back short, so it never holds long locks nor one huge
transaction. `purge(dry_run=True)` counts what would go and touches nothing
(`odr privacy purge --dry-run`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sqlalchemy import Engine, MetaData, Table, delete, func, or_, select, text, tuple_, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.sql.elements import ColumnElement

from odr_shared.db import utcnow
from odr_shared.inbox import inbox_table
from odr_shared.metrics import RETENTION_PURGED
from odr_shared.outbox import outbox_table
from odr_shared.privacy.keys import TOMBSTONE_PREFIX, subject_keys_table
from odr_shared.ratelimit import rate_limit_table
from odr_shared.settings import ServiceSettings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Rule:
    """Rows of `table` whose `age_column` is more than `days` old (and match `where`) go.

    `table` is a Table or a table name (reflected from the database on first use).
    `age_kind` "epoch" reads the column as Unix seconds (rate-limit windows).
    `clear`: instead of deleting, set these columns (to None, or the value given); rows already
    cleared are left alone.
    """

    name: str
    table: Table | str
    age_column: str
    days: float
    where: str | None = None
    pk: tuple[str, ...] | str | None = None
    age_kind: str = "datetime"
    clear: dict[str, Any] = field(default_factory=dict)


class Purger:
    """Applies retention rules to one database; a worker part (`run`/`stop`)."""

    def __init__(
        self,
        engine: Engine,
        rules: Sequence[Rule],
        *,
        interval_s: float = 3600.0,
        batch_size: int = 500,
        pause_s: float = 0.05,
    ) -> None:
        self.engine = engine
        self.rules = list(rules)
        self.interval_s = interval_s
        self.batch_size = batch_size
        self.pause_s = pause_s
        self._stop = threading.Event()
        self._tables: dict[str, Table] = {}

    @classmethod
    def from_settings(
        cls, engine: Engine, rules: Sequence[Rule], settings: ServiceSettings
    ) -> Purger:
        return cls(
            engine,
            rules,
            interval_s=settings.retention_interval_s,
            batch_size=settings.retention_batch_size,
        )

    def _table(self, rule: Rule) -> Table:
        if isinstance(rule.table, Table):
            return rule.table
        table = self._tables.get(rule.table)
        if table is None:
            table = Table(rule.table, MetaData(), autoload_with=self.engine)
            self._tables[rule.table] = table
        return table

    def _condition(self, rule: Rule, table: Table) -> ColumnElement[bool]:
        age = table.c[rule.age_column]
        cutoff_dt = utcnow() - timedelta(days=rule.days)
        cutoff: Any = int(cutoff_dt.timestamp()) if rule.age_kind == "epoch" else cutoff_dt
        cond: ColumnElement[bool] = age < cutoff
        if rule.where:
            cond = cond & text(f"({rule.where})")
        if rule.clear:
            cond = cond & or_(
                *(table.c[c].is_not(None) for c, v in rule.clear.items() if v is None),
                *(table.c[c] != v for c, v in rule.clear.items() if v is not None),
            )
        return cond

    def _keys(self, rule: Rule, table: Table) -> list[Any]:
        if rule.pk is None:
            return list(table.primary_key.columns)
        names = (rule.pk,) if isinstance(rule.pk, str) else rule.pk
        return [table.c[n] for n in names]

    def count(self, rule: Rule) -> int:
        table = self._table(rule)
        with self.engine.connect() as conn:
            return int(
                conn.execute(
                    select(func.count()).select_from(table).where(self._condition(rule, table))
                ).scalar_one()
            )

    def purge_rule(self, rule: Rule) -> int:
        """Apply one rule to the end, batch by batch; the number of rows deleted or emptied."""
        table = self._table(rule)
        keys = self._keys(rule, table)
        done = 0
        while not self._stop.is_set():
            with self.engine.begin() as conn:
                picked = conn.execute(
                    select(*keys).where(self._condition(rule, table)).limit(self.batch_size)
                ).all()
                if not picked:
                    break
                if len(keys) == 1:
                    match: ColumnElement[bool] = keys[0].in_([row[0] for row in picked])
                else:
                    match = tuple_(*keys).in_([tuple(row) for row in picked])
                if rule.clear:
                    conn.execute(update(table).where(match).values(**rule.clear))
                else:
                    conn.execute(delete(table).where(match))
            done += len(picked)
            RETENTION_PURGED.labels(rule.name).inc(len(picked))
            if len(picked) < self.batch_size:
                break
            time.sleep(self.pause_s)
        return done

    def purge(self, dry_run: bool = False) -> dict[str, int]:
        """Each rule's count of rows removed (or, dry, that would be)."""
        out: dict[str, int] = {}
        for rule in self.rules:
            out[rule.name] = self.count(rule) if dry_run else self.purge_rule(rule)
        if not dry_run and any(out.values()):
            log.info("retention purge", extra={"purged": out})
        return out

    def run(self) -> None:
        while not self._stop.is_set():
            try:
                self.purge()
            except Exception:  # a failed round is logged; the next one retries
                log.exception("retention purge failed")
            self._stop.wait(self.interval_s)

    def stop(self) -> None:
        self._stop.set()


_SHARED = MetaData()
_OUTBOX = outbox_table(_SHARED)
_INBOX = inbox_table(_SHARED)
_RATE = rate_limit_table(_SHARED)
_KEYS = subject_keys_table(_SHARED)


def shared_rules(settings: ServiceSettings, *, rate_limits: bool = True) -> list[Rule]:
    """The plumbing every service has: sent outbox rows, inbox ids, old rate-limit windows.

    The inbox keeps an event id longer than the topics keep the event (7 days on the platform's
    topics), so a redelivery can never find its id gone.
    """
    rules = [
        Rule(
            "outbox_sent",
            _OUTBOX,
            "published_at",
            settings.retention_outbox_sent_days,
        ),
        Rule("inbox", _INBOX, "processed_at", settings.retention_inbox_days),
        # An erased subject's tombstone outlives any late copy of their events (as the inbox).
        Rule(
            "erasure_tombstones",
            _KEYS,
            "created_at",
            settings.retention_inbox_days,
            where=f"substr(kid, 1, 2) = '{TOMBSTONE_PREFIX}'",
        ),
    ]
    if rate_limits:
        rules.append(
            Rule(
                "rate_limit_windows",
                _RATE,
                "window_start",
                settings.retention_rate_limit_days,
                age_kind="epoch",
            )
        )
    return rules


def purge_service(service: str, dry_run: bool = False) -> dict[str, int]:
    """Run one service's retention rules now, on its database (its own settings and URL).

    `service` is its package (`gateway`, `complaints`, `mediation`, `notifications`), which has
    `settings.get_settings()` and `retention.rules(settings)`.
    """
    import importlib
    from pathlib import Path

    from sqlalchemy.engine import make_url

    from odr_shared.db import make_engine

    settings = importlib.import_module(f"{service}.settings").get_settings()
    url = make_url(settings.database_url)
    if url.get_backend_name() == "sqlite" and not Path(url.database or "").exists():
        # SQLite would make an empty file; say where we looked instead.
        raise FileNotFoundError(
            f"no database at {url.database} (run `make run` first, or set "
            f"{service.upper()}_DATABASE_URL)"
        )
    rules = importlib.import_module(f"{service}.retention").rules(settings)
    engine = make_engine(settings.database_url)
    try:
        return Purger.from_settings(engine, rules, settings).purge(dry_run=dry_run)
    finally:
        engine.dispose()


def purge_main(service: str, argv: Sequence[str] | None = None) -> None:
    """`<service>-purge [--dry-run]`: what a worker pod runs by hand (the worker also runs it)."""
    import argparse
    import json

    parser = argparse.ArgumentParser(
        prog=f"{service}-purge", description=f"Apply {service}'s retention rules now."
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="count what would go; change nothing"
    )
    args = parser.parse_args(argv)
    try:
        counts = purge_service(service, dry_run=args.dry_run)
    except (FileNotFoundError, SQLAlchemyError) as exc:
        raise SystemExit(f"{service}-purge: {exc}") from exc
    print(json.dumps({"service": service, "dry_run": args.dry_run, "rules": counts}, indent=2))
