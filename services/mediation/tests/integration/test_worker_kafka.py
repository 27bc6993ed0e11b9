"""The mediation worker on a real broker: case.escalated in, case.assigned out, once."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from kafka import KafkaConsumer, KafkaProducer
from mediation_testkit import case_event, make_settings, neutral_body
from sqlalchemy import select

from mediation import SERVICE_ROOT, service
from mediation.models import Assignment, Neutral
from odr_shared.db import make_engine, make_session_factory
from odr_shared.events import CASES_TOPIC, MEDIATION_TOPIC, build_event, parse_event
from odr_shared.kafka import ensure_topics
from odr_shared.migrate import upgrade
from odr_shared.testing import TansuBroker

pytestmark = pytest.mark.kafka


@pytest.fixture
def worker(broker: TansuBroker, database_url: str, tmp_path: Path) -> Iterator[str]:
    upgrade(SERVICE_ROOT, database_url)
    ensure_topics(broker.bootstrap, [CASES_TOPIC, MEDIATION_TOPIC])
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


def _events_for(bootstrap: str, case_id: str, want: int, timeout_s: float = 40) -> list:
    consumer = KafkaConsumer(
        MEDIATION_TOPIC,
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
    assigned = events[0].data
    assert assigned.neutral_id == nid
    assert assigned.neutral_role == "mediator"
    assert assigned.neutral_contact.language == "vi"
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
