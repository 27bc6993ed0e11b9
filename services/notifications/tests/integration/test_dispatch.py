"""Dispatch on a real database: quiet hours, rate limit, opt-out, retries and dead letters,
with real SMS (HTTP) and email (SMTP) servers and a real broker for the dead-letter topic."""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from kafka import KafkaConsumer
from notifications_testkit import (
    CONSUMER_VI,
    Clock,
    Harness,
    Mailbox,
    SmsProvider,
    case_event,
    make_settings,
    order_event,
    otp_command,
)

from notifications.deliveries import set_order_status_preference
from odr_shared.events import CASES_TOPIC, NOTIFICATIONS_TOPIC, ORDERS_TOPIC
from odr_shared.testing import TansuBroker

pytestmark = pytest.mark.kafka


def vn(hour: int, minute: int = 0, day: int = 23) -> datetime:
    return datetime(2026, 11, day, hour, minute, tzinfo=UTC) - timedelta(hours=7)


def test_quiet_hours_hold_case_messages_until_morning_but_never_a_code(
    harness: Harness, clock: Clock, sms_provider: SmsProvider, mailbox: Mailbox
) -> None:
    clock.now = vn(22, 30)
    harness.deliver(case_event("case.opened"), CASES_TOPIC)
    harness.deliver(otp_command("0912345678"), NOTIFICATIONS_TOPIC)
    harness.dispatcher.run_once()

    assert [m["text"][:27] for m in sms_provider.accepted] == ["ODR: Ma xac thuc cua ban la"]
    assert mailbox.messages == []
    held = [d for d in harness.deliveries() if d.template == "case_opened"]
    assert {d.status for d in held} == {"pending"}
    assert {d.next_attempt_at for d in held} == {vn(7, day=24)}

    clock.now = vn(6, 59, day=24)
    harness.dispatcher.run_once()
    assert len(sms_provider.accepted) == 1

    clock.now = vn(7, 0, day=24)
    harness.drain()
    assert len(sms_provider.texts_to("+84912345678")) == 2
    assert len(mailbox.to("an.nguyen@example.vn")) == 1


def test_rate_limit_per_recipient_spreads_non_urgent_messages_but_not_codes(
    db_url: str, broker: TansuBroker, sms_provider: SmsProvider, clock: Clock
) -> None:
    settings = make_settings(
        db_url,
        kafka_bootstrap_servers=broker.bootstrap,
        sms_provider_url=sms_provider.url,
        rate_limit_per_recipient=2,
        rate_limit_window_s=3600,
    )
    harness = Harness(settings, clock)
    try:
        phone = "0933000111"
        for event_type in ("case.opened", "case.offer_made", "case.deadline_missed"):
            consumer = CONSUMER_VI.model_copy(update={"phone": phone, "email": None})
            harness.deliver(case_event(event_type, consumer=consumer), CASES_TOPIC)
        harness.deliver(otp_command(phone), NOTIFICATIONS_TOPIC)
        harness.dispatcher.run_once()

        texts = sms_provider.texts_to("+84933000111")
        assert len(texts) == 3  # two case messages and the code
        assert sum("Ma xac thuc" in t for t in texts) == 1
        waiting = [d for d in harness.deliveries() if d.status == "pending"]
        assert [d.template for d in waiting] == ["deadline_missed"]
        assert waiting[0].next_attempt_at == clock.now + timedelta(hours=1)

        # Another recipient is not held by this one's limit.
        other = CONSUMER_VI.model_copy(update={"phone": "0944000222", "email": None})
        harness.deliver(case_event("case.opened", consumer=other), CASES_TOPIC)
        harness.dispatcher.run_once()
        assert len(sms_provider.texts_to("+84944000222")) == 1

        clock.advance(minutes=59)
        harness.dispatcher.run_once()
        assert len(sms_provider.texts_to("+84933000111")) == 3
        clock.advance(minutes=1)
        harness.dispatcher.run_once()
        assert len(sms_provider.texts_to("+84933000111")) == 4
    finally:
        harness.close()


def test_opt_out_stops_order_status_messages_but_not_case_deadlines(
    harness: Harness, sms_provider: SmsProvider
) -> None:
    phone = "0955000333"
    with harness.sessions() as session, session.begin():
        set_order_status_preference(session, harness.cipher, "+84 955 000 333", opt_out=True)
    harness.deliver(order_event(phone, status_notifications=True), ORDERS_TOPIC)
    consumer = CONSUMER_VI.model_copy(update={"phone": phone, "email": None})
    harness.deliver(case_event("case.deadline_missed", consumer=consumer), CASES_TOPIC)
    harness.deliver(order_event("0955000444", status_notifications=True), ORDERS_TOPIC)
    harness.drain()

    statuses = {(d.template, d.status) for d in harness.deliveries()}
    assert statuses == {
        ("order_status", "suppressed"),
        ("deadline_missed", "sent"),
        ("order_status", "sent"),
    }
    texts = sms_provider.texts_to("+84955000333")
    assert len(texts) == 1
    assert "dung han" in texts[0] or "đúng hạn" in texts[0]
    assert len(sms_provider.texts_to("+84955000444")) == 1


def _dead_letters(bootstrap: str, topic: str, key: str, expect: int) -> list[dict[str, object]]:
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=f"dlq-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest",
        session_timeout_ms=6000,
        heartbeat_interval_ms=1000,
    )
    found: list[dict[str, object]] = []
    deadline = time.monotonic() + 30
    try:
        while time.monotonic() < deadline and len(found) < expect:
            for records in consumer.poll(timeout_ms=500).values():
                for rec in records:
                    if rec.key == key.encode():
                        found.append({"value": json.loads(rec.value), **dict(rec.headers)})
    finally:
        consumer.close()
    return found


def test_permanent_provider_refusal_fails_at_once_and_is_dead_lettered(
    harness: Harness, sms_provider: SmsProvider, broker: TansuBroker
) -> None:
    sms_provider.schedule = lambda n: "400"
    command = otp_command("0966000555")
    harness.deliver(command, NOTIFICATIONS_TOPIC)
    harness.drain()

    [delivery] = harness.deliveries()
    assert delivery.status == "failed"
    assert delivery.attempts == 1
    assert delivery.dead_lettered_at is not None
    assert sms_provider.requests == 1
    [letter] = _dead_letters(broker.bootstrap, "notifications.commands.dlq", command.id, 1)
    assert letter["value"]["delivery_id"] == delivery.id  # type: ignore[index]
    assert "recipient" not in letter["value"]  # type: ignore[operator]
    assert "555" not in json.dumps(letter["value"])  # nothing of the phone travels
    assert b"provider answered 400" in letter["dlq-error"]  # type: ignore[operator]
    assert letter["dlq-source-topic"] == b"notifications.commands"


def test_transient_failures_retry_with_backoff_then_dead_letter_after_max_attempts(
    harness: Harness, sms_provider: SmsProvider, mailbox: Mailbox, broker: TansuBroker
) -> None:
    sms_provider.schedule = lambda n: "503"
    mailbox.fail_every = 1  # every DATA gets 451
    event = case_event("case.escalated")
    harness.deliver(event, CASES_TOPIC)
    start = harness.clock.now
    harness.drain()

    deliveries = harness.deliveries()
    assert {(d.channel, d.status, d.attempts) for d in deliveries} == {
        ("sms", "failed", 3),
        ("email", "failed", 3),
    }
    assert sms_provider.requests == 3
    assert mailbox.data_commands == 3
    assert mailbox.messages == []
    # Backoff 0.05 s then 0.1 s between the three attempts.
    assert harness.clock.now - start >= timedelta(seconds=0.15)
    letters = _dead_letters(broker.bootstrap, "cases.events.dlq", event.id, 2)
    assert sorted(letter["value"]["channel"] for letter in letters) == ["email", "sms"]  # type: ignore[index]
    assert all(b"503" in letter["dlq-error"] or b"451" in letter["dlq-error"] for letter in letters)  # type: ignore[operator]


def test_stored_deliveries_hold_no_contact_or_code_in_clear(harness: Harness, db_url: str) -> None:
    from sqlalchemy import text

    harness.deliver(otp_command("0977123456", code="918273"), NOTIFICATIONS_TOPIC)
    harness.deliver(case_event("case.opened"), CASES_TOPIC)
    harness.drain()
    with harness.engine.connect() as conn:
        dump = " ".join(
            str(row)
            for table in ("deliveries", "case_contacts")
            for row in conn.execute(text(f"SELECT * FROM {table}"))  # noqa: S608 - fixed names
        )
    for secret in ("977123456", "912345678", "an.nguyen@example.vn", "918273", "Nguyễn Văn An"):
        assert secret not in dump
    [otp] = [d for d in harness.deliveries() if d.template == "otp"]
    assert otp.body_enc is not None
    assert otp.recipient_enc is not None
    assert "******" in harness.cipher.decrypt(otp.body_enc)
    assert harness.cipher.decrypt(otp.recipient_enc) == "+84977123456"


def test_a_command_without_a_usable_address_is_recorded_failed_and_dead_lettered(
    harness: Harness, sms_provider: SmsProvider, broker: TansuBroker
) -> None:
    command = otp_command("12345")  # not a phone number
    harness.deliver(command, NOTIFICATIONS_TOPIC)
    harness.drain()
    [delivery] = harness.deliveries()
    assert delivery.status == "failed"
    assert delivery.attempts == 0
    assert "invalid sms address" in (delivery.last_error or "")
    assert sms_provider.requests == 0
    [letter] = _dead_letters(broker.bootstrap, "notifications.commands.dlq", command.id, 1)
    assert letter["value"]["template"] == "otp"  # type: ignore[index]
