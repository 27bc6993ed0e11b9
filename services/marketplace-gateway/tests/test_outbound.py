"""Outbound webhooks to a real local HTTP server: signing, retries, 410, Retry-After, replay."""

from __future__ import annotations

import json
import uuid
from datetime import datetime

import pytest

from gateway.outbound import OutboundDispatcher, handlers
from gateway.signatures import SignatureError, verify_standard_webhooks
from gateway.worker import CONSUMER_GROUP
from odr_shared.events import Actor, CaseEventV1, CaseStatus, Contact, MediationEventV1, build_event
from odr_shared.kafka import EventConsumer

PHONE = "0912345678"


def case_event(platform_id: str, event_type: str = "case.opened"):
    return build_event(
        source="odr/complaints",
        event_type=event_type,
        subject="case-1",
        data=CaseEventV1(
            case_id=f"case-{uuid.uuid4().hex[:6]}",
            reference="KN-2026-000123",
            order_id=f"{platform_id}:DH1",
            platform_id=platform_id,
            order_code="DH1",
            status=CaseStatus.AWAITING_MERCHANT,
            category="not_delivered",
            actor=Actor(role="consumer"),
            consumer=Contact(name="Nguyễn Văn An", phone=PHONE, email="an@example.vn"),
            claimed_amount=300000,
        ),
    )


@pytest.fixture
def outbound(client, settings):
    """The worker's two outbound parts: the consumer's handlers and the dispatcher."""
    sessions = client.app.state.sessions
    consumer = EventConsumer(
        settings=settings,
        group_id=CONSUMER_GROUP,
        handlers=handlers(),
        topics=["cases.events", "mediation.events"],
        session_factory=sessions,
    )

    class Parts:
        def publish(self, event, topic: str = "cases.events") -> None:
            consumer.process_record(topic, b"k", event.to_json_bytes())

        def dispatcher(self, **overrides):
            d = OutboundDispatcher(
                sessions, client.app.state.cipher, settings.model_copy(update=overrides)
            )
            made.append(d)
            return d

    made: list[OutboundDispatcher] = []
    yield Parts()
    for d in made:
        d.close()


def deliveries(gw, platform_id: str):
    r = gw.client.get(f"/v1/platforms/{platform_id}/deliveries", headers=gw.admin)
    assert r.status_code == 200, r.text
    return r.json()


def test_case_event_reaches_the_platform_signed_and_without_consumer_contact(
    gw, endpoint, outbound, until
) -> None:
    p = gw.register(outbound_url=endpoint.url)
    event = case_event(p["platform_id"])
    outbound.publish(event)
    outbound.publish(event)  # redelivered by Kafka: the inbox absorbs it
    d = outbound.dispatcher()
    until(lambda: endpoint.received, step=d.run_once)
    (got,) = endpoint.received
    # Any Standard Webhooks verifier holding the platform's webhook_secret accepts it.
    assert (
        verify_standard_webhooks([p["webhook_secret"]], got.headers, got.body)
        == got.headers["webhook-id"]
    )
    doc = json.loads(got.body)
    assert doc["type"] == "case.opened"
    assert doc["data"]["reference"] == "KN-2026-000123"
    assert doc["data"]["consumer"] == {"language": "vi"}
    assert PHONE not in got.body.decode()
    assert "an@example.vn" not in got.body.decode()
    (row,) = deliveries(gw, p["platform_id"])
    assert row["status"] == "delivered"
    assert row["event_id"] == event.id
    assert PHONE not in json.dumps(row)
    with pytest.raises(SignatureError):
        verify_standard_webhooks(["whsec_" + "Z" * 44], got.headers, got.body)


def test_failures_retry_on_the_schedule_with_the_same_webhook_id(
    gw, endpoint, outbound, until
) -> None:
    endpoint.script = [(500, {}), (503, {}), (502, {})]
    p = gw.register(outbound_url=endpoint.url)
    outbound.publish(case_event(p["platform_id"]))
    d = outbound.dispatcher(outbound_schedule_scale=0.0005, outbound_jitter=0.1)
    until(lambda: len(endpoint.received) == 4, step=d.run_once)
    ids = {r.headers["webhook-id"] for r in endpoint.received}
    assert len(ids) == 1
    for r in endpoint.received:
        verify_standard_webhooks([p["webhook_secret"]], r.headers, r.body)
    (row,) = until(
        lambda: [x for x in deliveries(gw, p["platform_id"]) if x["status"] == "delivered"]
    )
    assert row["attempts"] == 4
    assert [a["status_code"] for a in row["log"]] == [500, 503, 502, 200]
    # Each failure scheduled the next try from the spec's schedule (5 s, 5 min, 30 min) scaled,
    # plus at most 10% jitter.
    for attempt, base in zip(row["log"][:3], (5, 300, 1800), strict=True):
        planned = datetime.fromisoformat(attempt["next_attempt_at"])
        at = datetime.fromisoformat(attempt["attempted_at"])
        delay = (planned - at).total_seconds()
        assert base * 0.0005 <= delay <= base * 0.0005 * 1.1 + 0.001


def test_retry_after_is_honoured(gw, endpoint, outbound, until) -> None:
    endpoint.script = [(429, {"Retry-After": "1"})]
    p = gw.register(outbound_url=endpoint.url)
    outbound.publish(case_event(p["platform_id"]))
    d = outbound.dispatcher(outbound_schedule_scale=0.0001)
    until(lambda: len(endpoint.received) == 2, step=d.run_once)
    first, second = endpoint.received
    assert second.at - first.at >= 1.0
    (row,) = deliveries(gw, p["platform_id"])
    assert row["log"][0]["retry_after_s"] == 1


def test_schedule_exhausted_marks_the_delivery_failed(gw, endpoint, outbound, until) -> None:
    endpoint.script = [(500, {})] * 20
    p = gw.register(outbound_url=endpoint.url)
    outbound.publish(case_event(p["platform_id"]))
    d = outbound.dispatcher(outbound_schedule_scale=0.00001, outbound_jitter=0)
    until(
        lambda: deliveries(gw, p["platform_id"])[0]["status"] == "failed",
        step=d.run_once,
        timeout_s=30,
    )
    # The whole schedule: ten attempts, then no more.
    assert len(endpoint.received) == 10


def test_410_disables_the_endpoint_until_an_operator_re_enables_it(
    gw, endpoint, outbound, until
) -> None:
    endpoint.script = [(410, {})]
    p = gw.register(outbound_url=endpoint.url)
    pid = p["platform_id"]
    outbound.publish(case_event(pid))
    d = outbound.dispatcher()
    until(lambda: deliveries(gw, pid)[0]["status"] == "disabled", step=d.run_once)
    platform = gw.client.get(f"/v1/platforms/{pid}", headers=gw.admin).json()
    assert platform["outbound_enabled"] is False
    assert "410" in platform["outbound_disabled_reason"]
    # Later events are kept, not sent.
    outbound.publish(case_event(pid, "case.escalated"))
    for _ in range(5):
        d.run_once()
    assert len(endpoint.received) == 1
    replay = gw.client.post(
        f"/v1/platforms/{pid}/deliveries/{deliveries(gw, pid)[0]['id']}/replay", headers=gw.admin
    )
    assert replay.status_code == 409
    r = gw.client.patch(f"/v1/platforms/{pid}", json={"outbound_enabled": True}, headers=gw.admin)
    assert r.status_code == 200
    # Both the delivery that met the 410 and the one held since go out: nothing was lost.
    until(lambda: len(endpoint.received) == 3, step=d.run_once)
    assert [x["status"] for x in deliveries(gw, pid)] == ["delivered", "delivered"]


def test_a_delivery_whose_platform_was_switched_off_is_closed_with_one_connection(
    gw, endpoint, outbound, settings
) -> None:
    """Every sending thread may have to record `disabled`; it gives its read's connection back
    first, so the dispatcher works with a pool of one (on PostgreSQL, where DB_POOL_SIZE
    applies; a second connection held beside the first would wait out the pool's timeout)."""
    from odr_shared.db import make_engine, make_session_factory

    p = gw.register(outbound_url=endpoint.url)
    pid = p["platform_id"]
    outbound.publish(case_event(pid))
    r = gw.client.patch(f"/v1/platforms/{pid}", json={"outbound_enabled": False}, headers=gw.admin)
    assert r.status_code == 200, r.text
    engine = make_engine(settings.database_url, pool_size=1, max_overflow=0, pool_timeout=2)
    d = OutboundDispatcher(make_session_factory(engine), gw.client.app.state.cipher, settings)
    try:
        assert d.run_once() == 1
    finally:
        d.close()
        engine.dispose()
    assert [x["status"] for x in deliveries(gw, pid)] == ["disabled"]
    assert endpoint.received == []


def test_replay_sends_a_delivered_event_again(gw, endpoint, outbound, until) -> None:
    p = gw.register(outbound_url=endpoint.url)
    pid = p["platform_id"]
    outbound.publish(case_event(pid))
    d = outbound.dispatcher()
    until(lambda: endpoint.received, step=d.run_once)
    delivery_id = deliveries(gw, pid)[0]["id"]
    token = gw.client.post(
        "/v1/oauth/token",
        data={
            "grant_type": "client_credentials",
            "client_id": p["client_id"],
            "client_secret": p["client_secret"],
        },
    ).json()["access_token"]
    # The platform itself may ask for a replay of its own deliveries.
    r = gw.client.post(
        f"/v1/platforms/{pid}/deliveries/{delivery_id}/replay",
        headers={"Authorization": f"Bearer {token}"},
    )
    assert r.status_code == 200
    assert r.json()["status"] == "pending"
    until(lambda: len(endpoint.received) == 2, step=d.run_once)
    assert endpoint.received[0].headers["webhook-id"] == endpoint.received[1].headers["webhook-id"]
    assert deliveries(gw, pid)[0]["attempts"] == 2


def test_rotation_co_signs_outbound_deliveries_with_both_secrets(
    gw, endpoint, outbound, until
) -> None:
    p = gw.register("shopee", outbound_url=endpoint.url)
    pid = p["platform_id"]
    r = gw.client.post(
        f"/v1/platforms/{pid}/rotate-secret", json={"rotate_webhook_secret": True}, headers=gw.admin
    )
    new = r.json()["webhook_secret"]
    outbound.publish(case_event(pid))
    until(lambda: endpoint.received, step=outbound.dispatcher().run_once)
    got = endpoint.received[0]
    assert len(got.headers["webhook-signature"].split(" ")) == 2
    verify_standard_webhooks([p["webhook_secret"]], got.headers, got.body)
    verify_standard_webhooks([new], got.headers, got.body)


def test_mediation_events_go_out_and_events_of_unknown_platforms_do_not(
    gw, endpoint, outbound, until
) -> None:
    p = gw.register(outbound_url=endpoint.url)
    event = build_event(
        source="odr/mediation",
        event_type="case.assigned",
        subject="case-9",
        data=MediationEventV1(
            case_id="case-9",
            platform_id=p["platform_id"],
            neutral_id="n1",
            neutral_role="mediator",
            actor=Actor(role="system"),
            neutral_contact=Contact(name="Trần Thị Bình", phone="0988777666", email="b@odr.vn"),
        ),
    )
    outbound.publish(event, topic="mediation.events")
    outbound.publish(case_event("plt_unknown"))
    until(lambda: endpoint.received, step=outbound.dispatcher().run_once)
    doc = json.loads(endpoint.received[0].body)
    assert doc["type"] == "case.assigned"
    assert doc["data"]["neutral_contact"] == {"name": "Trần Thị Bình", "language": "vi"}
    assert len(deliveries(gw, p["platform_id"])) == 1
