"""Personal data: sealed (v2) events opened with the owner's keys over HTTP, erasure on
privacy.events (a scan of the whole database finds the person nowhere), the access export.

The key owner (complaints) is played by a real uvicorn app serving the shared subject-keys
endpoint from its own database, on a free port; the broker, SMTP server and SMS endpoint are
the test kit's real ones."""

from __future__ import annotations

import contextlib
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from fastapi.testclient import TestClient
from notifications_testkit import (
    CONSUMER_EN,
    CONSUMER_VI,
    Clock,
    Harness,
    Mailbox,
    SmsProvider,
    case_event,
    make_settings,
    mediation_event,
    order_event,
    otp_command,
    token,
)
from sqlalchemy import MetaData, func, inspect, select, text
from sqlalchemy.orm import Session, sessionmaker

from notifications.app import create_app
from notifications.deliveries import unsubscribe
from notifications.models import CaseContact, Delivery, RecipientPreference, UnsubscribeLink
from notifications.settings import NotificationsSettings
from odr_shared.auth import TokenService
from odr_shared.crypto import DataCipher
from odr_shared.db import make_engine, make_session_factory, utcnow
from odr_shared.events import (
    CASES_TOPIC,
    MEDIATION_TOPIC,
    NOTIFICATIONS_TOPIC,
    ORDERS_TOPIC,
    PRIVACY_TOPIC,
    CloudEvent,
    ErasureRequestedV1,
    build_event,
    parse_event,
)
from odr_shared.kafka import ensure_topics
from odr_shared.privacy import KeyStore, Sealer, subject_for_phone, subject_keys_table
from odr_shared.settings import ServiceSettings
from odr_shared.testing import TansuBroker, free_port, wait_http
from odr_shared.web import create_service_app

pytestmark = pytest.mark.kafka

PHONE_A = "+84912345678"  # CONSUMER_VI
EMAIL_A = "an.nguyen@example.vn"
PHONE_B = "+84987654321"  # CONSUMER_EN
NEUTRAL_EMAIL = "hoa.giai@example.vn"
# How the person could still be found: phone in any spelling's core digits, email, name.
TRACES_A = ("912345678", EMAIL_A, "an.nguyen", "Nguyễn Văn An", "Nguyen Van An")


# -- the key owner: complaints' subject-keys endpoint, on a real server --------------------


@dataclass
class KeyOwner:
    url: str
    sessions: sessionmaker[Session]
    sealer: Sealer
    store: KeyStore

    def seal(self, event: CloudEvent[Any], subject_id: str) -> CloudEvent[Any]:
        with self.sessions() as session, session.begin():
            return self.sealer.seal(session, event, subject_id)

    def destroy(self, subject_id: str) -> None:
        with self.sessions() as session, session.begin():
            self.store.destroy(session, subject_id)


@pytest.fixture
def complaints_keys(tmp_path: Path) -> Iterator[KeyOwner]:
    settings = ServiceSettings(environment="test")
    engine = make_engine(f"sqlite:///{tmp_path}/complaints-keys.db")
    metadata = MetaData()
    subject_keys_table(metadata)
    metadata.create_all(engine)
    sessions = make_session_factory(engine)
    store = KeyStore.from_settings(settings)
    from odr_shared.privacy import subject_keys_router

    app = create_service_app(
        service="complaints", title="complaints keys", settings=settings, engine=engine
    )
    app.include_router(subject_keys_router(store, sessions))
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{url}/healthz")
        yield KeyOwner(url, sessions, Sealer(store, owner="complaints"), store)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        engine.dispose()


@pytest.fixture
def privacy_harness(
    db_url: str,
    broker: TansuBroker,
    sms_provider: SmsProvider,
    mailbox: Mailbox,
    clock: Clock,
    complaints_keys: KeyOwner,
) -> Iterator[Harness]:
    ensure_topics(
        broker.bootstrap,
        [NOTIFICATIONS_TOPIC, ORDERS_TOPIC, CASES_TOPIC, MEDIATION_TOPIC, PRIVACY_TOPIC],
    )
    settings = make_settings(
        db_url,
        kafka_bootstrap_servers=broker.bootstrap,
        sms_provider_url=sms_provider.url,
        smtp_port=mailbox.port,
        max_attempts=3,
        # One test server plays each owner: the opener asks the owner a sealed block names.
        service_urls=",".join(
            f"{owner}={complaints_keys.url}" for owner in ("gateway", "complaints", "mediation")
        )
        + ",notifications=http://127.0.0.1:9",
        privacy_key_cache_s=0,  # each event asks the owner: a destroyed key shows at once
    )
    h = Harness(settings, clock)
    yield h
    h.close()


def subject(phone: str, settings: NotificationsSettings) -> str:
    return subject_for_phone(phone, settings)


def erasure_event(
    subject_id: str, *, case_ids: list[str], order_ids: list[str], platform_id: str | None = None
) -> CloudEvent[ErasureRequestedV1]:
    return build_event(
        source="complaints",
        event_type="privacy.erasure_requested",
        subject=subject_id,
        data=ErasureRequestedV1(
            request_id=f"pr-{uuid.uuid4().hex[:8]}",
            subject_id=subject_id,
            platform_id=platform_id,
            case_ids=case_ids,
            order_ids=order_ids,
            requested_at=utcnow(),
        ),
    )


def scan(h: Harness) -> str:
    """Every cell of every table, and the plaintext of every cell the service's key opens."""
    cipher: DataCipher = h.cipher
    seen: list[str] = []
    with h.engine.connect() as conn:
        for table in inspect(conn).get_table_names():
            for row in conn.execute(text(f'SELECT * FROM "{table}"')):  # noqa: S608 - names from the schema
                for cell in row:
                    value = cell.decode(errors="replace") if isinstance(cell, bytes) else str(cell)
                    seen.append(value)
                    with contextlib.suppress(ValueError):  # not a ciphertext of this key
                        seen.append(cipher.decrypt(value))
    return "\n".join(seen)


def service_headers(service: str = "complaints") -> dict[str, str]:
    issued = TokenService(NotificationsSettings()).issue(
        role="service", subject=service, ttl=timedelta(minutes=5)
    )
    return {"Authorization": f"Bearer {issued}"}


# -- opening sealed events ------------------------------------------------------------------


def test_a_sealed_case_event_reaches_sms_and_email_with_the_owners_key(
    privacy_harness: Harness,
    complaints_keys: KeyOwner,
    sms_provider: SmsProvider,
    mailbox: Mailbox,
) -> None:
    h = privacy_harness
    subject_a = subject(PHONE_A, h.settings)
    opened = case_event("case.opened", consumer=CONSUMER_VI)
    sealed = complaints_keys.seal(opened, subject_a)
    wire = sealed.to_json_bytes()
    assert b"912345678" not in wire  # the precondition: nothing of the buyer travels in clear
    assert "Nguyễn".encode() not in wire

    h.deliver(sealed, CASES_TOPIC)
    # A clear (v1) event still works, its subject named by its phone.
    h.deliver(case_event("case.opened", consumer=CONSUMER_EN), CASES_TOPIC)
    h.drain()

    [sms] = sms_provider.texts_to(PHONE_A)
    assert opened.data.reference in sms
    [mail] = mailbox.to(EMAIL_A)
    assert opened.data.reference in str(mail["Subject"])
    assert "Nguyễn Văn An" in mail.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert len(sms_provider.texts_to(PHONE_B)) == 1
    by_case = {(d.case_id, d.channel): d for d in h.deliveries()}
    assert by_case[(opened.data.case_id, "sms")].subject_id == subject_a
    assert by_case[(opened.data.case_id, "email")].subject_id == subject_a
    assert {d.subject_id for d in h.deliveries() if d.case_id != opened.data.case_id} == {
        subject(PHONE_B, h.settings)
    }
    with h.sessions() as session:
        contact = session.get(CaseContact, opened.data.case_id)
        assert contact is not None
        assert contact.subject_id == subject_a
        assert contact.consumer_enc is not None
        assert "0912345678" in h.cipher.decrypt(contact.consumer_enc)


def test_sealed_events_of_every_topic_open_with_their_owners_keys(
    privacy_harness: Harness, complaints_keys: KeyOwner, sms_provider: SmsProvider
) -> None:
    h = privacy_harness
    subject_a = subject(PHONE_A, h.settings)
    subject_b = subject(PHONE_B, h.settings)
    owners = {o: Sealer(complaints_keys.store, owner=o) for o in ("gateway", "mediation")}
    order = order_event("0912345678", status_notifications=True)
    opened = case_event("case.opened", consumer=CONSUMER_EN)
    assigned = mediation_event("case.assigned", opened.data.case_id)
    code = otp_command("0912345678", code="864209")
    with complaints_keys.sessions() as session, session.begin():
        sealed_order = owners["gateway"].seal(session, order, subject_a)
        # Mediation seals a case's events under its buyer's key (here B's).
        sealed_assigned = owners["mediation"].seal(session, assigned, subject_b)
    sealed_code = complaints_keys.seal(code, subject_a)
    assert b"864209" not in sealed_code.to_json_bytes()
    assert NEUTRAL_EMAIL.encode() not in sealed_assigned.to_json_bytes()
    h.deliver(sealed_order, ORDERS_TOPIC)
    h.deliver(opened, CASES_TOPIC)  # clear (v1), as before
    h.deliver(sealed_assigned, MEDIATION_TOPIC)
    h.deliver(sealed_code, NOTIFICATIONS_TOPIC)
    h.drain()

    texts = sms_provider.texts_to(PHONE_A)
    assert len(texts) == 2
    assert any("864209" in t for t in texts)
    assert any(order.data.order_code in t for t in texts)
    sent = {(d.template, d.channel): d for d in h.deliveries()}
    assert set(sent) == {
        ("order_status", "sms"),
        ("otp", "sms"),
        ("case_opened", "sms"),
        ("mediator_assigned", "sms"),
        ("neutral_assigned", "email"),
    }
    assert {d.status for d in sent.values()} == {"sent"}
    assert sent[("order_status", "sms")].subject_id == subject_a
    assert sent[("otp", "sms")].subject_id == subject_a
    assert sent[("mediator_assigned", "sms")].subject_id == subject_b
    assert len(sms_provider.texts_to(PHONE_B)) == 2  # case opened, mediator assigned
    # The neutral's message is the neutral's, not the buyer's whose key sealed the event.
    assert sent[("neutral_assigned", "email")].subject_id is None
    assert h.cipher.decrypt(sent[("neutral_assigned", "email")].recipient_enc or "") == (
        NEUTRAL_EMAIL
    )


def test_a_sealed_event_whose_key_is_destroyed_tells_nobody(
    privacy_harness: Harness, complaints_keys: KeyOwner, sms_provider: SmsProvider
) -> None:
    h = privacy_harness
    subject_a = subject(PHONE_A, h.settings)
    opened = case_event("case.opened", consumer=CONSUMER_VI)
    later = case_event("case.escalated", case_id=opened.data.case_id, consumer=CONSUMER_VI)
    h.deliver(complaints_keys.seal(opened, subject_a), CASES_TOPIC)
    sealed_later = complaints_keys.seal(later, subject_a)
    complaints_keys.destroy(subject_a)  # the buyer was erased at complaints
    h.deliver(sealed_later, CASES_TOPIC)
    h.drain()
    templates = sorted(d.template for d in h.deliveries())
    assert templates == ["case_opened", "case_opened"]  # nothing of case.escalated
    assert h.consumer.stats.dead_lettered == 0


# -- erasure --------------------------------------------------------------------------------


@dataclass
class Recorded:
    case_a: str
    order_a: str
    case_b: str
    pending_otp_event: str


def record_a_and_b(h: Harness, owner: KeyOwner) -> Recorded:
    """A: a sealed case (SMS + email), its mediator (the neutral by email), a one-time code, an
    order-status SMS and an opt-out through its link; B: a clear case. All sent; then one more
    code for A, still pending."""
    subject_a = subject(PHONE_A, h.settings)
    opened = case_event("case.opened", consumer=CONSUMER_VI, platform_id="plat-a")
    h.deliver(owner.seal(opened, subject_a), CASES_TOPIC)
    assigned = mediation_event("case.assigned", opened.data.case_id)
    h.deliver(owner.seal(assigned, subject_a), MEDIATION_TOPIC)
    h.deliver(otp_command("0912 345 678", code="246810"), NOTIFICATIONS_TOPIC)
    order = order_event("0912345678", status_notifications=True, platform_id="plat-a")
    h.deliver(order, ORDERS_TOPIC)
    b = case_event("case.opened", consumer=CONSUMER_EN, platform_id="plat-b")
    h.deliver(b, CASES_TOPIC)
    h.drain()
    with h.sessions() as session, session.begin():
        link = session.execute(select(UnsubscribeLink)).scalar_one()
        assert unsubscribe(session, link.token)
        h.store.active_keys(session, [subject_a])  # a key of A's in notifications' own store
    pending = otp_command("0912345678", code="135791")
    h.clock.advance(seconds=1)
    h.deliver(pending, NOTIFICATIONS_TOPIC)
    return Recorded(opened.data.case_id, order.data.order_id, b.data.case_id, pending.id)


def test_erasure_leaves_nothing_of_the_person_and_everything_of_others(
    privacy_harness: Harness,
    complaints_keys: KeyOwner,
    sms_provider: SmsProvider,
    mailbox: Mailbox,
) -> None:
    h = privacy_harness
    subject_a = subject(PHONE_A, h.settings)
    rec = record_a_and_b(h, complaints_keys)
    before = scan(h)
    for trace in TRACES_A[:4]:
        assert trace in before  # the scan does see the person while their data is there
    sent_to_a = len(sms_provider.texts_to(PHONE_A))
    counted = {d.id: (d.channel, d.template, d.created_at, d.sent_at) for d in h.deliveries()}

    h.deliver(
        erasure_event(subject_a, case_ids=[rec.case_a], order_ids=[rec.order_a]), PRIVACY_TOPIC
    )
    h.drain()

    after = scan(h)
    for trace in TRACES_A:
        assert trace not in after, trace
    # The other buyer and the neutral are untouched.
    for kept in (PHONE_B, "Jane Doe", NEUTRAL_EMAIL):
        assert kept in after, kept
    with h.sessions() as session:
        assert (
            session.execute(
                text("SELECT count(*) FROM subject_keys WHERE substr(kid, 1, 2) <> 't_'")
            ).scalar_one()
            == 0
        )
        for model in (Delivery, CaseContact, RecipientPreference, UnsubscribeLink):
            named = select(func.count()).select_from(model).where(model.subject_id == subject_a)
            assert session.execute(named).scalar_one() == 0
        assert session.execute(select(func.count()).select_from(UnsubscribeLink)).scalar_one() == 0
        # The opt-out stays honoured, as a bare hash of nobody in particular.
        [pref] = session.execute(select(RecipientPreference)).scalars()
        assert pref.order_status_opt_out
        assert pref.subject_id is None
        contact = session.get(CaseContact, rec.case_a)
        assert contact is not None
        assert contact.consumer_enc is None
        assert contact.reference.startswith("KN-")  # the case is still known
    # The pending code was cancelled, never sent; A's rows keep their facts, without A.
    assert len(sms_provider.texts_to(PHONE_A)) == sent_to_a
    erased = [d for d in h.deliveries() if d.erased_at is not None]
    assert {d.template for d in erased} == {
        "case_opened",
        "mediator_assigned",
        "otp",
        "order_status",
    }
    assert all(
        d.recipient_enc is None and d.content_enc is None and d.body_enc is None for d in erased
    )
    [cancelled] = [d for d in erased if d.event_id == rec.pending_otp_event]
    assert cancelled.status == "cancelled"
    assert {d.status for d in erased if d is not cancelled} == {"sent"}
    for d in erased:
        if d.id in counted:
            assert (d.channel, d.template, d.created_at, d.sent_at) == counted[d.id]
    others = [d for d in h.deliveries() if d.erased_at is None]
    assert {h.cipher.decrypt(d.recipient_enc or "") for d in others} == {PHONE_B, NEUTRAL_EMAIL}

    # The outcome goes back to complaints through the outbox.
    with h.engine.connect() as conn:
        [(topic, key, payload)] = conn.execute(
            text("SELECT topic, key, payload FROM outbox_messages")
        ).all()
    assert (topic, key) == (PRIVACY_TOPIC, subject_a)
    report = parse_event(bytes(payload))
    assert report.type == "privacy.erasure_reported"
    data = report.data.model_dump()
    assert data["service"] == "notifications"
    assert data["status"] == "completed"
    assert data["counts"]["deliveries"] == len(erased)
    assert data["counts"]["deliveries_cancelled"] == 1
    assert data["counts"]["case_contacts"] == 1
    assert data["counts"]["keys"] == 1

    # Later mediation events of the case still reach the neutral, and no longer the buyer.
    h.deliver(mediation_event("case.reassigned", rec.case_a), MEDIATION_TOPIC)
    h.drain()
    new = [d for d in h.deliveries() if d.id not in counted and d.erased_at is None]
    new = [d for d in new if d.case_id == rec.case_a]
    assert [(d.template, d.channel) for d in new] == [("neutral_assigned", "email")]
    assert h.consumer.stats.dead_lettered == 0
    assert len(mailbox.to(NEUTRAL_EMAIL)) == 2


def test_a_marketplace_redaction_erases_only_that_platforms_copies(
    privacy_harness: Harness, complaints_keys: KeyOwner
) -> None:
    h = privacy_harness
    subject_a = subject(PHONE_A, h.settings)
    rec = record_a_and_b(h, complaints_keys)
    h.deliver(
        erasure_event(subject_a, case_ids=[], order_ids=[rec.order_a], platform_id="plat-a"),
        PRIVACY_TOPIC,
    )
    h.drain()
    erased = {(d.template, d.channel) for d in h.deliveries() if d.erased_at is not None}
    # A's case and order were on plat-a; one-time codes belong to no platform; the neutral's
    # message on A's case is the neutral's; B's case is on plat-b.
    assert erased == {
        ("case_opened", "sms"),
        ("case_opened", "email"),
        ("mediator_assigned", "sms"),
        ("mediator_assigned", "email"),
        ("order_status", "sms"),
    }
    with h.sessions() as session:
        # Keys and preferences are the person's, across platforms: they stay.
        assert (
            session.execute(
                text("SELECT count(*) FROM subject_keys WHERE substr(kid, 1, 2) <> 't_'")
            ).scalar_one()
            == 1
        )
        assert session.execute(select(func.count()).select_from(UnsubscribeLink)).scalar_one()


def test_a_preference_set_by_phone_is_the_subjects_and_goes_with_them(
    privacy_harness: Harness,
) -> None:
    h = privacy_harness
    subject_a = subject(PHONE_A, h.settings)
    with TestClient(create_app(h.settings)) as client:
        for contact, wanted in (("0912 345 678", True), (EMAIL_A, False)):
            r = client.post(
                "/v1/preferences",
                json={"contact": contact, "order_status": wanted},
                headers=token("admin"),
            )
            assert r.status_code == 200, r.text
    with h.sessions() as session:
        named = dict(
            session.execute(
                select(RecipientPreference.subject_id, RecipientPreference.order_status_opt_out)
            ).all()
        )
    # An email alone names nobody; the phone names its subject.
    assert named == {subject_a: False, None: True}
    h.deliver(erasure_event(subject_a, case_ids=[], order_ids=[]), PRIVACY_TOPIC)
    with h.sessions() as session:
        left = session.execute(select(RecipientPreference.subject_id)).scalars().all()
    assert left == [None]  # the phone's opt-in is gone; the email's opt-out, nobody's, stays


# -- access ---------------------------------------------------------------------------------


def test_the_export_holds_the_subjects_data_and_nothing_of_anyone_else(
    privacy_harness: Harness, complaints_keys: KeyOwner
) -> None:
    h = privacy_harness
    subject_a = subject(PHONE_A, h.settings)
    rec = record_a_and_b(h, complaints_keys)
    body = {"subject_id": subject_a, "order_ids": [rec.order_a], "case_ids": [rec.case_a]}
    with TestClient(create_app(h.settings)) as client:
        assert client.post("/internal/v1/privacy/export", json=body).status_code == 401
        refused = client.post("/internal/v1/privacy/export", json=body, headers=token("admin"))
        assert refused.status_code == 403
        r = client.post("/internal/v1/privacy/export", json=body, headers=service_headers())
    assert r.status_code == 200, r.text
    doc = r.json()
    assert doc["service"] == "notifications"
    assert doc["subject_id"] == subject_a
    records = doc["records"]
    deliveries = records["deliveries"]
    assert {d["recipient"] for d in deliveries} == {PHONE_A, EMAIL_A}
    assert sorted(d["template"] for d in deliveries) == [
        "case_opened",
        "case_opened",
        "mediator_assigned",
        "mediator_assigned",
        "order_status",
        "otp",
        "otp",
    ]
    mail = next(d for d in deliveries if d["channel"] == "email" and d["template"] == "case_opened")
    assert "Nguyễn Văn An" in mail["body"]  # decrypted
    assert all("246810" not in (d["body"] or "") for d in deliveries)  # codes stay redacted
    [contact] = records["case_contacts"]
    assert contact["case_id"] == rec.case_a
    assert contact["contact"]["phone"] in ("0912345678", PHONE_A)
    assert [p["order_status"] for p in records["preferences"]] == [False]
    assert records["preferences"][0]["contact"] == PHONE_A
    assert len(records["unsubscribe_links"]) == 1
    # Nothing of the other buyer nor of the neutral.
    for other in (PHONE_B, "987654321", "Jane Doe", NEUTRAL_EMAIL, rec.case_b):
        assert other not in r.text


def test_the_api_serves_notifications_own_subject_keys_to_services_only(
    privacy_harness: Harness,
) -> None:
    h = privacy_harness
    subject_a = subject(PHONE_A, h.settings)
    with h.sessions() as session, session.begin():
        key = h.store.active_keys(session, [subject_a])[subject_a]
    with TestClient(create_app(h.settings)) as client:
        body = {"kids": [key.kid, "k_unknown"]}
        assert client.post("/internal/v1/subject-keys", json=body).status_code == 401
        admin = client.post("/internal/v1/subject-keys", json=body, headers=token("admin"))
        assert admin.status_code == 403
        r = client.post(
            "/internal/v1/subject-keys", json=body, headers=service_headers("mediation")
        )
    assert r.status_code == 200, r.text
    assert list(r.json()["keys"]) == [key.kid]
