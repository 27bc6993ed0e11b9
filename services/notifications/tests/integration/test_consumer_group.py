"""Two notifications workers in one consumer group share cases.events and notifications.commands:
the second joins and the first crashes mid-stream, and every message is recorded exactly once."""

from __future__ import annotations

from collections import Counter

import pytest
from notifications_testkit import CONSUMER_VI, case_event, make_settings, otp_command
from pydantic import BaseModel
from sqlalchemy import select

from notifications import SERVICE_ROOT, bootstrap
from notifications.consumer import GROUP_ID, handlers
from notifications.models import CaseContact, Delivery
from notifications.worker import TOPICS
from odr_shared.db import make_engine, make_session_factory
from odr_shared.events import CASES_TOPIC, NOTIFICATIONS_TOPIC, CloudEvent
from odr_shared.group_drill import run_group_drill
from odr_shared.migrate import upgrade

pytestmark = [pytest.mark.kafka, pytest.mark.postgres]


def openings_and_codes(i: int) -> tuple[str, CloudEvent[BaseModel]]:
    """Cases opened (an SMS and an email each) and one-time codes (an SMS each), alternately."""
    if i % 2 == 0:
        return CASES_TOPIC, case_event("case.opened", consumer=CONSUMER_VI)  # type: ignore[return-value]
    return NOTIFICATIONS_TOPIC, otp_command(f"091{i:07d}")  # type: ignore[return-value]


def test_two_workers_record_each_message_once_through_a_join_and_a_crash(
    postgres_url: str,
) -> None:
    upgrade(SERVICE_ROOT, postgres_url)
    settings = make_settings(postgres_url)
    engine = make_engine(postgres_url, pool_size=4)
    sessions = make_session_factory(engine)
    try:
        report = run_group_drill(
            settings=settings,
            group_id=GROUP_ID,
            topics=TOPICS,  # the worker's subscription
            handlers=lambda: handlers(bootstrap.notifier(settings), bootstrap.key_store(settings)),
            session_factory=sessions,
            next_event=openings_and_codes,
            leave="crash",
        )
        with sessions() as session:
            deliveries = session.execute(select(Delivery.event_id, Delivery.channel)).all()
            contacts = session.execute(select(CaseContact.case_id)).scalars().all()
        expected: Counter[tuple[str, str]] = Counter()
        opened: list[str] = []
        for event in report.events:
            if event.type == "case.opened":
                expected.update({(event.id, "sms"): 1, (event.id, "email"): 1})
                opened.append(event.subject or "")
            else:
                expected[(event.id, "sms")] += 1
        # Each event's messages, recorded once; each opened case's contact, kept once.
        assert Counter((d.event_id, d.channel) for d in deliveries) == expected
        assert sorted(contacts) == sorted(opened)
    finally:
        engine.dispose()
