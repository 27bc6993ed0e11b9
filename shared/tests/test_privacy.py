"""Subject keys, sealed events and crypto-shredding (odr_shared.privacy)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi import FastAPI
from sqlalchemy import Column, Integer, MetaData, String, Table, insert, select
from sqlalchemy.orm import Session, sessionmaker

from odr_shared.auth import ServiceTokens, TokenService
from odr_shared.db import make_engine, make_session_factory
from odr_shared.events import (
    Actor,
    CaseEventV1,
    CloudEvent,
    Contact,
    OrderStatusChangedV1,
    build_event,
    parse_event,
)
from odr_shared.inbox import inbox_table
from odr_shared.kafka import EventConsumer
from odr_shared.phone import InvalidPhone
from odr_shared.privacy import (
    KeyClient,
    KeyStore,
    KeyUnavailable,
    MasterKey,
    Opener,
    Sealer,
    SealError,
    subject_for_phone,
    subject_keys_router,
    subject_keys_table,
    unsealed,
)
from odr_shared.problems import install_problem_handlers
from odr_shared.settings import ServiceSettings
from odr_shared.testing import free_port, sample_order, serve_app

PHONE = "0912345678"
NAME = "Nguyễn Văn An"
EMAIL = "an.nguyen@example.vn"


def settings(**kw: Any) -> ServiceSettings:
    return ServiceSettings(**kw)  # type: ignore[call-arg]


@dataclass
class Db:
    factory: sessionmaker[Session]
    store: KeyStore
    effects: Table


@pytest.fixture
def db(tmp_path: Any) -> Iterator[Db]:
    md = MetaData()
    subject_keys_table(md)
    inbox_table(md)
    effects = Table(
        "effects",
        md,
        Column("id", Integer, primary_key=True),
        Column("event_id", String(100)),
        Column("who", String(200)),
    )
    engine = make_engine(f"sqlite:///{tmp_path / 'svc.db'}")
    md.create_all(engine)
    yield Db(make_session_factory(engine), KeyStore.from_settings(settings()), effects)
    engine.dispose()


def order_event(phone: str = PHONE, name: str = NAME) -> CloudEvent[OrderStatusChangedV1]:
    order = sample_order("DH-1", buyer={"name": name, "phone": phone, "email": EMAIL})
    data = OrderStatusChangedV1.model_validate(
        {**order, "order_id": "p1:DH-1", "platform_id": "p1", "status_at": "2026-11-20T03:00:00Z"}
    )
    return build_event(
        source="gateway", event_type="order.status_changed", subject="p1:DH-1", data=data
    )


def case_event() -> CloudEvent[CaseEventV1]:
    data = CaseEventV1(
        case_id="c1",
        reference="R1",
        order_id="p1:DH-1",
        platform_id="p1",
        order_code="DH-1",
        status="awaiting_merchant",  # type: ignore[arg-type]
        category="not_received",
        actor=Actor(role="consumer"),
        consumer=Contact(name=NAME, phone=PHONE, email=EMAIL),
        details={"description": "Tôi chưa nhận được hàng"},
    )
    return build_event(source="complaints", event_type="case.opened", subject="c1", data=data)


def test_subject_ids_are_canonical_and_keyed() -> None:
    s = settings()
    assert subject_for_phone("0912345678", s) == subject_for_phone("+84 912 345 678", s)
    assert subject_for_phone("0912345678", s) != subject_for_phone("0912345679", s)
    other = settings(PRIVACY_SUBJECT_KEY="another-subject-key-0123456789abcdef")
    assert subject_for_phone(PHONE, s) != subject_for_phone(PHONE, other)
    assert PHONE not in subject_for_phone(PHONE, s)
    with pytest.raises(InvalidPhone):
        subject_for_phone("not a phone", s)


def test_master_key_rotation_unwraps_old_keys_and_refuses_strangers() -> None:
    old = MasterKey(["old-material"])
    wrapped = old.wrap("k1", b"k" * 32)
    rotated = MasterKey(["new-material", "old-material"])
    assert rotated.unwrap("k1", wrapped) == b"k" * 32
    assert rotated.wrap("k2", b"x" * 32)[:4] != wrapped[:4]
    with pytest.raises(ValueError, match="not configured"):
        MasterKey(["new-material"]).unwrap("k1", wrapped)
    with pytest.raises(ValueError, match="does not unwrap"):
        old.unwrap("k-other", wrapped)  # bound to its kid


def test_sealed_event_carries_nothing_personal_and_opens_back(db: Db) -> None:
    sealer = Sealer(db.store, "gateway")
    subject = subject_for_phone(PHONE, settings())
    with db.factory() as session, session.begin():
        sealed = sealer.seal(session, order_event(), subject)
    wire = sealed.to_json_bytes()
    for secret in (PHONE, "912345678", NAME, EMAIL, json.dumps(NAME)[1:-1]):
        assert secret.encode() not in wire, secret
    parsed = parse_event(wire)
    assert parsed.version == 2
    assert parsed.data.subject_id == subject
    with db.factory() as session:
        key = db.store.keys_by_id(session, [parsed.data.sealed.kid])  # type: ignore[attr-defined]
    opened = unsealed(parsed, next(iter(key.values())).key)  # type: ignore[arg-type]
    assert opened is not None
    assert opened.version == 1
    assert opened.data.buyer.phone == PHONE
    assert opened.data.buyer.name == NAME
    assert opened.data.order_code == "DH-1"  # type: ignore[attr-defined]
    # The same subject keeps one key; another subject gets its own.
    with db.factory() as session, session.begin():
        again = sealer.seal(session, order_event(), subject)
        stranger = sealer.seal(
            session, order_event("0987654321"), subject_for_phone("0987654321", settings())
        )
    assert again.data.sealed.kid == sealed.data.sealed.kid  # type: ignore[attr-defined]
    assert stranger.data.sealed.kid != sealed.data.sealed.kid  # type: ignore[attr-defined]


def test_a_sealed_block_moved_to_another_event_does_not_open(db: Db) -> None:
    sealer = Sealer(db.store, "gateway")
    subject = subject_for_phone(PHONE, settings())
    with db.factory() as session, session.begin():
        a = sealer.seal(session, order_event(), subject)
        b = sealer.seal(session, order_event(), subject)
        key = db.store.active_keys(session, [subject])[subject].key
    forged = b.model_copy(update={"data": b.data.model_copy(update={"sealed": a.data.sealed})})  # type: ignore[attr-defined]
    with pytest.raises(SealError):
        unsealed(forged, key)  # type: ignore[arg-type]


def test_destroyed_key_leaves_only_the_non_personal_fields(db: Db) -> None:
    sealer = Sealer(db.store, "complaints")
    subject = subject_for_phone(PHONE, settings())
    with db.factory() as session, session.begin():
        case = sealer.seal(session, case_event(), subject)
        order = sealer.seal(session, order_event(), subject)
    with db.factory() as session, session.begin():
        assert db.store.destroy(session, subject) == 1
        assert not db.store.holds(session, subject)
    opener = Opener(service="complaints", client=None, store=db.store, session_factory=db.factory)
    opened_case = opener.open(parse_event(case.to_json_bytes()))
    assert opened_case is not None
    assert opened_case.data.status == "awaiting_merchant"  # type: ignore[attr-defined]
    assert opened_case.data.consumer.phone is None
    assert opened_case.data.details == {}
    # An order cannot stand without its buyer: nothing to apply.
    assert opener.open(parse_event(order.to_json_bytes())) is None


def test_keys_are_served_to_services_only_and_fetched_by_batch(db: Db) -> None:
    s = settings()
    sealer = Sealer(db.store, "gateway")
    subject = subject_for_phone(PHONE, s)
    with db.factory() as session, session.begin():
        sealed = sealer.seal(session, order_event(), subject)
    app = FastAPI()
    app.state.tokens = TokenService(s)
    install_problem_handlers(app)
    app.include_router(subject_keys_router(db.store, db.factory))
    with serve_app(app) as url:
        import httpx

        kid = sealed.data.sealed.kid  # type: ignore[attr-defined]
        assert (
            httpx.post(f"{url}/internal/v1/subject-keys", json={"kids": [kid]}).status_code == 401
        )
        admin = TokenService(s).issue(
            role="admin", subject="ops", ttl=__import__("datetime").timedelta(minutes=1)
        )
        r = httpx.post(
            f"{url}/internal/v1/subject-keys",
            json={"kids": [kid]},
            headers={"Authorization": f"Bearer {admin}"},
        )
        assert r.status_code == 403
        consumer_settings = settings(SERVICE_URLS=f"gateway={url}")
        opener = Opener(
            service="notifications",
            client=KeyClient(consumer_settings, "notifications"),
            cache_s=60,
        )
        opened = opener.open(parse_event(sealed.to_json_bytes()))
        assert opened is not None
        assert opened.data.buyer.email == EMAIL
        assert ServiceTokens(s, "notifications").token()
        # Erased at the owner: once this consumer forgets its cache, the order no longer opens.
        with db.factory() as session, session.begin():
            db.store.destroy(session, subject)
        opener.forget(subject)
        assert opener.open(parse_event(sealed.to_json_bytes())) is None
    # The owner gone: the consumer cannot open and says so (retried, never guessed).
    down = Opener(
        service="notifications",
        client=KeyClient(
            settings(SERVICE_URLS=f"gateway=http://127.0.0.1:{free_port()}"), "notifications"
        ),
    )
    with pytest.raises(KeyUnavailable):
        down.open(parse_event(sealed.to_json_bytes()))


@dataclass(frozen=True)
class Record:
    topic: str
    key: bytes | None
    value: bytes
    offset: int


def test_consumer_handlers_read_opened_events_or_nothing_personal(db: Db) -> None:
    s = settings()
    subject = subject_for_phone(PHONE, s)
    with db.factory() as session, session.begin():
        sealed_case = Sealer(db.store, "notifications").seal(session, case_event(), subject)

    def record_who(session: Session, event: CloudEvent[Any]) -> None:
        session.execute(
            insert(db.effects).values(event_id=event.id, who=event.data.consumer.phone or "-")
        )

    def consumer(group: str, opener: Opener | None) -> EventConsumer:
        return EventConsumer(
            settings=s,
            group_id=group,
            handlers={"case.opened": record_who},
            topics=["cases.events"],
            session_factory=db.factory,
            opener=opener,
        )

    rec = Record("cases.events", b"c1", sealed_case.to_json_bytes(), 0)
    consumer(
        "with",
        Opener(service="notifications", client=None, store=db.store, session_factory=db.factory),
    ).process_batch([rec])
    consumer("without", None).process_batch(
        [Record("cases.events", b"c1", sealed_case.to_json_bytes(), 0)]
    )
    with db.factory() as session:
        who = session.execute(select(db.effects.c.who).order_by(db.effects.c.id)).scalars().all()
    assert who == [PHONE, "-"]


class RecordingProducer:
    """Stands where the dead-letter producer would: records what would have been sent."""

    def __init__(self) -> None:
        self.sent: list[str] = []

    def send(self, topic: str, **_kw: Any) -> Any:
        self.sent.append(topic)

        class _Done:
            def get(self, timeout: float | None = None) -> None:
                return None

        return _Done()

    def flush(self, timeout: float | None = None) -> None:
        return None


def test_an_unreachable_key_owner_holds_the_event_back_and_never_dead_letters_it(db: Db) -> None:
    import threading

    s = settings(
        CONSUMER_MAX_ATTEMPTS=2, CONSUMER_BACKOFF_INITIAL_S=0.05, CONSUMER_BACKOFF_MAX_S=0.2
    )
    subject = subject_for_phone(PHONE, s)
    with db.factory() as session, session.begin():
        sealed = Sealer(db.store, "complaints").seal(session, case_event(), subject)
    port = free_port()
    consumer_settings = s.model_copy(update={"service_urls": f"complaints=http://127.0.0.1:{port}"})

    def record_who(session: Session, event: CloudEvent[Any]) -> None:
        session.execute(insert(db.effects).values(event_id=event.id, who=event.data.consumer.phone))

    producer = RecordingProducer()
    consumer = EventConsumer(
        settings=consumer_settings,
        group_id="waits",
        handlers={"case.opened": record_who},
        topics=["cases.events"],
        session_factory=db.factory,
        producer=producer,  # type: ignore[arg-type]
        opener=Opener.from_settings(consumer_settings, service="notifications"),
    )
    worker = threading.Thread(
        target=consumer.process_batch,
        args=([Record("cases.events", b"c1", sealed.to_json_bytes(), 0)],),
    )
    worker.start()
    worker.join(timeout=1.5)  # far more than two attempts' backoff
    assert worker.is_alive(), "the event must wait for its key owner"
    assert producer.sent == []
    app = FastAPI()
    app.state.tokens = TokenService(s)
    install_problem_handlers(app)
    app.include_router(subject_keys_router(db.store, db.factory))
    with serve_app(app, port=port):
        worker.join(timeout=10)
    assert not worker.is_alive()
    assert producer.sent == []
    with db.factory() as session:
        who = session.execute(select(db.effects.c.who)).scalars().all()
    assert who == [PHONE]


def test_a_late_copy_of_an_event_from_before_the_erasure_is_not_opened_again(db: Db) -> None:
    """The key's owner may still hold the key when a late copy reaches a service that has
    already erased the subject: that service's tombstone keeps it from reading it again. An event
    written after the erasure (the person came back) opens as usual."""
    s = settings()
    subject = subject_for_phone(PHONE, s)
    owner = KeyStore.from_settings(s)  # the gateway's keys, kept: its erasure is still to come
    with db.factory() as session, session.begin():
        before = Sealer(owner, "gateway").seal(session, order_event(), subject)
    with db.factory() as session, session.begin():
        db.store.destroy(session, subject)  # this service erased the buyer
        assert not db.store.holds(session, subject)
        assert subject in db.store.erased_at(session, [subject])
    with db.factory() as session, session.begin():
        after = Sealer(owner, "gateway").seal(session, order_event(), subject)
    # The store's own keys and the owner's share one database here; the opener asks the
    # store for both, as a service asks its own store for its tombstones.
    opener = Opener(service="gateway", client=None, store=db.store, session_factory=db.factory)
    late = parse_event(before.to_json_bytes())
    opener.prefetch([late])
    assert opener.open(late) is None  # an order without its buyer: nothing to apply
    fresh = opener.open(parse_event(after.to_json_bytes()))
    assert fresh is not None
    assert fresh.data.buyer.phone == PHONE  # type: ignore[attr-defined]


def test_a_failing_statement_never_carries_its_personal_values_into_errors(tmp_path: Any) -> None:
    """Handler errors end up in logs and dead-letter headers, which no erasure reaches."""
    from sqlalchemy import text

    engine = make_engine(f"sqlite:///{tmp_path / 'e.db'}")
    try:
        with pytest.raises(Exception) as failed, engine.begin() as conn:
            conn.execute(text("INSERT INTO missing VALUES (:phone)"), {"phone": PHONE})
        assert PHONE not in str(failed.value)
        assert "hidden" in str(failed.value)
    finally:
        engine.dispose()
