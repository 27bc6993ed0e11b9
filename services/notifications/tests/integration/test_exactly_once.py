"""The worker end to end on a real broker: redelivered events, an SMS endpoint that fails some
of the time, an SMTP server that defers some mail, and exactly the expected messages arrive."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator

import pytest
from notifications_testkit import (
    CONSUMER_EN,
    CONSUMER_VI,
    Mailbox,
    SmsProvider,
    case_event,
    make_settings,
    mediation_event,
    order_event,
    otp_command,
)
from sqlalchemy import func, select

from notifications.models import CaseContact, Delivery
from notifications.worker import TOPICS, build_parts
from odr_shared.db import make_engine, make_session_factory
from odr_shared.events import CASES_TOPIC, MEDIATION_TOPIC, NOTIFICATIONS_TOPIC, ORDERS_TOPIC
from odr_shared.kafka import EventConsumer, ensure_topics, make_producer
from odr_shared.testing import TansuBroker

pytestmark = pytest.mark.kafka


@pytest.fixture
def own_broker(tmp_path) -> Iterator[TansuBroker]:  # type: ignore[no-untyped-def]
    """A broker of this test's own: replaying topics from the start sees only its events."""
    with TansuBroker(log_path=tmp_path / "tansu.log") as b:
        ensure_topics(b.bootstrap, TOPICS)
        yield b


def wait_until(check: Callable[[], bool], timeout_s: float = 90) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError("condition not met in time")


def flaky(n: int) -> str:
    """Every 3rd request 503, every 7th times out after accepting, every 11th before, every
    13th is rate limited."""
    if n % 13 == 0:
        return "429"
    if n % 11 == 0:
        return "timeout_before"
    if n % 7 == 0:
        return "timeout_after"
    if n % 3 == 0:
        return "503"
    return "ok"


def test_redelivered_events_through_a_flaky_provider_send_exactly_the_expected_messages(
    db_url: str, own_broker: TansuBroker, sms_provider: SmsProvider, mailbox: Mailbox
) -> None:
    sms_provider.schedule = flaky
    sms_provider.hang_s = 1.0
    mailbox.fail_every = 3
    settings = make_settings(
        db_url,
        kafka_bootstrap_servers=own_broker.bootstrap,
        sms_provider_url=sms_provider.url,
        smtp_port=mailbox.port,
        sms_timeout_s=0.5,
        quiet_hours_start="00:00",  # the wall clock drives this test: no night hold
        quiet_hours_end="00:00",
        rate_limit_per_recipient=0,
        max_attempts=10,
    )
    producer = make_producer(own_broker.bootstrap, "test-publisher")
    parts = build_parts(settings, producer)
    consumer, dispatcher, urgent = parts.consumer, parts.dispatcher, parts.urgent_dispatcher
    threads = [
        threading.Thread(target=loop.run, daemon=True) for loop in (consumer, dispatcher, urgent)
    ]
    for t in threads:
        t.start()
    engine = make_engine(db_url)
    sessions = make_session_factory(engine)
    published = 0

    def publish(topic: str, event, copies: int = 2) -> None:  # type: ignore[no-untyped-def]
        nonlocal published
        for _ in range(copies):
            producer.send(
                topic, key=(event.subject or "").encode(), value=event.to_json_bytes()
            ).get(timeout=15)
            published += 1

    try:
        phones = ["0911000001", "0911000002", "0911000003"]
        for phone in phones:
            publish(NOTIFICATIONS_TOPIC, otp_command(phone))
        case_a = case_event("case.opened", consumer=CONSUMER_VI)  # sms + email
        case_b = case_event("case.opened", consumer=CONSUMER_EN)  # sms only
        publish(CASES_TOPIC, case_a, copies=3)
        publish(CASES_TOPIC, case_b)
        publish(CASES_TOPIC, case_event("case.message_posted", case_id=case_a.data.case_id))
        publish(ORDERS_TOPIC, order_event("0922000001", status_notifications=True))  # sms
        publish(ORDERS_TOPIC, order_event("0922000002", status_notifications=False))
        # mediation.events carry no consumer contact: it comes from the case projection.
        wait_until(lambda: _count(sessions, CaseContact) == 2)
        assigned = mediation_event("case.assigned", case_a.data.case_id)  # sms + 2 emails
        publish(MEDIATION_TOPIC, assigned)

        expected_sms, expected_email = 7, 3

        def settled() -> bool:
            seen = consumer.stats.applied + consumer.stats.duplicates + consumer.stats.skipped
            with sessions() as session:
                rows = session.execute(select(Delivery.status)).scalars().all()
            return (
                seen == published
                and len(rows) == expected_sms + expected_email
                and all(s in ("sent", "failed") for s in rows)
            )

        wait_until(settled)
        assert len(sms_provider.accepted) == expected_sms
        assert len(mailbox.messages) == expected_email
        with sessions() as session:
            deliveries = list(session.execute(select(Delivery)).scalars())
        assert {d.status for d in deliveries} == {"sent"}
        assert consumer.stats.duplicates == published - 9  # 9 distinct events
        assert consumer.stats.dead_lettered == 0
        # The provider failed on purpose, so some deliveries needed more than one attempt.
        assert sms_provider.requests > expected_sms
        assert mailbox.data_commands > expected_email
        assert max(d.attempts for d in deliveries) > 1

        sms_to = sorted(m["to"] for m in sms_provider.accepted)
        otp_and_order = ["+84911000001", "+84911000002", "+84911000003", "+84922000001"]
        case_a_b = ["+84912345678", "+84912345678", "+84987654321"]
        assert sms_to == sorted([*otp_and_order, *case_a_b])
        assert sorted(m["To"] for m in mailbox.messages) == [
            "an.nguyen@example.vn",
            "an.nguyen@example.vn",
            "hoa.giai@example.vn",
        ]
        neutral_mail = mailbox.to("hoa.giai@example.vn")[0]
        assert case_a.data.reference in neutral_mail["Subject"]
        assert neutral_mail.get_body(("html",)) is not None
        assert neutral_mail.get_body(("plain",)) is not None

        # Replaying every topic from the start (a new consumer group, an empty inbox) is
        # stopped by the one-delivery-per-(event, recipient, channel) rule: nothing new goes.
        replay = EventConsumer(
            settings=settings,
            group_id=f"notifications-replay-{uuid.uuid4().hex[:6]}",
            handlers=consumer.handlers,
            topics=TOPICS,
            session_factory=sessions,
            producer=producer,
        )
        replay_thread = threading.Thread(target=replay.run, daemon=True)
        replay_thread.start()
        wait_until(
            lambda: (
                replay.stats.applied + replay.stats.duplicates + replay.stats.skipped == published
            )
        )
        replay.stop()
        replay_thread.join(timeout=15)
        assert replay.stats.applied == 9
        dispatcher.run_once()
        assert _count(sessions, Delivery) == expected_sms + expected_email
        assert len(sms_provider.accepted) == expected_sms
        assert len(mailbox.messages) == expected_email
    finally:
        consumer.stop()
        dispatcher.stop()
        urgent.stop()
        for t in threads:
            t.join(timeout=15)
        producer.close()
        engine.dispose()


def _count(sessions, model) -> int:  # type: ignore[no-untyped-def]
    with sessions() as session:
        return int(session.execute(select(func.count()).select_from(model)).scalar_one())


def test_a_provider_that_hangs_holds_up_neither_consumption_nor_one_time_codes(
    db_url: str, own_broker: TansuBroker, sms_provider: SmsProvider
) -> None:
    sms_provider.schedule = lambda n: "block" if n == 1 else "ok"
    settings = make_settings(
        db_url,
        kafka_bootstrap_servers=own_broker.bootstrap,
        sms_provider_url=sms_provider.url,
        sms_timeout_s=40,
        quiet_hours_start="00:00",
        quiet_hours_end="00:00",
    )
    producer = make_producer(own_broker.bootstrap, "test-publisher")
    parts = build_parts(settings, producer)
    consumer, dispatcher, urgent = parts.consumer, parts.dispatcher, parts.urgent_dispatcher
    threads = [
        threading.Thread(target=loop.run, daemon=True) for loop in (consumer, dispatcher, urgent)
    ]
    for t in threads:
        t.start()
    engine = make_engine(db_url)
    sessions = make_session_factory(engine)

    def status_of(template: str) -> str:
        with sessions() as session:
            return str(
                session.execute(
                    select(Delivery.status).where(Delivery.template == template)
                ).scalar_one()
            )

    try:
        slow = case_event("case.opened", consumer=CONSUMER_VI.model_copy(update={"email": None}))
        producer.send(CASES_TOPIC, key=b"k", value=slow.to_json_bytes()).get(timeout=15)
        wait_until(lambda: sms_provider.requests == 1)  # the main send loop is stuck on it
        otp = otp_command("0911000009")
        producer.send(NOTIFICATIONS_TOPIC, key=b"k", value=otp.to_json_bytes()).get(timeout=15)
        for i in range(5):
            contact = CONSUMER_VI.model_copy(update={"phone": f"093300000{i}", "email": None})
            event = case_event("case.deadline_missed", consumer=contact)
            producer.send(CASES_TOPIC, key=b"k", value=event.to_json_bytes()).get(timeout=15)
        # The code goes out and the events are recorded while the slow send still hangs.
        wait_until(lambda: len(sms_provider.texts_to("+84911000009")) == 1)
        wait_until(lambda: _count(sessions, Delivery) == 7)
        assert status_of("case_opened") == "sending"
        sms_provider.release.set()

        def all_sent() -> bool:
            with sessions() as session:
                statuses = session.execute(select(Delivery.status)).scalars().all()
            return set(statuses) == {"sent"}

        wait_until(all_sent)
        assert len(sms_provider.accepted) == 7
    finally:
        sms_provider.release.set()
        consumer.stop()
        dispatcher.stop()
        urgent.stop()
        for t in threads:
            t.join(timeout=15)
        producer.close()
        engine.dispose()
