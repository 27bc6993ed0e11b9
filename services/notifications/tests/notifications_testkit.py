"""Notifications test kit: a real SMTP server (aiosmtpd), a real HTTP SMS endpoint that
fails some of the time, a migrated database, a clock the tests move, and event builders."""

from __future__ import annotations

import json
import threading
import time
import uuid
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from notifications import SERVICE_ROOT
from notifications.settings import NotificationsSettings
from odr_shared.auth import TokenService
from odr_shared.events import (
    Actor,
    CaseEventV1,
    CloudEvent,
    Contact,
    MediationEventV1,
    NotificationCommandV1,
    OrderStatusChangedV1,
    build_event,
)
from odr_shared.migrate import upgrade
from odr_shared.testing import free_port

# -- a real HTTP SMS provider that misbehaves on a schedule -----------------------------------


@dataclass
class SmsProvider:
    """Behaviour per request number (1-based) -> 'ok' | '503' | '429' | '400' |
    'timeout_before' (hangs, never records) | 'timeout_after' (records, then hangs: only the
    Idempotency-Key saves us from a duplicate)."""

    schedule: Callable[[int], str] = lambda n: "ok"
    hang_s: float = 1.5
    requests: int = 0
    accepted: list[dict[str, Any]] = field(default_factory=list)
    references: set[str] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)
    url: str = ""
    authorizations: list[str] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)

    def texts_to(self, phone: str) -> list[str]:
        with self.lock:
            return [m["text"] for m in self.accepted if m["to"] == phone]


def _sms_handler(provider: SmsProvider) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers.get("content-length") or 0)))
            with provider.lock:
                provider.requests += 1
                n = provider.requests
                provider.authorizations.append(self.headers.get("authorization") or "")
            behaviour = provider.schedule(n)
            if behaviour in ("503", "429", "400"):
                self._answer(int(behaviour), {"error": behaviour})
                return
            if behaviour == "block":  # hold the request until the test lets it go
                provider.release.wait(30)
                behaviour = "ok"
            if behaviour == "timeout_before":
                time.sleep(provider.hang_s)
                self._answer(504, {"error": "late"})
                return
            key = self.headers.get("idempotency-key") or ""
            with provider.lock:
                duplicate = key in provider.references
                if not duplicate:
                    provider.references.add(key)
                    provider.accepted.append({**body, "key": key})
            if behaviour == "timeout_after":
                time.sleep(provider.hang_s)
            self._answer(200, {"id": f"sms-{n}", "status": "duplicate" if duplicate else "ok"})

        def _answer(self, status: int, doc: dict[str, str]) -> None:
            raw = json.dumps(doc).encode()
            try:
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)
            except OSError:
                pass  # the client gave up waiting (a timeout we caused on purpose)

        def log_message(self, format: str, *args: object) -> None:
            return

    return Handler


@pytest.fixture
def sms_provider() -> Iterator[SmsProvider]:
    provider = SmsProvider()
    server = ThreadingHTTPServer(("127.0.0.1", free_port()), _sms_handler(provider))
    server.daemon_threads = True
    provider.url = f"http://127.0.0.1:{server.server_address[1]}/sms"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield provider
    server.shutdown()
    server.server_close()


# -- a real SMTP server ----------------------------------------------------------------------


@dataclass
class Mailbox:
    """What the SMTP server accepted; `fail_every`: every n-th DATA gets 451 (try later)."""

    fail_every: int = 0
    permanent_failure: bool = False
    data_commands: int = 0
    messages: list[EmailMessage] = field(default_factory=list)
    port: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self.lock:
            self.data_commands += 1
            if self.permanent_failure:
                return "550 5.1.1 mailbox unavailable"
            if self.fail_every and self.data_commands % self.fail_every == 0:
                return "451 4.3.0 temporary failure, try again later"
            msg = message_from_bytes(envelope.content, policy=policy.default)
            assert isinstance(msg, EmailMessage)
            self.messages.append(msg)
        return "250 OK"

    def to(self, address: str) -> list[EmailMessage]:
        with self.lock:
            return [m for m in self.messages if m["To"] == address]


@pytest.fixture
def mailbox() -> Iterator[Mailbox]:
    box = Mailbox()
    box.port = free_port()
    controller = Controller(box, hostname="127.0.0.1", port=box.port)
    controller.start()
    yield box
    controller.stop()


# -- database, settings, clock ----------------------------------------------------------------


@pytest.fixture
def db_url(database_url: str) -> str:
    upgrade(SERVICE_ROOT, database_url)
    return database_url


class Clock:
    """A clock the test moves; starts on a weekday at noon in Vietnam (05:00 UTC)."""

    def __init__(self, now: datetime | None = None) -> None:
        self.now = now or datetime(2026, 11, 23, 5, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@pytest.fixture
def clock() -> Clock:
    return Clock()


def make_settings(db_url: str, **overrides: Any) -> NotificationsSettings:
    values: dict[str, Any] = {
        "database_url": db_url,
        "environment": "test",
        "portal_url": "https://odr.example.vn",
        "backoff_initial_s": 0.05,
        "backoff_max_s": 0.2,
        "max_attempts": 8,
        "sms_timeout_s": 0.5,
        "smtp_timeout_s": 5,
        "dispatch_poll_interval_s": 0.05,
        "consumer_backoff_initial_s": 0.05,
    }
    values.update(overrides)
    return NotificationsSettings(**values)


def token(role: str, **claims: Any) -> dict[str, str]:
    issued = TokenService(NotificationsSettings()).issue(
        role=role,  # type: ignore[arg-type]
        subject=f"test-{role}",
        ttl=timedelta(minutes=10),
        **claims,
    )
    return {"Authorization": f"Bearer {issued}"}


# -- events ----------------------------------------------------------------------------------

CONSUMER_VI = Contact(
    name="Nguyễn Văn An", phone="0912345678", email="an.nguyen@example.vn", language="vi"
)
CONSUMER_EN = Contact(name="Jane Doe", phone="+84987654321", email=None, language="en")


def case_event(
    event_type: str = "case.opened",
    *,
    case_id: str | None = None,
    consumer: Contact = CONSUMER_VI,
    platform_id: str = "plat-1",
    details: dict[str, Any] | None = None,
) -> CloudEvent[CaseEventV1]:
    case_id = case_id or f"case-{uuid.uuid4().hex[:8]}"
    return build_event(
        source="complaints",
        event_type=event_type,
        subject=case_id,
        data=CaseEventV1(
            case_id=case_id,
            reference=f"KN-2026-{zlib.crc32(case_id.encode()) % 1_000_000:06d}",
            order_id=f"{platform_id}:DH{case_id[-6:].upper()}",
            platform_id=platform_id,
            order_code=f"DH{case_id[-6:].upper()}",
            status="awaiting_merchant",
            category="not_delivered",
            actor=Actor(role="consumer"),
            merchant_response_due_at=datetime(2026, 12, 2, 10, 0, tzinfo=UTC),
            consumer=consumer,
            details=details or {},
        ),
    )


def mediation_event(
    event_type: str, case_id: str, *, neutral_email: str | None = "hoa.giai@example.vn"
) -> CloudEvent[MediationEventV1]:
    return build_event(
        source="mediation",
        event_type=event_type,
        subject=case_id,
        data=MediationEventV1(
            case_id=case_id,
            neutral_id="neutral-1",
            neutral_role="mediator",
            actor=Actor(role="system"),
            neutral_contact=Contact(name="Trần Thị Hoà", email=neutral_email, language="vi")
            if neutral_email
            else None,
        ),
    )


def otp_command(phone: str, code: str = "482913") -> CloudEvent[NotificationCommandV1]:
    return build_event(
        source="complaints",
        event_type="notification.send",
        subject=phone,
        data=NotificationCommandV1(
            template="otp",
            channel="sms",
            recipient=Contact(phone=phone, language="vi"),
            params={"code": code, "ttl_minutes": 5},
            urgent=True,
        ),
    )


def order_event(
    phone: str, *, status_notifications: bool, platform_id: str = "plat-1"
) -> CloudEvent[OrderStatusChangedV1]:
    code = f"DH{uuid.uuid4().hex[:8].upper()}"
    return build_event(
        source="gateway",
        event_type="order.status_changed",
        subject=f"{platform_id}:{code}",
        data=OrderStatusChangedV1.model_validate(
            {
                "order_id": f"{platform_id}:{code}",
                "platform_id": platform_id,
                "order_code": code,
                "status": "shipped",
                "status_at": "2026-11-20T03:00:00Z",
                "buyer": {"name": "Lê Minh", "phone": phone},
                "seller": {"id": "s-1", "name": "Cửa hàng Minh Anh"},
                "total_amount": 300000,
                "status_notifications": status_notifications,
            }
        ),
    )


# -- a harness: the worker's own consumer and dispatcher, driven step by step ---------------


class Harness:
    """The worker's EventConsumer (inbox and all) and Dispatcher on a real database and broker,
    driven step by step so a test controls the clock."""

    def __init__(self, settings: NotificationsSettings, clock: Clock) -> None:
        from notifications import bootstrap
        from notifications.consumer import GROUP_ID, handlers
        from notifications.worker import TOPICS
        from odr_shared.db import make_engine, make_session_factory
        from odr_shared.kafka import EventConsumer, make_producer

        self.settings = settings
        self.clock = clock
        self.engine = make_engine(settings.database_url)
        self.sessions = make_session_factory(self.engine)
        self.producer = make_producer(settings.kafka_bootstrap_servers, "notifications-test")
        self.store = bootstrap.key_store(settings)
        self.opener = bootstrap.opener(settings, self.store, self.sessions)
        self.consumer = EventConsumer(
            settings=settings,
            group_id=GROUP_ID,
            handlers=handlers(bootstrap.notifier(settings, clock=clock), self.store, self.opener),
            topics=TOPICS,
            session_factory=self.sessions,
            producer=self.producer,
            opener=self.opener,
        )
        self.dispatcher = bootstrap.dispatcher(settings, self.sessions, self.producer, clock=clock)
        self.cipher = bootstrap.cipher(settings)

    def deliver(self, event: CloudEvent[Any], topic: str) -> None:
        self.consumer.process_record(topic, (event.subject or "").encode(), event.to_json_bytes())

    def drain(self, max_rounds: int = 200) -> None:
        """Run the dispatcher until nothing is left, moving the clock over backoff waits
        (never over quiet hours or rate-limit holds longer than `self.skip_limit`)."""
        from sqlalchemy import func, select

        from notifications.models import Delivery

        for _ in range(max_rounds):
            if self.dispatcher.run_once():
                continue
            with self.sessions() as session:
                next_at = session.execute(
                    select(func.min(Delivery.next_attempt_at)).where(
                        Delivery.status.in_(("pending", "sending"))
                    )
                ).scalar_one()
            if next_at is None or next_at - self.clock.now > timedelta(minutes=5):
                return
            self.clock.now = max(self.clock.now, next_at)
        raise AssertionError("dispatcher did not settle")

    def deliveries(self) -> list[Any]:
        from sqlalchemy import select

        from notifications.models import Delivery

        with self.sessions() as session:
            return list(session.execute(select(Delivery).order_by(Delivery.id)).scalars())

    def close(self) -> None:
        if self.opener.client is not None:
            self.opener.client.close()
        self.dispatcher.close()
        self.producer.close()
        self.engine.dispose()


@pytest.fixture
def harness(
    db_url: str, broker: Any, sms_provider: SmsProvider, mailbox: Mailbox, clock: Clock
) -> Iterator[Harness]:
    from odr_shared.events import CASES_TOPIC, NOTIFICATIONS_TOPIC, ORDERS_TOPIC
    from odr_shared.kafka import ensure_topics

    ensure_topics(broker.bootstrap, [NOTIFICATIONS_TOPIC, ORDERS_TOPIC, CASES_TOPIC])
    settings = make_settings(
        db_url,
        kafka_bootstrap_servers=broker.bootstrap,
        sms_provider_url=sms_provider.url,
        smtp_port=mailbox.port,
        max_attempts=3,
    )
    h = Harness(settings, clock)
    yield h
    h.close()
