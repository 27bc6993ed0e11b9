"""The mediation worker on a real broker: case.escalated in, case.assigned out, once."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from kafka import KafkaConsumer, KafkaProducer
from mediation_testkit import case_event, local_opener, make_settings, neutral_body
from sqlalchemy import select

from mediation import SERVICE_ROOT, privacy, service
from mediation.models import Assignment, MediationCase, Neutral
from odr_shared.db import make_engine, make_session_factory
from odr_shared.events import (
    CASES_TOPIC,
    MEDIATION_TOPIC,
    PRIVACY_TOPIC,
    CaseStatus,
    Contact,
    ErasureRequestedV1,
    build_event,
    parse_event,
)
from odr_shared.kafka import ensure_topics
from odr_shared.migrate import upgrade
from odr_shared.privacy import subject_for_phone
from odr_shared.testing import TansuBroker

pytestmark = pytest.mark.kafka


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TansuBroker]:
    """A broker of this module's own. Its worker reads cases.events from the start, where the
    session's broker holds other tests' events sealed by services not running here: their
    keys' owners never answer, so those events (rightly) hold their partitions back."""
    with TansuBroker(log_path=tmp_path_factory.mktemp("tansu") / "tansu.log") as b:
        yield b


@pytest.fixture
def worker(broker: TansuBroker, database_url: str, tmp_path: Path) -> Iterator[str]:
    upgrade(SERVICE_ROOT, database_url)
    ensure_topics(broker.bootstrap, [CASES_TOPIC, MEDIATION_TOPIC, PRIVACY_TOPIC])
    env = {
        **os.environ,
        "MEDIATION_DATABASE_URL": database_url,
        "KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap,
        "ENVIRONMENT": "test",
        "LOG_FORMAT": "text",
        "MEDIATION_SWEEP_INTERVAL_S": "0.5",
    }
    log = open(tmp_path / "worker.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-c", "from mediation.main import worker; worker()"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        yield database_url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def _events_for(
    bootstrap: str, case_id: str, want: int, timeout_s: float = 40, topic: str = MEDIATION_TOPIC
) -> list:
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=f"test-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest",
        session_timeout_ms=6000,
        heartbeat_interval_ms=1000,
    )
    found = []
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline and len(found) < want:
            for records in consumer.poll(timeout_ms=500).values():
                for rec in records:
                    if rec.key == case_id.encode():
                        found.append(parse_event(rec.value))
    finally:
        consumer.close()
    return found


def test_case_escalated_on_the_broker_is_assigned_once_and_published(
    broker: TansuBroker, worker: str
) -> None:
    settings = make_settings(worker)
    engine = make_engine(worker)
    sessions = make_session_factory(engine)
    with sessions() as session, session.begin():
        spec = neutral_body()
        nid = service.register_neutral(
            session,
            service.NeutralSpec(
                name=spec["name"],
                email=spec["email"],
                phone=spec["phone"],
                password=spec["password"],
                roles=spec["roles"],
                categories=spec["categories"],
                languages=spec["languages"],
            ),
        )
    data = case_event()
    event = build_event(
        source="odr/complaints", event_type="case.escalated", subject=data.case_id, data=data
    )
    producer = KafkaProducer(
        bootstrap_servers=broker.bootstrap, acks="all", enable_idempotence=True
    )
    # The same event twice (a redelivery) must have one effect.
    for _ in range(2):
        producer.send(CASES_TOPIC, key=data.case_id.encode(), value=event.to_json_bytes()).get(10)
    producer.close()

    events = _events_for(broker.bootstrap, data.case_id, want=1)
    assert [e.type for e in events] == ["case.assigned"]
    # On the topic the neutral's contact is sealed; mediation's key opens it.
    assert "neutral_contact" not in events[0].data.model_dump()
    privacy.install(sessions, settings)
    opened = local_opener(sessions).open(events[0])
    assert opened is not None
    assigned = opened.data
    assert assigned.neutral_id == nid
    assert assigned.neutral_role == "mediator"
    assert assigned.neutral_contact.language == "vi"
    assert assigned.neutral_contact.email == spec["email"]
    assert events[0].source == "odr/mediation"

    # A later event on the same key is applied after the duplicate: once the withdrawal has
    # freed the mediator, the duplicate has had its (absent) effect.
    withdrawn = case_event(case_id=data.case_id, status="withdrawn")
    producer = KafkaProducer(
        bootstrap_servers=broker.bootstrap, acks="all", enable_idempotence=True
    )
    producer.send(
        CASES_TOPIC,
        key=data.case_id.encode(),
        value=build_event(
            source="odr/complaints",
            event_type="case.withdrawn",
            subject=data.case_id,
            data=withdrawn,
        ).to_json_bytes(),
    ).get(10)
    producer.close()

    def released() -> bool:
        with sessions() as session:
            return session.get(Neutral, nid).active_cases == 0  # type: ignore[union-attr]

    deadline = time.monotonic() + 30
    while not released() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert released()
    with sessions() as session:
        rows = (
            session.execute(select(Assignment.status).where(Assignment.case_id == data.case_id))
            .scalars()
            .all()
        )
    assert rows == ["released"]
    assert settings.sla_working_days == 2
    engine.dispose()


def test_an_erasure_request_on_the_broker_is_applied_and_reported(
    broker: TansuBroker, worker: str
) -> None:
    settings = make_settings(worker)
    engine = make_engine(worker)
    sessions = make_session_factory(engine)
    buyer = Contact(name="Pham Thi Cuc", phone="+84905123456", email="cuc@example.vn")
    data = case_event(consumer=buyer, reason="Cuc's parcel was opened")
    closed = case_event(case_id=data.case_id, status=CaseStatus.CLOSED, consumer=buyer)
    subject_id = subject_for_phone(buyer.phone or "", settings)
    request = ErasureRequestedV1(
        request_id=f"pr_{uuid.uuid4().hex[:10]}",
        subject_id=subject_id,
        case_ids=[data.case_id],
        requested_at=datetime.now(UTC),
    )
    producer = KafkaProducer(
        bootstrap_servers=broker.bootstrap, acks="all", enable_idempotence=True
    )
    for payload, event_type in ((data, "case.escalated"), (closed, "case.closed")):
        ev = build_event(
            source="odr/complaints", event_type=event_type, subject=data.case_id, data=payload
        )
        producer.send(CASES_TOPIC, key=data.case_id.encode(), value=ev.to_json_bytes()).get(10)

    def taken_in() -> bool:
        with sessions() as session:
            case = session.get(MediationCase, data.case_id)
            return case is not None and case.stage == "closed"

    deadline = time.monotonic() + 30
    while not taken_in() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert taken_in()
    ev = build_event(
        source="odr/complaints",
        event_type="privacy.erasure_requested",
        subject=subject_id,
        data=request,
    )
    producer.send(PRIVACY_TOPIC, key=subject_id.encode(), value=ev.to_json_bytes()).get(10)
    producer.close()

    reports = [
        e
        for e in _events_for(broker.bootstrap, subject_id, want=1, topic=PRIVACY_TOPIC)
        if e.type == "privacy.erasure_reported"
        and e.data.model_dump()["request_id"] == request.request_id
    ]
    assert len(reports) == 1
    report = reports[0].data.model_dump()
    assert report["request_id"] == request.request_id
    assert report["service"] == "mediation"
    assert report["status"] == "completed"
    with sessions() as session:
        case = session.get(MediationCase, data.case_id)
        assert case is not None
        assert case.consumer_name is None
        assert case.subject_id is None
        assert case.stage == "closed"
    engine.dispose()
