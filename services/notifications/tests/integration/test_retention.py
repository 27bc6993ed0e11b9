"""Retention: the purge removes (or empties) only what is past its period; a dry run touches
nothing; the worker runs it. On SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from notifications_testkit import (
    CONSUMER_EN,
    CONSUMER_VI,
    case_event,
    make_settings,
    order_event,
)
from sqlalchemy import Engine, inspect, select, text, update
from sqlalchemy.orm import Session

from notifications import bootstrap, retention
from notifications.deliveries import record_event
from notifications.models import CaseContact, Delivery, UnsubscribeLink
from notifications.settings import NotificationsSettings
from notifications.worker import build_parts
from odr_shared.db import make_engine, make_session_factory, utcnow
from odr_shared.events import PRIVACY_TOPIC, ErasureReportedV1, build_event
from odr_shared.inbox import mark_processed
from odr_shared.outbox import add_to_outbox
from odr_shared.retention import Purger


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    e = make_engine(db_url)
    yield e
    e.dispose()


def dump(engine: Engine) -> list[tuple[str, tuple[Any, ...]]]:
    rows: list[tuple[str, tuple[Any, ...]]] = []
    with engine.connect() as conn:
        for table in sorted(inspect(conn).get_table_names()):
            for row in conn.execute(text(f'SELECT * FROM "{table}"')):  # noqa: S608 - schema names
                rows.append((table, tuple(row)))
    return sorted(rows, key=repr)


def ago(days: float) -> Any:
    return utcnow() - timedelta(days=days)


def seed(engine: Engine, settings: NotificationsSettings) -> dict[str, int | str]:
    """Deliveries of each age and state, links, contacts, outbox and inbox rows."""
    notifier = bootstrap.notifier(settings)
    sessions = make_session_factory(engine)
    old_case = case_event("case.opened", consumer=CONSUMER_VI)
    mid_case = case_event("case.opened", consumer=CONSUMER_EN)
    new_case = case_event("case.resolved", consumer=CONSUMER_EN)
    old_order = order_event("0911000111", status_notifications=True)
    new_order = order_event("0922000222", status_notifications=True)
    with sessions() as session, session.begin():
        for event in (old_case, mid_case, new_case, old_order, new_order):
            record_event(session, notifier, event)  # type: ignore[arg-type]
        ids = {(d.event_id, d.channel): d.id for d in session.execute(select(Delivery)).scalars()}

        def age(event_id: str, channel: str, days: float, status: str) -> int:
            delivery_id = ids[(event_id, channel)]
            sent = ago(days) if status == "sent" else None
            session.execute(
                update(Delivery)
                .where(Delivery.id == delivery_id)
                .values(created_at=ago(days), status=status, sent_at=sent)
            )
            return delivery_id

        out: dict[str, int | str] = {
            "old_sent": age(old_case.id, "sms", 400, "sent"),
            "old_pending": age(old_case.id, "email", 400, "pending"),
            "mid_failed": age(mid_case.id, "sms", 100, "failed"),
            "new_sent": age(new_case.id, "sms", 10, "sent"),
            "old_order_sent": age(old_order.id, "sms", 30, "sent"),
            "new_order_sent": age(new_order.id, "sms", 1, "sent"),
        }
        links = {
            link.recipient_hash: link for link in session.execute(select(UnsubscribeLink)).scalars()
        }
        old_link, new_link = (
            links[session.get_one(Delivery, out[f"{name}_order_sent"]).recipient_hash]
            for name in ("old", "new")
        )
        old_link.last_used_at = ago(400)
        out["old_link"], out["new_link"] = old_link.token, new_link.token
        session.execute(
            update(CaseContact)
            .where(CaseContact.case_id == old_case.data.case_id)
            .values(updated_at=ago(800))
        )
        out["old_contact"], out["new_contact"] = old_case.data.case_id, new_case.data.case_id
        for i, (published_days, name) in enumerate(
            [(10, "old_sent"), (None, "unsent"), (1, "new")]
        ):
            report = build_event(
                source="notifications",
                event_type="privacy.erasure_reported",
                subject="sp_x",
                data=ErasureReportedV1(
                    request_id=f"r{i}",
                    service="notifications",
                    subject_id="sp_x",
                    status="completed",
                ),
            )
            add_to_outbox(session, PRIVACY_TOPIC, "sp_x", report)
            session.execute(
                text(
                    "UPDATE outbox_messages SET created_at = :c, published_at = :p"
                    " WHERE event_id = :e"
                ),
                {
                    "c": ago(20),
                    "p": ago(published_days) if published_days else None,
                    "e": report.id,
                },
            )
            out[f"outbox_{name}"] = report.id
        mark_processed(session, "notifications", "ev-old", "case.opened")
        mark_processed(session, "notifications", "ev-new", "case.opened")
        session.execute(
            text("UPDATE inbox_events SET processed_at = :t WHERE event_id = 'ev-old'"),
            {"t": ago(40)},
        )
    return out


def test_purge_removes_only_expired_rows_and_a_dry_run_nothing(db_url: str, engine: Engine) -> None:
    settings = make_settings(db_url)
    ids = seed(engine, settings)
    purger = Purger(engine, retention.rules(settings), batch_size=2)

    before = dump(engine)
    expected = {
        "delivery_bodies": 2,  # the 400-day sent one and the 100-day failed one
        "deliveries": 1,  # the 400-day sent one
        "unsubscribe_links": 1,
        "case_contacts": 1,
        "outbox_sent": 1,
        "inbox": 1,
        "erasure_tombstones": 0,
    }
    assert purger.purge(dry_run=True) == expected
    assert dump(engine) == before  # a dry run changes nothing

    assert purger.purge() == expected
    with Session(engine) as session:
        rows = {d.id: d for d in session.execute(select(Delivery)).scalars()}
        assert ids["old_sent"] not in rows
        # Still due, however old: nothing of it goes.
        pending = rows[int(ids["old_pending"])]
        assert pending.status == "pending"
        assert pending.content_enc is not None
        assert pending.body_enc is not None
        # Past the bodies' period: the text goes, the facts stay.
        failed = rows[int(ids["mid_failed"])]
        assert failed.content_enc is None
        assert failed.body_enc is None
        assert failed.recipient_enc is not None
        assert failed.status == "failed"
        for fresh in ("new_sent", "old_order_sent", "new_order_sent"):
            assert rows[int(ids[fresh])].body_enc is not None
        links = set(session.execute(select(UnsubscribeLink.token)).scalars())
        assert links == {ids["new_link"]}
        contacts = set(session.execute(select(CaseContact.case_id)).scalars())
        assert ids["old_contact"] not in contacts
        assert ids["new_contact"] in contacts
        outbox = set(session.execute(text("SELECT event_id FROM outbox_messages")).scalars())
        assert outbox == {ids["outbox_unsent"], ids["outbox_new"]}
        inbox = set(session.execute(text("SELECT event_id FROM inbox_events")).scalars())
        assert inbox == {"ev-new"}
    # Nothing left to do.
    assert set(purger.purge().values()) == {0}


def test_periods_come_from_settings_and_the_worker_runs_the_purge(db_url: str) -> None:
    settings = make_settings(
        db_url,
        retention_delivery_bodies_days=5,
        retention_deliveries_days=50,
        retention_unsubscribe_links_days=60,
        retention_case_contacts_days=70,
    )
    periods = {rule.name: rule.days for rule in retention.rules(settings)}
    assert periods["delivery_bodies"] == 5
    assert periods["deliveries"] == 50
    assert periods["unsubscribe_links"] == 60
    assert periods["case_contacts"] == 70
    assert {"outbox_sent", "inbox"} <= set(periods)
    assert NotificationsSettings().retention_delivery_bodies_days == 90

    class NoProducer:
        def close(self) -> None: ...

    parts = build_parts(settings, NoProducer())  # type: ignore[arg-type]
    try:
        assert [rule.name for rule in parts.purger.rules] == list(periods)
        assert parts.purger in parts.all()
    finally:
        if parts.consumer.opener is not None and parts.consumer.opener.client is not None:
            parts.consumer.opener.client.close()
        parts.purger.engine.dispose()
