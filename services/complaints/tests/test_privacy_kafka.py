"""The complaints worker's consumer on a real broker: sealed orders from the gateway are opened
with the key fetched from the gateway's key endpoint (a real HTTP server); a destroyed key leaves
the order out; the other services' erasure reports complete a request."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from kafka import KafkaProducer
from sqlalchemy import MetaData
from sqlalchemy.orm import Session, sessionmaker

from complaints.consumer import batch_handlers, handlers
from complaints.models import Order, PrivacyRequest
from complaints.privacy import desk
from complaints.privacy.state import new_request
from complaints.service import Deps
from odr_shared.auth import TokenService
from odr_shared.db import make_engine, make_session_factory
from odr_shared.events import (
    ORDERS_TOPIC,
    PRIVACY_TOPIC,
    ErasureReportedV1,
    OrderStatusChangedV1,
    build_event,
    order_id,
)
from odr_shared.kafka import EventConsumer, ensure_topics, make_producer
from odr_shared.privacy import KeyStore, MasterKey, Opener, Sealer, subject_keys_table
from odr_shared.privacy.api import subject_keys_router
from odr_shared.problems import install_problem_handlers
from odr_shared.testing import TansuBroker, sample_order, serve_app

pytestmark = pytest.mark.kafka

NAME = "Pham Thi Sealedbuyer"


def wait_for(fn: Callable[[], Any], timeout_s: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        result = fn()
        if result:
            return result
        time.sleep(0.1)
    raise AssertionError("condition not met in time")


class Gateway:
    """The gateway's side of sealing: its own key store and its subject-key endpoint."""

    def __init__(self, url: str, store: KeyStore, sessions: sessionmaker[Session]) -> None:
        self.url = url
        self.store = store
        self.sessions = sessions


@pytest.fixture
def gateway(deps: Deps, tmp_path: Path) -> Iterator[Gateway]:
    engine = make_engine(f"sqlite:///{tmp_path}/gateway.db")
    metadata = MetaData()
    subject_keys_table(metadata)
    metadata.create_all(engine)
    store = KeyStore(MasterKey(["the-gateway's-own-master-material"]))
    sessions = make_session_factory(engine)
    app = FastAPI()
    app.state.tokens = TokenService(deps.settings)
    install_problem_handlers(app)
    app.include_router(subject_keys_router(store, sessions))
    with serve_app(app) as url:
        yield Gateway(url, store, sessions)
    engine.dispose()


@pytest.fixture
def worker(deps: Deps, broker: TansuBroker, gateway: Gateway) -> Iterator[Deps]:
    deps.settings.kafka_bootstrap_servers = broker.bootstrap
    deps.settings.service_urls = f"gateway={gateway.url}"
    ensure_topics(broker.bootstrap, [ORDERS_TOPIC, PRIVACY_TOPIC])
    producer = make_producer(broker.bootstrap, "complaints-privacy-test")
    # Keys stay cached a minute (the default), as in the worker.
    opener = Opener.from_settings(
        deps.settings, service="complaints", store=deps.keys, session_factory=deps.sessions
    )
    consumer = EventConsumer(
        settings=deps.settings,
        group_id=f"complaints-{uuid.uuid4().hex[:6]}",
        handlers=handlers(deps, forget=opener.forget),
        batch_handlers=batch_handlers(deps),
        topics=[ORDERS_TOPIC, PRIVACY_TOPIC],
        session_factory=deps.sessions,
        producer=producer,
        opener=opener,
    )
    thread = threading.Thread(target=consumer.run, daemon=True)
    thread.start()
    yield deps
    consumer.stop()
    thread.join(timeout=15)
    producer.close()
    if consumer.opener is not None and consumer.opener.client is not None:
        consumer.opener.client.close()


def _order(deps: Deps, code: str) -> OrderStatusChangedV1:
    order = sample_order(code)
    order["buyer"] = {"name": NAME, "phone": "0911222333", "email": "sealed@example.vn"}
    return OrderStatusChangedV1.model_validate(
        {
            **order,
            "order_id": order_id("plat-k", code),
            "platform_id": "plat-k",
            "subject_id": deps.subject_of("0911222333"),
        }
    )


def _send(broker: TansuBroker, topic: str, key: str, value: bytes) -> None:
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap, acks="all")
    producer.send(topic, key=key.encode(), value=value).get(timeout=10)
    producer.close()


def _erasure_request(deps: Deps, subject: str) -> str:
    with deps.sessions.begin() as session:
        req = new_request(
            session,
            kind="erasure",
            subject_id=subject,
            source="consumer",
            order_ids=[],
            case_ids=[],
            calendar=deps.calendar,
            answer_working_days=15,
        )
        return req.id


def _request(deps: Deps, request_id: str) -> PrivacyRequest:
    with deps.sessions() as session:
        row = session.get(PrivacyRequest, request_id)
        assert row is not None
        session.expunge(row)
        return row


def _report(broker: TansuBroker, request_id: str, subject: str, svc: str) -> None:
    report = build_event(
        source=f"urn:odr:{svc}",
        event_type="privacy.erasure_reported",
        subject=subject,
        data=ErasureReportedV1(
            request_id=request_id,
            service=svc,  # type: ignore[arg-type]
            subject_id=subject,
            status="completed",
        ),
    )
    _send(broker, PRIVACY_TOPIC, subject, report.to_json_bytes())


def _stored(deps: Deps, oid: str) -> Order | None:
    with deps.sessions() as session:
        order = session.get(Order, oid)
        if order is not None:
            session.expunge(order)
        return order


def test_sealed_orders_are_opened_with_the_gateways_key_and_left_out_once_it_is_destroyed(
    worker: Deps, broker: TansuBroker, gateway: Gateway
) -> None:
    deps = worker
    code = f"K{uuid.uuid4().hex[:6]}"
    data = _order(deps, code)
    sealer = Sealer(gateway.store, "gateway")
    with gateway.sessions.begin() as session:
        first = sealer.seal(
            session,
            build_event(
                source="gw", event_type="order.status_changed", subject=data.order_id, data=data
            ),
            data.subject_id,
        )
    value = first.to_json_bytes()
    assert NAME.encode() not in value  # on the topic, the buyer is sealed
    _send(broker, ORDERS_TOPIC, data.order_id, value)
    order = wait_for(lambda: _stored(deps, data.order_id))
    assert deps.cipher.decrypt(order.buyer_name_enc) == NAME
    assert order.subject_id == data.subject_id

    # The gateway erased the buyer: its key is gone (complaints' opener had it cached) and it
    # says so on privacy.events; a later event of theirs, sealed before, carries nobody.
    later = _order(deps, f"{code}b")
    subject = later.subject_id
    assert subject is not None
    with gateway.sessions.begin() as session:
        second = sealer.seal(
            session,
            build_event(
                source="gw", event_type="order.status_changed", subject=later.order_id, data=later
            ),
            subject,
        )
        gateway.store.destroy(session, subject)
    request_id = _erasure_request(deps, subject)
    _report(broker, request_id, subject, "gateway")
    wait_for(lambda: "gateway" in _request(deps, request_id).reports)
    _send(broker, ORDERS_TOPIC, later.order_id, second.to_json_bytes())
    marker = _order(deps, f"{code}c").model_copy(update={"subject_id": None})
    plain = build_event(
        source="gw", event_type="order.status_changed", subject=marker.order_id, data=marker
    )
    _send(broker, ORDERS_TOPIC, marker.order_id, plain.to_json_bytes())
    wait_for(lambda: _stored(deps, marker.order_id))  # what came after was applied
    assert _stored(deps, later.order_id) is None


def test_erasure_reports_arriving_on_privacy_events_complete_the_request(
    worker: Deps, broker: TansuBroker
) -> None:
    deps = worker
    subject = deps.subject_of("0944555666")
    request_id = _erasure_request(deps, subject)
    desk.work_once(deps)
    for svc in ("gateway", "mediation", "notifications"):
        _report(broker, request_id, subject, svc)
    wait_for(lambda: _request(deps, request_id).status == "completed")
