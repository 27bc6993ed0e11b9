"""Gateway test fixtures: a migrated database, the app over HTTP, admin tokens, signers."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

with warnings.catch_warnings():
    # Starlette nags about its httpx-based TestClient; it is still real HTTP semantics.
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient
from sqlalchemy import text

from gateway import SERVICE_ROOT
from gateway.app import create_app
from gateway.settings import GatewaySettings
from odr_shared.auth import TokenService
from odr_shared.events import parse_event
from odr_shared.migrate import upgrade
from odr_shared.privacy import Opener


@pytest.fixture
def settings(database_url: str) -> GatewaySettings:
    upgrade(SERVICE_ROOT, database_url)
    return GatewaySettings(
        database_url=database_url,
        environment="test",
        log_format="text",
        # No broker in route tests: outbox rows stay in the table where tests read them.
        kafka_bootstrap_servers="127.0.0.1:9",
        public_base_url="http://gateway.test",
        outbound_schedule_scale=0.001,
        outbound_poll_interval_s=0.05,
    )


@pytest.fixture
def client(settings: GatewaySettings) -> Iterator[TestClient]:
    app = create_app(settings)
    with TestClient(app) as c:
        yield c
    app.state.engine.dispose()


@pytest.fixture
def make_client(settings: GatewaySettings) -> Iterator[Any]:
    """A client on the same database with some settings changed."""
    opened: list[tuple[Any, TestClient]] = []

    def _make(**overrides: Any) -> TestClient:
        app = create_app(settings.model_copy(update=overrides))
        c = TestClient(app)
        c.__enter__()
        opened.append((app, c))
        return c

    yield _make
    for app, c in opened:
        c.__exit__(None, None, None)
        app.state.engine.dispose()


def admin_headers(settings: GatewaySettings) -> dict[str, str]:
    token = TokenService(settings).issue(role="admin", subject="t", ttl=timedelta(minutes=5))
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def admin(settings: GatewaySettings) -> dict[str, str]:
    return admin_headers(settings)


class Gw:
    """Small helpers over a TestClient: register platforms, sign the way marketplaces do."""

    def __init__(self, client: TestClient, admin: dict[str, str]) -> None:
        self.client = client
        self.admin = admin

    def register(self, kind: str = "standard", **extra: Any) -> dict[str, Any]:
        body: dict[str, Any] = {"name": f"Sàn {kind}", "kind": kind, **extra}
        if kind != "standard":
            body.setdefault("signing_secret", f"{kind}-partner-key-0123456789")
        if kind in ("lazada", "tiktok"):
            body.setdefault("app_key", f"{kind}-app-123")
        r = self.client.post("/v1/platforms", json=body, headers=self.admin)
        assert r.status_code == 201, r.text
        return {**r.json(), **body}

    @staticmethod
    def hex_hmac(secret: str, message: bytes) -> str:
        return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()

    @staticmethod
    def b64_hmac(secret: str, message: bytes) -> str:
        digest = hmac.new(secret.encode(), message, hashlib.sha256).digest()
        return base64.b64encode(digest).decode()

    @staticmethod
    def dumps(doc: Any) -> bytes:
        return json.dumps(doc, ensure_ascii=False).encode()

    def outbox_raw(self) -> list[dict[str, Any]]:
        """The outbox rows as stored (order events sealed)."""
        engine = self.client.app.state.engine  # type: ignore[attr-defined]
        with engine.connect() as conn:
            rows = conn.execute(
                text("SELECT key, event_type, payload FROM outbox_messages ORDER BY id")
            ).all()
        return [{"key": r.key, "type": r.event_type, "payload": bytes(r.payload)} for r in rows]

    def opener(self) -> Opener:
        """Opens sealed events with the gateway's own keys, as its consumers would."""
        state = self.client.app.state  # type: ignore[attr-defined]
        return Opener(
            service="gateway", client=None, store=state.keys, session_factory=state.sessions
        )

    def outbox(self) -> list[dict[str, Any]]:
        """The outbox's events as a consumer with the keys reads them (sealed fields opened)."""
        opener = self.opener()
        out = []
        for row in self.outbox_raw():
            opened = opener.open(parse_event(row["payload"]))
            assert opened is not None
            event = json.loads(opened.to_json_bytes())
            out.append({"key": row["key"], "type": row["type"], "event": event})
        return out

    def inbound(self, platform_id: str, **params: Any) -> list[dict[str, Any]]:
        r = self.client.get(
            f"/v1/platforms/{platform_id}/inbound-deliveries", params=params, headers=self.admin
        )
        assert r.status_code == 200, r.text
        return list(r.json())

    def put_order(self, platform_id: str, order: dict[str, Any]) -> Any:
        return self.client.put(
            f"/v1/platforms/{platform_id}/orders/{order['order_code']}",
            json=order,
            headers=self.admin,
        )


@pytest.fixture
def gw(client: TestClient, admin: dict[str, str]) -> Gw:
    return Gw(client, admin)


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    at: float


@dataclass
class PlatformEndpoint:
    """A platform's outbound_url: a real HTTP server that answers from a script, then 200."""

    script: list[tuple[int, dict[str, str]]] = field(default_factory=list)
    received: list[Received] = field(default_factory=list)
    url: str = ""

    def answer(self) -> tuple[int, dict[str, str]]:
        return self.script.pop(0) if self.script else (200, {})


@pytest.fixture
def endpoint() -> Iterator[PlatformEndpoint]:
    state = PlatformEndpoint()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("content-length", "0"))
            body = self.rfile.read(length)
            state.received.append(
                Received({k.lower(): v for k, v in self.headers.items()}, body, time.time())
            )
            status, headers = state.answer()
            self.send_response(status)
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("content-length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}/odr-webhooks"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def wait_until(fn: Any, timeout_s: float = 20.0, step: Any = None) -> Any:
    """Poll (running `step` between polls) until fn() is truthy."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if step is not None:
            step()
        result = fn()
        if result:
            return result
        time.sleep(0.02)
    raise AssertionError("condition not met in time")


@pytest.fixture
def until() -> Any:
    return wait_until


@pytest.fixture
def ingestor(settings: GatewaySettings) -> Iterator[Any]:
    """An Ingestor on the test database (3 webhooks per window) and a standard platform:
    (ingestor, platform_id, webhook_secret)."""
    from gateway.ingest import Ingestor
    from gateway.platforms import register_platform
    from odr_shared.crypto import DataCipher
    from odr_shared.db import make_engine, make_session_factory

    engine = make_engine(settings.database_url)
    cipher = DataCipher(settings.data_encryption_key)
    ing = Ingestor(
        make_session_factory(engine), cipher, settings.model_copy(update={"webhook_rate_limit": 3})
    )
    with ing.factory() as s, s.begin():
        created = register_platform(
            s,
            cipher,
            name="Group",
            kind="standard",
            signing_secret=None,
            app_key=None,
            push_url=None,
            outbound_url=None,
        )
    yield ing, created.platform_id, created.webhook_secret
    engine.dispose()
