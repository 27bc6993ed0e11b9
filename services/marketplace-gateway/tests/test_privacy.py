"""Personal data in the gateway (issue 16), on SQLite and PostgreSQL: order events leave sealed,
an erasure leaves nothing of the buyer (and nothing else touched), marketplaces' redaction
webhooks start the flow, the access export holds the buyer's data only, retention purges."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from kafka import KafkaConsumer
from sqlalchemy import MetaData, func, insert, select
from sqlalchemy.engine import make_url

from gateway.models import InboundDelivery, OrderSnapshot, OutboundAttempt, OutboundDelivery
from gateway.outbound import handlers
from gateway.privacy import Subjects, erasure_handlers
from gateway.retention import rules
from gateway.worker import CONSUMED_TOPICS
from odr_shared.auth import TokenService
from odr_shared.db import utcnow
from odr_shared.events import (
    Actor,
    CaseEventV1,
    CaseStatus,
    Contact,
    ErasureRequestedV1,
    build_event,
    parse_event,
)
from odr_shared.kafka import EventConsumer, ensure_topics, make_producer
from odr_shared.outbox import OutboxRelay
from odr_shared.privacy import KeyStore, Opener, Sealer, subject_for_phone, subject_keys_router
from odr_shared.problems import install_problem_handlers
from odr_shared.retention import Purger
from odr_shared.testing import sample_order, serve_app, standard_webhook_headers


class Person:
    def __init__(self, tag: str, first_digit: str) -> None:
        digits = f"{int(uuid.uuid4().hex[:6], 16) % 10_000_000:07d}"
        self.phone = f"09{first_digit}{digits}"
        self.e164 = f"+849{first_digit}{digits}"
        self.name = f"Trần Thị {tag} {digits}"
        self.email = f"{tag.lower()}.{digits}@example.vn"
        self.wish = f"hoàn tiền cho {tag.lower()} {digits}"  # free text in a case

    @property
    def buyer(self) -> dict[str, str]:
        return {"name": self.name, "phone": self.phone, "email": self.email}

    @property
    def secrets(self) -> list[str]:
        return [self.phone, self.e164, self.phone[1:], self.name, self.email, self.wish]

    def found_in(self, text_: str) -> list[str]:
        """Which of this person's data `text_` holds, raw or JSON-escaped."""
        escaped = json.dumps(text_)  # a JSON-escaped copy inside the text is found too
        return [s for s in self.secrets if s in text_ or json.dumps(s)[1:-1] in escaped]


def standard_body(order: dict[str, Any]) -> bytes:
    doc = {"type": "order.updated", "timestamp": "2026-11-20T03:00:00Z", "data": order}
    return json.dumps(doc, ensure_ascii=False).encode()


def order_in(gw, platform: dict[str, Any], code: str, person: Person) -> dict[str, Any]:
    body = standard_body(sample_order(code, buyer=person.buyer))
    r = gw.client.post(
        f"/v1/webhooks/{platform['platform_id']}",
        content=body,
        headers=standard_webhook_headers(platform["webhook_secret"], body),
    )
    assert r.status_code == 202, r.text
    return dict(r.json())


def outbox_of(gw, key: str) -> list[dict[str, Any]]:
    return [row for row in gw.outbox_raw() if row["key"] == key]


# -- sealed order events ---------------------------------------------------------------------------


def test_an_ingested_orders_event_holds_no_buyer_in_clear_and_opens_with_its_key(
    gw, settings
) -> None:
    an = Person("An", "1")
    p = gw.register()
    code = f"S{uuid.uuid4().hex[:8]}"
    receipt = order_in(gw, p, code, an)
    (row,) = outbox_of(gw, f"{p['platform_id']}:{code}")
    stored = row["payload"].decode()
    assert an.found_in(stored) == []
    event = parse_event(row["payload"])
    assert event.version == 2
    assert event.data.subject_id == subject_for_phone(an.phone, settings)  # type: ignore[attr-defined]
    opened = gw.opener().open(event)
    assert opened is not None
    assert opened.id == receipt["event_id"]
    assert opened.data.buyer.model_dump() == an.buyer  # type: ignore[attr-defined]
    assert opened.data.order_code == code  # type: ignore[attr-defined]
    # The order snapshot and the delivery know the buyer's subject (erasure finds them by it).
    with gw.client.app.state.sessions() as s:
        snap = s.get(OrderSnapshot, f"{p['platform_id']}:{code}")
        delivery = s.get(InboundDelivery, receipt["delivery_id"])
        assert snap is not None
        assert delivery is not None
        assert snap.subject_id == delivery.subject_id == event.data.subject_id  # type: ignore[attr-defined]


@pytest.mark.kafka
def test_the_kafka_message_of_an_order_holds_no_buyer_in_clear(gw, client, broker) -> None:
    an = Person("Binh", "2")
    p = gw.register()
    code = f"K{uuid.uuid4().hex[:8]}"
    receipt = order_in(gw, p, code, an)
    ensure_topics(broker.bootstrap, ["orders.events"])
    producer = make_producer(broker.bootstrap, "test-privacy-relay")
    try:
        with OutboxRelay(client.app.state.engine, producer, name="gateway-privacy") as relay:
            assert relay.publish_batch() == 1
    finally:
        producer.close()
    consumer = KafkaConsumer(
        "orders.events",
        bootstrap_servers=broker.bootstrap,
        group_id=f"t-{uuid.uuid4().hex[:6]}",
        auto_offset_reset="earliest",
        session_timeout_ms=6000,
        heartbeat_interval_ms=1000,
    )
    raw: bytes | None = None
    try:
        for _ in range(60):
            for records in consumer.poll(timeout_ms=500).values():
                for rec in records:
                    if rec.key == f"{p['platform_id']}:{code}".encode():
                        raw = rec.value
            if raw is not None:
                break
    finally:
        consumer.close()
    assert raw is not None
    assert an.found_in(raw.decode()) == []
    opened = gw.opener().open(parse_event(raw))
    assert opened is not None
    assert opened.id == receipt["event_id"]
    assert opened.data.buyer.phone == an.phone  # type: ignore[attr-defined]


# -- erasure ---------------------------------------------------------------------------------------


def case_event(platform_id: str, order_id: str, person: Person, case_id: str):
    return build_event(
        source="odr/complaints",
        event_type="case.opened",
        subject=case_id,
        data=CaseEventV1(
            case_id=case_id,
            reference=f"KN-2026-{uuid.uuid4().int % 1_000_000:06d}",
            order_id=order_id,
            platform_id=platform_id,
            order_code=order_id.split(":", 1)[1],
            status=CaseStatus.AWAITING_MERCHANT,
            category="not_delivered",
            actor=Actor(role="consumer"),
            consumer=Contact(name=person.name, phone=person.phone, email=person.email),
            desired_outcome=person.wish,
            claimed_amount=300000,
        ),
    )


class World:
    """Two buyers on two platforms: Hong buys on both, Minh on the first; both open cases."""

    def __init__(self, gw, settings) -> None:
        self.gw = gw
        self.settings = settings
        state = gw.client.app.state
        self.subjects = Subjects(settings, state.keys)
        self.consumer = EventConsumer(
            settings=settings,
            group_id="gateway",
            handlers={**handlers(), **erasure_handlers(state.cipher, self.subjects)},
            topics=CONSUMED_TOPICS,
            session_factory=state.sessions,
        )
        self.hong, self.minh = Person("Hong", "4"), Person("Minh", "6")
        self.a = gw.register(outbound_url="http://127.0.0.1:9/hooks")
        self.b = gw.register()
        tag = uuid.uuid4().hex[:6]
        self.hong_a, self.hong_b = (
            f"{self.a['platform_id']}:HA{tag}",
            f"{self.b['platform_id']}:HB{tag}",
        )
        self.minh_a = f"{self.a['platform_id']}:MA{tag}"
        order_in(gw, self.a, f"HA{tag}", self.hong)
        order_in(gw, self.b, f"HB{tag}", self.hong)
        order_in(gw, self.a, f"MA{tag}", self.minh)
        # A backfill batch with an order of each: one body, two buyers.
        batch = json.dumps(
            {
                "events": [
                    json.loads(standard_body(sample_order(f"HX{tag}", buyer=self.hong.buyer))),
                    json.loads(standard_body(sample_order(f"MX{tag}", buyer=self.minh.buyer))),
                ]
            },
            ensure_ascii=False,
        ).encode()
        r = gw.client.post(
            f"/v1/webhooks/{self.a['platform_id']}/batch",
            content=batch,
            headers=standard_webhook_headers(self.a["webhook_secret"], batch),
        )
        assert r.status_code == 202, r.text
        self.batch_delivery = r.json()["delivery_id"]
        self.hong_case, self.minh_case = f"case-h-{tag}", f"case-m-{tag}"
        for oid, person, case_id in (
            (self.hong_a, self.hong, self.hong_case),
            (self.minh_a, self.minh, self.minh_case),
        ):
            event = case_event(self.a["platform_id"], oid, person, case_id)
            self.consumer.process_record("cases.events", b"k", event.to_json_bytes())
        self.hong_subject = subject_for_phone(self.hong.phone, settings)

    def erase(self, **fields: Any) -> str:
        request = ErasureRequestedV1(
            request_id=f"er-{uuid.uuid4().hex[:8]}",
            subject_id=self.hong_subject,
            requested_at=utcnow(),
            **fields,
        )
        event = build_event(
            source="odr/complaints",
            event_type="privacy.erasure_requested",
            subject=self.hong_subject,
            data=request,
        )
        self.consumer.process_record(
            "privacy.events", self.hong_subject.encode(), event.to_json_bytes()
        )
        return request.request_id

    def readable(self) -> list[tuple[str, str, str]]:
        """Every cell of every table as text, decrypted where the gateway can decrypt it and
        sealed events opened where a key still opens them: (table, column, text)."""
        state = self.gw.client.app.state
        cipher, opener = state.cipher, self.gw.opener()
        meta = MetaData()
        meta.reflect(bind=state.engine)
        out: list[tuple[str, str, str]] = []
        with state.engine.connect() as conn:
            for table in meta.sorted_tables:
                for row in conn.execute(select(table)).mappings():
                    for column, value in row.items():
                        out.append((table.name, column, _readable(value, cipher, opener)))
        return out

    def found(self, person: Person) -> set[str]:
        return {f"{t}.{c}" for t, c, v in self.readable() if person.found_in(v)}


def _readable(value: Any, cipher: Any, opener: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, memoryview):
        value = bytes(value)
    if isinstance(value, bytes):
        for attempt in (cipher.decrypt_bytes, lambda v: v):
            try:
                value = attempt(value)
                break
            except ValueError:
                continue
        value = value.decode("utf-8", "replace")
    if not isinstance(value, str):
        return json.dumps(value, ensure_ascii=False, default=str)
    try:
        return cipher.decrypt(value)  # type: ignore[no-any-return]
    except ValueError:
        pass
    if '"sealed"' in value:
        opened = opener.open(parse_event(value))
        return value + ("" if opened is None else opened.model_dump_json())
    return value


@pytest.fixture
def world(gw, settings) -> World:
    return World(gw, settings)


def test_before_erasure_the_scan_finds_each_buyer_where_expected(world: World) -> None:
    # The scan below would find them: encrypted bodies, snapshots, outbound case text, events.
    where = world.found(world.hong)
    assert {
        "inbound_deliveries.body_enc",
        "order_snapshots.buyer_enc",
        "outbound_deliveries.payload",
        "outbox_messages.payload",
    } <= where


def test_erasure_leaves_nothing_of_the_buyer_and_destroys_her_key(world: World, settings) -> None:
    gw, hong = world.gw, world.hong
    request_id = world.erase(order_ids=[world.hong_a, world.hong_b], case_ids=[world.hong_case])
    assert world.found(hong) == set()
    with gw.client.app.state.sessions() as s:
        assert not gw.client.app.state.keys.holds(s, world.hong_subject)
        # Rows stay, without the person: the operator's log and the order's facts.
        snap = s.get(OrderSnapshot, world.hong_a)
        assert snap is not None
        assert snap.buyer_enc is None
        assert snap.subject_id is None
        assert snap.total_amount == 300000
        assert snap.status == "delivered"
        batch = s.get(InboundDelivery, world.batch_delivery)
        assert batch is not None
        assert batch.body_enc == b""
        assert batch.status == "accepted"
        outbound = s.execute(
            select(OutboundDelivery).where(OutboundDelivery.case_id == world.hong_case)
        ).scalar_one()
        payload = json.loads(outbound.payload)
        assert payload["data"]["case_id"] == world.hong_case
        assert "desired_outcome" not in payload["data"]
    # Her order events in the outbox stay sealed and no longer open: the key is gone.
    for oid in (world.hong_a, world.hong_b):
        for row in outbox_of(gw, oid):
            assert gw.opener().open(parse_event(row["payload"])) is None
    # Minh is untouched: his delivery, snapshot, case webhook and event still hold him.
    where = world.found(world.minh)
    assert {"order_snapshots.buyer_enc", "outbound_deliveries.payload"} <= where
    assert "inbound_deliveries.body_enc" in where
    assert "outbox_messages.payload" in where
    (minh_event,) = outbox_of(gw, world.minh_a)
    opened = gw.opener().open(parse_event(minh_event["payload"]))
    assert opened is not None
    assert opened.data.buyer.phone == world.minh.phone
    # The report to complaints, through the outbox.
    (report,) = [
        json.loads(r["payload"]) for r in gw.outbox_raw() if r["type"] == "privacy.erasure_reported"
    ]
    assert report["data"]["request_id"] == request_id
    assert report["data"]["service"] == "gateway"
    assert report["data"]["status"] == "completed"
    assert report["data"]["subject_id"] == world.hong_subject
    counts = report["data"]["counts"]
    assert counts["order_snapshots"] == 3  # two single orders and the batch's
    assert counts["inbound_deliveries"] == 3  # two webhooks and the batch
    assert counts["outbound_deliveries"] == 1
    assert counts["subject_keys"] >= 1
    # On SQLite, the database files themselves (deleted content is overwritten) hold none of her.
    url = make_url(settings.database_url)
    if url.get_backend_name() == "sqlite":
        gw.client.app.state.engine.dispose()  # checkpoints the WAL into the file
        path = Path(str(url.database))
        raw = b"".join(p.read_bytes() for p in path.parent.glob(path.name + "*"))
        assert hong.found_in(raw.decode("utf-8", "replace")) == []
    # Replaying an erased delivery has nothing to replay.
    r = gw.client.post(
        f"/v1/platforms/{world.a['platform_id']}/inbound-deliveries/{world.batch_delivery}/replay",
        headers=gw.admin,
    )
    assert r.status_code == 409


def test_an_erasure_scoped_to_a_platform_leaves_the_others_copies_and_the_key(
    world: World,
) -> None:
    gw = world.gw
    world.erase(platform_id=world.a["platform_id"], order_ids=[world.hong_a])
    with gw.client.app.state.sessions() as s:
        on_a = s.get(OrderSnapshot, world.hong_a)
        on_b = s.get(OrderSnapshot, world.hong_b)
        assert on_a is not None
        assert on_a.buyer_enc is None
        assert on_b is not None
        assert on_b.buyer_enc is not None
        assert on_b.subject_id == world.hong_subject
        # Her orders with platform B are sealed under the same key: it stays.
        assert gw.client.app.state.keys.holds(s, world.hong_subject)
        bodies = {
            d.platform_id: d.body_enc
            for d in s.execute(
                select(InboundDelivery).where(
                    InboundDelivery.order_id.in_([world.hong_a, world.hong_b])
                )
            ).scalars()
        }
    assert bodies[world.a["platform_id"]] == b""
    assert world.hong.phone.encode() in gw.client.app.state.cipher.decrypt_bytes(
        bodies[world.b["platform_id"]]
    )
    (event,) = outbox_of(gw, world.hong_b)
    opened = gw.opener().open(parse_event(event["payload"]))
    assert opened is not None
    assert opened.data.buyer.name == world.hong.name
    # A whole erasure afterwards takes the rest.
    world.erase(order_ids=[world.hong_a, world.hong_b])
    assert world.found(world.hong) == set()


def test_an_order_with_a_masked_phone_is_sealed_under_its_own_key_and_erased_when_listed(
    world: World,
) -> None:
    gw = world.gw
    masked = {"name": "Khách Ẩn Danh", "phone": "09****5678", "email": "an.danh@example.vn"}
    code = f"MK{uuid.uuid4().hex[:6]}"
    body = standard_body(sample_order(code, buyer=masked))
    r = gw.client.post(
        f"/v1/webhooks/{world.a['platform_id']}",
        content=body,
        headers=standard_webhook_headers(world.a["webhook_secret"], body),
    )
    assert r.status_code == 202, r.text
    oid = f"{world.a['platform_id']}:{code}"
    (row,) = outbox_of(gw, oid)
    assert masked["email"].encode() not in row["payload"]
    event = parse_event(row["payload"])
    assert event.data.subject_id.startswith("so_")  # type: ignore[attr-defined]
    assert gw.opener().open(event) is not None
    world.erase(order_ids=[world.hong_a, oid])
    assert gw.opener().open(event) is None
    with gw.client.app.state.sessions() as s:
        snap = s.get(OrderSnapshot, oid)
        assert snap is not None
        assert snap.buyer_enc is None


def test_the_same_erasure_twice_reports_once(world: World) -> None:
    event = build_event(
        source="odr/complaints",
        event_type="privacy.erasure_requested",
        subject=world.hong_subject,
        data=ErasureRequestedV1(
            request_id="er-twice", subject_id=world.hong_subject, requested_at=utcnow()
        ),
    )
    for _ in range(2):
        world.consumer.process_record("privacy.events", b"k", event.to_json_bytes())
    reports = [r for r in world.gw.outbox_raw() if r["type"] == "privacy.erasure_reported"]
    assert len(reports) == 1


def test_a_sealed_case_event_reaches_the_platform_without_the_consumers_contact(
    world: World, settings
) -> None:
    """The worker opens a case event sealed by complaints with the key complaints serves: the
    platform, a party to the case, reads what the buyer asks for, never the buyer's contact nor
    subject id; the delivery knows the subject (an erasure finds it)."""
    gw, lan = world.gw, Person("Lan", "9")
    subject = subject_for_phone(lan.phone, settings)
    case_id = f"case-s-{uuid.uuid4().hex[:6]}"
    event = case_event(world.a["platform_id"], world.minh_a, lan, case_id)
    state = gw.client.app.state
    complaints_keys = KeyStore.from_settings(settings)
    with state.sessions() as s, s.begin():
        sealed = Sealer(complaints_keys, owner="complaints").seal(s, event, subject)
    owner = FastAPI()
    owner.state.tokens = TokenService(settings)
    install_problem_handlers(owner)
    owner.include_router(subject_keys_router(complaints_keys, state.sessions))
    with serve_app(owner) as url:
        world.consumer.opener = Opener.from_settings(
            settings.model_copy(update={"service_urls": f"complaints={url}"}),
            service="gateway",
            store=state.keys,
            session_factory=state.sessions,
        )
        world.consumer.process_record("cases.events", case_id.encode(), sealed.to_json_bytes())
    with state.sessions() as s:
        delivery = s.execute(
            select(OutboundDelivery).where(OutboundDelivery.case_id == case_id)
        ).scalar_one()
        assert delivery.subject_id == subject
        body = bytes(delivery.payload).decode()
    data = json.loads(body)["data"]
    assert data["status"] == "awaiting_merchant"
    assert data["desired_outcome"] == lan.wish  # opened: the platform answers the claim
    assert [s for s in lan.found_in(body) if s != lan.wish] == []
    assert subject not in body
    assert "sealed" not in body


# -- access export ---------------------------------------------------------------------------------


def test_the_export_holds_the_buyers_data_and_nothing_of_another(world: World, settings) -> None:
    gw = world.gw
    token = TokenService(settings).issue(
        role="service", subject="complaints", ttl=timedelta(minutes=5)
    )
    body = {
        "subject_id": world.hong_subject,
        "order_ids": [world.hong_a, world.hong_b, world.minh_a],  # his is not hers: left out
        "case_ids": [world.hong_case],
    }
    r = gw.client.post(
        "/internal/v1/privacy/export", json=body, headers={"Authorization": f"Bearer {token}"}
    )
    assert r.status_code == 200, r.text
    doc = r.json()
    assert doc["service"] == "gateway"
    assert doc["subject_id"] == world.hong_subject
    records = doc["records"]
    orders = {o["order_id"]: o for o in records["orders"]}
    assert set(orders) >= {world.hong_a, world.hong_b}
    assert all(o["buyer"]["phone"] == world.hong.phone for o in orders.values())
    assert {d["case_id"] for d in records["outbound_deliveries"]} == {world.hong_case}
    bodies = [d["body"] for d in records["inbound_deliveries"] if d["body"]]
    assert any(b["data"]["buyer"]["email"] == world.hong.email for b in bodies)
    dumped = r.text
    assert world.minh.found_in(dumped) == []
    # The batch with his order is listed without its body.
    batch = next(d for d in records["inbound_deliveries"] if d["id"] == world.batch_delivery)
    assert batch["body"] is None
    # Only the platform's services may ask.
    assert (
        gw.client.post("/internal/v1/privacy/export", json=body, headers=gw.admin).status_code
        == 403
    )
    assert gw.client.post("/internal/v1/privacy/export", json=body).status_code == 401


def test_the_subject_key_endpoint_serves_services_only(world: World, settings) -> None:
    gw = world.gw
    (row,) = outbox_of(gw, world.hong_a)
    kid = parse_event(row["payload"]).data.sealed.kid  # type: ignore[attr-defined]
    token = TokenService(settings).issue(
        role="service", subject="complaints", ttl=timedelta(minutes=5)
    )
    r = gw.client.post(
        "/internal/v1/subject-keys",
        json={"kids": [kid]},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert r.status_code == 200
    assert set(r.json()["keys"]) == {kid}
    r = gw.client.post("/internal/v1/subject-keys", json={"kids": [kid]}, headers=gw.admin)
    assert r.status_code == 403


# -- marketplace redaction -------------------------------------------------------------------------

SHOP_ORDER_ID = 820982911946154508


def shop_post(gw, platform, topic: str, doc: dict[str, Any], webhook_id: str | None = None):
    body = json.dumps(doc, ensure_ascii=False).encode()
    digest = hmac.new(platform["signing_secret"].encode(), body, hashlib.sha256).digest()
    headers = {
        "X-Shopify-Hmac-Sha256": base64.b64encode(digest).decode(),
        "X-Shopify-Topic": topic,
        "X-Shopify-Shop-Domain": "cua-hang.myshopify.com",
        "X-Shopify-Webhook-Id": webhook_id or str(uuid.uuid4()),
        "Content-Type": "application/json",
    }
    return gw.client.post(f"/v1/webhooks/{platform['platform_id']}", content=body, headers=headers)


def shop_order(person: Person) -> dict[str, Any]:
    return {
        "id": SHOP_ORDER_ID,
        "name": "#1001",
        "order_number": 1001,
        "updated_at": "2026-11-20T11:00:00+07:00",
        "financial_status": "paid",
        "currency": "VND",
        "total_price": "300000.00",
        "email": person.email,
        "customer": {
            "id": 7001,
            "first_name": "Lan",
            "last_name": "Trần Thị",
            "phone": person.phone,
        },
        "line_items": [{"sku": "AO-01", "title": "Áo thun", "quantity": 2, "price": "150000"}],
    }


def redaction_events(gw) -> list[dict[str, Any]]:
    return [
        json.loads(r["payload"]) | {"key": r["key"]}
        for r in gw.outbox_raw()
        if r["type"] == "privacy.redaction_requested"
    ]


def test_shopify_customers_redact_requests_the_buyers_erasure(gw, settings) -> None:
    lan = Person("Lan", "8")
    p = gw.register("shopify")
    assert shop_post(gw, p, "orders/paid", shop_order(lan)).status_code == 200
    doc = {
        "shop_id": 954889,
        "shop_domain": "cua-hang.myshopify.com",
        "customer": {"id": 7001, "email": lan.email, "phone": lan.phone},
        "orders_to_redact": [SHOP_ORDER_ID],
    }
    r = shop_post(gw, p, "customers/redact", doc, webhook_id="redact-1")
    assert r.status_code == 200, r.text
    assert shop_post(gw, p, "customers/redact", doc, webhook_id="redact-1").status_code == 200
    (event,) = redaction_events(gw)  # the same webhook twice: one request
    subject = subject_for_phone(lan.phone, settings)
    assert event["key"] == subject
    assert event["data"] == {
        "platform_id": p["platform_id"],
        "kind": "erasure",
        "subject_id": subject,
        "order_ids": [f"{p['platform_id']}:1001"],
        "source_delivery_id": event["data"]["source_delivery_id"],
    }
    kept = gw.inbound(p["platform_id"])
    delivery = next(d for d in kept if str(d["id"]) == event["data"]["source_delivery_id"])
    assert delivery["status"] == "accepted"
    assert delivery["error"] is None
    assert delivery["headers"]["x-shopify-topic"] == "customers/redact"


def test_shopify_data_request_without_a_phone_finds_the_subject_by_the_order(gw, settings) -> None:
    lan = Person("Lan", "8")
    p = gw.register("shopify")
    assert shop_post(gw, p, "orders/paid", shop_order(lan)).status_code == 200
    doc = {
        "shop_id": 954889,
        "shop_domain": "cua-hang.myshopify.com",
        "customer": {"id": 7001, "email": lan.email},
        "orders_requested": [SHOP_ORDER_ID],
        "data_request": {"id": 9999},
    }
    assert shop_post(gw, p, "customers/data_request", doc).status_code == 200
    (event,) = redaction_events(gw)
    assert event["data"]["kind"] == "access"
    assert event["data"]["subject_id"] == subject_for_phone(lan.phone, settings)
    assert event["data"]["order_ids"] == [f"{p['platform_id']}:1001"]


def test_standard_customer_redact_by_order_codes(gw, settings) -> None:
    an = Person("An", "3")
    p = gw.register()
    code = f"R{uuid.uuid4().hex[:8]}"
    order_in(gw, p, code, an)
    body = json.dumps(
        {
            "type": "customer.redact",
            "timestamp": "2026-11-21T03:00:00Z",
            "data": {"customer": {"id": "c-1"}, "order_codes": [code]},
        }
    ).encode()
    r = gw.client.post(
        f"/v1/webhooks/{p['platform_id']}",
        content=body,
        headers=standard_webhook_headers(p["webhook_secret"], body),
    )
    assert r.status_code == 202, r.text
    assert r.json()["status"] == "accepted"
    (event,) = redaction_events(gw)
    assert event["data"]["kind"] == "erasure"
    assert event["data"]["subject_id"] == subject_for_phone(an.phone, settings)
    assert event["data"]["order_ids"] == [f"{p['platform_id']}:{code}"]
    assert event["data"]["source_delivery_id"] == str(r.json()["delivery_id"])
    # Neither a phone nor an order: nothing to act on, refused and kept for inspection.
    empty = json.dumps(
        {"type": "customer.redact", "timestamp": "2026-11-21T03:00:00Z", "data": {}}
    ).encode()
    r = gw.client.post(
        f"/v1/webhooks/{p['platform_id']}",
        content=empty,
        headers=standard_webhook_headers(p["webhook_secret"], empty),
    )
    assert r.status_code == 422


# -- retention -------------------------------------------------------------------------------------


def test_purge_deletes_only_expired_rows_and_a_dry_run_nothing(client, settings) -> None:
    engine = client.app.state.engine
    now = utcnow()

    def ago(days: float):
        return now - timedelta(days=days)

    def delivery(tag: str, status: str, days: float) -> dict[str, Any]:
        return {
            "platform_id": "plt_ret",
            "delivery_key": None,
            "source": "webhook",
            "status": status,
            "http_status": 401 if status == "rejected" else 202,
            "error": tag,
            "headers": {},
            "body_enc": client.app.state.cipher.encrypt_bytes(b"{}"),
            "body_size": 2,
            "received_at": ago(days),
        }

    def outbound(id_: str, status: str, days: float) -> dict[str, Any]:
        return {
            "id": id_,
            "platform_id": "plt_ret",
            "event_id": id_,
            "event_type": "case.opened",
            "payload": b"{}",
            "status": status,
            "attempts": 1,
            "schedule_step": 0,
            "next_attempt_at": ago(days),
            "created_at": ago(days),
        }

    def snapshot(oid: str, days: float) -> dict[str, Any]:
        return {
            "order_id": oid,
            "platform_id": "plt_ret",
            "order_code": oid,
            "status": "delivered",
            "status_at": ago(days),
            "updated_at": ago(days),
        }

    with engine.begin() as conn:
        conn.execute(
            insert(InboundDelivery.__table__),
            [
                delivery("old", "accepted", 40),  # body emptied (30 days), row kept
                delivery("fresh", "accepted", 10),
                delivery("rejected-recent", "rejected", 40),
                delivery("rejected-old", "rejected", 100),  # gone (90 days)
                delivery("ancient", "accepted", 400),  # gone (365 days)
            ],
        )
        conn.execute(
            insert(OutboundDelivery.__table__),
            [
                outbound("out-old", "delivered", 100),  # gone with its attempt
                outbound("out-waiting", "pending", 100),  # still being sent: kept
                outbound("out-new", "delivered", 10),
                outbound("out-replayed", "delivered", 100),  # a recent attempt keeps it
            ],
        )
        conn.execute(
            insert(OutboundAttempt.__table__),
            [
                {
                    "delivery_id": "out-old",
                    "attempt": 1,
                    "attempted_at": ago(100),
                    "duration_ms": 5,
                },
                {"delivery_id": "out-new", "attempt": 1, "attempted_at": ago(10), "duration_ms": 5},
                {
                    "delivery_id": "out-replayed",
                    "attempt": 2,
                    "attempted_at": ago(5),
                    "duration_ms": 5,
                },
            ],
        )
        conn.execute(
            insert(OrderSnapshot.__table__),
            [snapshot("plt_ret:OLD", 400), snapshot("plt_ret:NEW", 10)],
        )

    def state() -> dict[str, Any]:
        with engine.connect() as conn:
            deliveries = {
                r.error: bool(r.body_enc)
                for r in conn.execute(
                    select(InboundDelivery.error, InboundDelivery.body_enc).where(
                        InboundDelivery.platform_id == "plt_ret"
                    )
                )
            }
            return {
                "deliveries": deliveries,
                "outbound": set(conn.execute(select(OutboundDelivery.id)).scalars()),
                "attempts": set(conn.execute(select(OutboundAttempt.delivery_id)).scalars()),
                "snapshots": set(conn.execute(select(OrderSnapshot.order_id)).scalars()),
                "total": conn.execute(
                    select(func.count()).select_from(InboundDelivery.__table__)
                ).scalar_one(),
            }

    before = state()
    purger = Purger(engine, rules(settings), batch_size=2, pause_s=0)
    dry = purger.purge(dry_run=True)
    expected = {
        "inbound_bodies": 2,  # "old" and "ancient": bodies past 30 days
        "inbound_rejected": 1,
        "inbound_log": 1,
        "outbound_attempts": 1,
        "outbound_deliveries": 0,  # its attempt is still there until the attempts go
        "order_snapshots": 1,
    }
    assert {k: dry[k] for k in expected} == expected
    assert state() == before
    done = purger.purge()
    assert done["inbound_rejected"] == 1
    assert done["outbound_attempts"] == 1
    assert done["outbound_deliveries"] == 1
    assert done["order_snapshots"] == 1
    after = state()
    assert after["deliveries"] == {"old": False, "fresh": True, "rejected-recent": True}
    assert after["outbound"] == {"out-waiting", "out-new", "out-replayed"}
    assert after["attempts"] == {"out-new", "out-replayed"}
    assert after["snapshots"] == {"plt_ret:NEW"}
    # Nothing left to do: a second run purges nothing of the gateway's own rules.
    again = purger.purge()
    assert all(again[k] == 0 for k in expected)


@pytest.mark.kafka
def test_the_worker_runs_the_gateway_rules_and_consumes_privacy_events(settings, broker) -> None:
    from gateway.worker import build_parts

    parts = build_parts(settings.model_copy(update={"kafka_bootstrap_servers": broker.bootstrap}))
    try:
        assert isinstance(parts.purger, Purger)
        names = [r.name for r in parts.purger.rules]
        assert names[:6] == [
            "inbound_bodies",
            "inbound_rejected",
            "inbound_log",
            "outbound_attempts",
            "outbound_deliveries",
            "order_snapshots",
        ]
        assert {"outbox_sent", "inbox"} <= set(names)
        assert "privacy.events" in parts.consumer.topics
        assert "privacy.erasure_requested" in parts.consumer.handlers
        # It opens case and mediation events for the platform (contacts stripped on the way out).
        assert parts.consumer.opener is not None
    finally:
        parts.producer.close()
        parts.dispatcher.close()
        parts.relay.engine.dispose()
