"""Fixtures for the complaints tests: a migrated database, the use cases' deps, seeded orders."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from complaints import SERVICE_ROOT
from complaints.app import create_app
from complaints.deps import build_deps
from complaints.orders import apply_order_event
from complaints.service import Deps
from complaints.settings import ComplaintsSettings
from odr_shared.auth import TokenService
from odr_shared.db import make_engine
from odr_shared.events import (
    OrderStatusChangedV1,
    SealedPayloadV2,
    build_event,
    order_id,
    parse_event,
)
from odr_shared.migrate import upgrade
from odr_shared.outbox import outbox_table
from odr_shared.privacy import unsealed
from odr_shared.testing import sample_order

_OUTBOX = outbox_table(__import__("sqlalchemy").MetaData())


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> ComplaintsSettings:
    upgrade(SERVICE_ROOT, database_url)
    return ComplaintsSettings(
        database_url=database_url,
        storage_dir=str(tmp_path / "evidence"),
        environment="test",
        evidence_max_bytes=200_000,
    )


@pytest.fixture
def deps(settings: ComplaintsSettings) -> Iterator[Deps]:
    engine = make_engine(settings.database_url)
    yield build_deps(settings, engine)
    engine.dispose()


@pytest.fixture
def client(settings: ComplaintsSettings) -> Iterator[TestClient]:
    app = create_app(settings)
    with TestClient(app) as c:
        yield c
    app.state.engine.dispose()


SeedOrder = Callable[..., str]


@pytest.fixture
def seed_order(deps: Deps) -> SeedOrder:
    """Project an order as if it arrived on orders.events; returns its order id."""

    def _seed(
        code: str, platform_id: str = "plat-a", phone: str = "0912345678", **overrides: Any
    ) -> str:
        order = sample_order(code, **overrides)
        order["buyer"] = {**order["buyer"], "phone": phone}  # type: ignore[dict-item]
        data = OrderStatusChangedV1.model_validate(
            {**order, "order_id": order_id(platform_id, code), "platform_id": platform_id}
        )
        event = build_event(
            source="test", event_type="order.status_changed", subject=data.order_id, data=data
        )
        with deps.sessions.begin() as session:
            apply_order_event(session, event, deps.cipher, subject_of=deps.subject_of)
        return data.order_id

    return _seed


@pytest.fixture
def tokens(settings: ComplaintsSettings) -> TokenService:
    return TokenService(settings)


@pytest.fixture
def bearer(tokens: TokenService) -> Callable[..., dict[str, str]]:
    def _bearer(role: str, **claims: Any) -> dict[str, str]:
        token = tokens.issue(role=role, subject=f"test-{role}", ttl=timedelta(minutes=10), **claims)  # type: ignore[arg-type]
        return {"Authorization": f"Bearer {token}"}

    return _bearer


def raw_outbox_events(deps: Deps, event_type: str | None = None) -> list[dict[str, Any]]:
    """The outbox rows' payloads as they will travel (sealed)."""
    with deps.sessions() as session:
        q = select(_OUTBOX.c.payload, _OUTBOX.c.event_type).order_by(_OUTBOX.c.id)
        rows = session.execute(q).all()
    return [json.loads(r.payload) for r in rows if event_type is None or r.event_type == event_type]


def opened(deps: Deps, payload: dict[str, Any]) -> dict[str, Any]:
    """A sealed payload opened with complaints' own keys, as a consumer would read it (a
    destroyed key leaves the personal fields out)."""
    event = parse_event(payload)
    if not isinstance(event.data, SealedPayloadV2):
        return payload
    kid = event.data.sealed.kid
    with deps.sessions() as session:
        held = deps.keys.keys_by_id(session, [kid])
    readable = unsealed(event, held[kid].key if kid in held else None)
    if readable is None:
        return {**payload, "data": None}
    doc: dict[str, Any] = json.loads(readable.to_json_bytes())
    return doc


def outbox_events(deps: Deps, event_type: str | None = None) -> list[dict[str, Any]]:
    """The outbox rows' payloads, opened: what consumers of complaints' events read."""
    return [opened(deps, p) for p in raw_outbox_events(deps, event_type)]


@pytest.fixture
def outbox(deps: Deps) -> Callable[..., list[dict[str, Any]]]:
    return lambda event_type=None: outbox_events(deps, event_type)


@pytest.fixture
def raw_outbox(deps: Deps) -> Callable[..., list[dict[str, Any]]]:
    return lambda event_type=None: raw_outbox_events(deps, event_type)


@pytest.fixture
def sign_in(
    client: TestClient, outbox: Callable[..., list[dict[str, Any]]]
) -> Callable[[str, str], dict[str, str]]:
    """The buyer's SMS code flow for an order and phone; the consumer's bearer header."""

    def _sign_in(order_code: str, phone: str) -> dict[str, str]:
        r = client.post("/v1/otp", json={"order_code": order_code, "phone": phone})
        assert r.status_code == 202
        (command,) = outbox("notification.send")[-1:]
        code = str(command["data"]["params"]["code"])
        r = client.post(
            "/v1/otp/verify", json={"order_code": order_code, "phone": phone, "code": code}
        )
        assert r.status_code == 200, r.text
        return {"Authorization": f"Bearer {r.json()['access_token']}"}

    return _sign_in
