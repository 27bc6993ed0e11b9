"""Mediation test helpers and fixtures: a migrated database, the app, neutrals, escalations."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from mediation import SERVICE_ROOT
from mediation.app import create_app
from mediation.settings import MediationSettings
from odr_shared.auth import TokenService
from odr_shared.db import make_engine, make_session_factory
from odr_shared.events import Actor, CaseEventV1, CaseStatus, Contact
from odr_shared.migrate import upgrade
from odr_shared.privacy import Opener

PASSWORD = "correct horse battery staple"


def make_settings(database_url: str, **overrides: Any) -> MediationSettings:
    values: dict[str, Any] = {
        "database_url": database_url,
        "environment": "test",
        "log_format": "text",
        "complaints_url": "http://127.0.0.1:9",  # nothing listens: complaints "unreachable"
        "panel_threshold_vnd": 100_000_000,
        "sla_working_days": 2,
    }
    values.update(overrides)
    return MediationSettings(**values)


@pytest.fixture
def settings(database_url: str) -> MediationSettings:
    upgrade(SERVICE_ROOT, database_url)
    return make_settings(database_url)


@pytest.fixture
def sessions(settings: MediationSettings) -> Iterator[sessionmaker[Session]]:
    from mediation import privacy

    engine = make_engine(settings.database_url)
    factory = make_session_factory(engine)
    privacy.install(factory, settings)
    yield factory
    engine.dispose()


@pytest.fixture
def client(settings: MediationSettings) -> Iterator[TestClient]:
    app = create_app(settings)
    with TestClient(app) as c:
        yield c
    app.state.engine.dispose()


def admin_headers(settings: MediationSettings | None = None) -> dict[str, str]:
    token = TokenService(settings or MediationSettings()).issue(
        role="admin", subject="test-admin", ttl=timedelta(minutes=10)
    )
    return {"Authorization": f"Bearer {token}"}


def neutral_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": "Trần Thị Bình",
        "email": f"n{uuid.uuid4().hex[:8]}@hoagiai.vn",
        "phone": "0987654321",
        "password": PASSWORD,
        "roles": ["mediator"],
        "categories": ["not_delivered"],
        "languages": ["vi"],
        "regions": ["HN"],
        "max_active_cases": 5,
        "conflicts": {"platform_ids": [], "seller_ids": []},
    }
    body.update(overrides)
    return body


def case_event(**overrides: Any) -> CaseEventV1:
    case_id = overrides.pop("case_id", f"case_{uuid.uuid4().hex[:12]}")
    values: dict[str, Any] = {
        "case_id": case_id,
        "reference": f"KN-2026-{uuid.uuid4().int % 1_000_000:06d}",
        "order_id": "plt_1:DH001",
        "platform_id": "plt_1",
        "order_code": "DH001",
        "seller_id": "seller-1",
        "status": CaseStatus.ESCALATED,
        "previous_status": CaseStatus.NEGOTIATING,
        "category": "not_delivered",
        "language": "vi",
        "claimed_amount": 300_000,
        "desired_outcome": "full_refund",
        "actor": Actor(role="consumer", id="plt_1:DH001"),
        "consumer": Contact(name="Nguyễn Văn An", phone="+84912345678", language="vi"),
    }
    values.update(overrides)
    return CaseEventV1(**values)


@pytest.fixture
def add_neutral(client: TestClient, settings: MediationSettings) -> Callable[..., str]:
    def _add(**overrides: Any) -> str:
        r = client.post(
            "/v1/neutrals", json=neutral_body(**overrides), headers=admin_headers(settings)
        )
        assert r.status_code == 201, r.text
        return str(r.json()["neutral_id"])

    return _add


def now() -> datetime:
    return datetime.now(UTC)


def login(client: TestClient, email: str) -> dict[str, str]:
    r = client.post("/v1/auth/login", json={"email": email, "password": PASSWORD})
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


def escalate(sessions: sessionmaker[Session], settings: MediationSettings, **kw: Any) -> str:
    from mediation import service
    from odr_shared.db import utcnow

    data = case_event(**kw)
    with sessions() as session, session.begin():
        service.take_escalated_case(session, data, utcnow(), settings)
    return data.case_id


def outbox(sessions: sessionmaker[Session]) -> list[tuple[str, dict[str, Any]]]:
    """(type, payload) of every event mediation queued, oldest first, opened with mediation's
    own keys (every one of them is sealed: the personal fields of one whose key is destroyed
    come back at their defaults)."""
    from sqlalchemy import select

    from odr_shared.events import MEDIATION_TOPIC, SealedPayloadV2, parse_event
    from odr_shared.outbox import _OUTBOX

    with sessions() as session:
        rows = session.execute(
            select(_OUTBOX.c.topic, _OUTBOX.c.payload).order_by(_OUTBOX.c.id)
        ).all()
    opener = local_opener(sessions)
    out = []
    for topic, payload in rows:
        if topic != MEDIATION_TOPIC:
            continue
        ev = parse_event(bytes(payload))
        assert isinstance(ev.data, SealedPayloadV2), f"{ev.type} left unsealed"
        opened = opener.open(ev)
        assert opened is not None
        out.append((opened.type, opened.data.model_dump(mode="json")))
    return out


def local_opener(sessions: sessionmaker[Session]) -> Any:
    """An opener of mediation's own sealed events, from its database only (no HTTP)."""
    from mediation import privacy

    with sessions() as session:
        sealer = privacy.sealer_of(session)
    return Opener(
        service=privacy.SERVICE,
        client=None,
        store=sealer.store,
        session_factory=sessions,
        cache_s=0,
    )


def outbox_rows(sessions: sessionmaker[Session], topic: str) -> list[bytes]:
    """The raw payloads queued for `topic`, oldest first: what Kafka will carry."""
    from sqlalchemy import select

    from odr_shared.outbox import _OUTBOX

    with sessions() as session:
        return [
            bytes(p)
            for (p,) in session.execute(
                select(_OUTBOX.c.payload).where(_OUTBOX.c.topic == topic).order_by(_OUTBOX.c.id)
            )
        ]


def route_escalations(database_url: str, case_ids: list[str], start: Any = None) -> None:
    """A router process: take in and route these escalations, one committed transaction each
    (after `start`, a multiprocessing Event, is set, so the routers begin together)."""
    from mediation import service
    from odr_shared.db import utcnow

    settings = make_settings(database_url)
    engine = make_engine(database_url)
    sessions = make_session_factory(engine)
    try:
        if start is not None:
            start.wait(30)
        for case_id in case_ids:
            with sessions() as session, session.begin():
                service.take_escalated_case(
                    session, case_event(case_id=case_id), utcnow(), settings
                )
    finally:
        engine.dispose()
