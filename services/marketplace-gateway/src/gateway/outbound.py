"""Outbound webhooks: case and mediation events to each platform, signed, retried, logged."""

from __future__ import annotations

import json
import logging
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import Any, cast

import httpx
from pydantic import BaseModel
from sqlalchemy import CursorResult, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from gateway.domain import due_at, next_delay, parse_retry_after, redact_for_platform
from gateway.metrics import OUTBOUND_ATTEMPTS
from gateway.models import OrderSnapshot, OutboundAttempt, OutboundDelivery, Platform
from gateway.platforms import outbound_secrets
from gateway.settings import GatewaySettings
from gateway.signatures import standard_webhooks_headers
from odr_shared.crypto import DataCipher
from odr_shared.db import utcnow
from odr_shared.events import CloudEvent
from odr_shared.events.schemas import CASE_EVENT_TYPES, MEDIATION_EVENT_TYPES
from odr_shared.kafka import EventHandler
from odr_shared.logs import scrub
from odr_shared.problems import Problem, not_found
from odr_shared.worker import Stoppable

log = logging.getLogger(__name__)

OUTBOUND_EVENT_TYPES = (*CASE_EVENT_TYPES, *MEDIATION_EVENT_TYPES)


def outbound_body(event: CloudEvent[BaseModel]) -> bytes:
    """The Standard Webhooks payload shape: type, timestamp, data (contacts stripped)."""
    data = redact_for_platform(event.data.model_dump(mode="json", exclude_none=True))
    doc = {"type": event.type, "timestamp": event.time.isoformat(), "data": data}
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode()


def enqueue(session: Session, event: CloudEvent[BaseModel]) -> OutboundDelivery | None:
    """Consumer handler body: queue the event for its platform, in the inbox's transaction."""
    platform_id = getattr(event.data, "platform_id", None)
    if not platform_id:
        return None
    platform = session.get(Platform, platform_id)
    if platform is None or not platform.outbound_url:
        return None
    now = utcnow()
    case_id = getattr(event.data, "case_id", None)
    delivery = OutboundDelivery(
        id="msg_" + event.id.replace("-", ""),
        platform_id=platform_id,
        event_id=event.id,
        event_type=event.type,
        case_id=case_id,
        payload=outbound_body(event),
        subject_id=_case_subject(session, event.data, case_id),
        # Held, not dropped, while the platform's endpoint is disabled.
        status="pending" if platform.outbound_enabled else "disabled",
        attempts=0,
        schedule_step=0,
        next_attempt_at=now,
        created_at=now,
    )
    session.add(delivery)
    return delivery


def _case_subject(session: Session, data: BaseModel, case_id: str | None) -> str | None:
    """The case's consumer as a data subject, so an erasure finds the case's deliveries: the
    event's own subject id, else its order's buyer, else an earlier delivery of the case's."""
    subject = getattr(data, "subject_id", None)
    if subject:
        return str(subject)
    oid = getattr(data, "order_id", None)
    if oid:
        snapshot = session.get(OrderSnapshot, oid)
        if snapshot is not None and snapshot.subject_id:
            return snapshot.subject_id
    if case_id:
        return session.execute(
            select(OutboundDelivery.subject_id)
            .where(OutboundDelivery.case_id == case_id, OutboundDelivery.subject_id.is_not(None))
            .limit(1)
        ).scalar()
    return None


def handlers() -> dict[str, EventHandler]:
    def _handle(session: Session, event: CloudEvent[BaseModel]) -> None:
        enqueue(session, event)

    return dict.fromkeys(OUTBOUND_EVENT_TYPES, _handle)


class OutboundDispatcher(Stoppable):
    """Sends due deliveries; runs in the gateway worker beside the outbox relay and consumer.

    Each delivery is leased (a row update that only one replica wins) before the HTTP call, and
    no database transaction is held open while the platform answers.
    """

    def __init__(
        self,
        factory: sessionmaker[Session],
        cipher: DataCipher,
        settings: GatewaySettings,
        *,
        client: httpx.Client | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.factory = factory
        self.cipher = cipher
        self.settings = settings
        self.client = client or httpx.Client(
            timeout=settings.outbound_timeout_s, follow_redirects=False
        )
        self.rng = rng or random.Random()
        self._stop = threading.Event()
        self._pool = ThreadPoolExecutor(
            max_workers=max(1, settings.outbound_concurrency), thread_name_prefix="outbound"
        )

    def stop(self) -> None:
        self._stop.set()

    def run(self) -> None:
        try:
            while not self._stop.is_set():
                try:
                    sent = self.run_once()
                except Exception as exc:  # noqa: BLE001 - database hiccup: try again shortly
                    log.warning("outbound dispatch failed", extra={"error": str(exc)})
                    sent = 0
                if sent == 0:
                    self._stop.wait(self.settings.outbound_poll_interval_s)
        finally:
            self.close()

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        self.client.close()

    def run_once(self, limit: int = 50) -> int:
        """Claim due deliveries and send them; returns how many were attempted."""
        claimed = self._claim(limit)
        if not claimed:
            return 0
        list(self._pool.map(self._deliver, claimed))
        return len(claimed)

    def _claim(self, limit: int) -> list[str]:
        now = utcnow()
        with self.factory() as session:
            candidates = list(
                session.execute(
                    select(OutboundDelivery.id)
                    .where(
                        OutboundDelivery.status.in_(("pending", "delivering")),
                        OutboundDelivery.next_attempt_at <= now,
                        or_(
                            OutboundDelivery.lease_until.is_(None),
                            OutboundDelivery.lease_until < now,
                        ),
                    )
                    .order_by(OutboundDelivery.next_attempt_at)
                    .limit(limit)
                ).scalars()
            )
        claimed = []
        lease = now + timedelta(seconds=self.settings.outbound_lease_s)
        for delivery_id in candidates:
            with self.factory() as session, session.begin():
                result = session.execute(
                    update(OutboundDelivery)
                    .where(
                        OutboundDelivery.id == delivery_id,
                        OutboundDelivery.status.in_(("pending", "delivering")),
                        or_(
                            OutboundDelivery.lease_until.is_(None),
                            OutboundDelivery.lease_until < now,
                        ),
                    )
                    .values(lease_until=lease, status="delivering")
                )
            if cast(CursorResult[Any], result).rowcount:
                claimed.append(delivery_id)
        return claimed

    def _deliver(self, delivery_id: str) -> None:
        with self.factory() as session:
            delivery = session.get(OutboundDelivery, delivery_id)
            if delivery is None:
                return
            platform = session.get(Platform, delivery.platform_id)
            if platform is None:
                return
            url = platform.outbound_url if platform.outbound_enabled else None
            if url:
                secrets = outbound_secrets(self.cipher, platform, utcnow())
                payload = bytes(delivery.payload)
        if not url:
            # Recorded once the read above has given its connection back: a thread holding one
            # while it waits for a second can wait on a pool the other sending threads hold.
            self._finish(delivery_id, status="disabled", clear_lease=True)
            return
        # A fresh timestamp and signature on every attempt; the webhook-id stays the same.
        headers = standard_webhooks_headers(secrets, delivery_id, int(time.time()), payload)
        headers["user-agent"] = "odr-gateway/0.1"
        started = time.monotonic()
        status_code: int | None = None
        error: str | None = None
        retry_after: int | None = None
        try:
            response = self.client.post(url, content=payload, headers=headers)
            status_code = response.status_code
            retry_after = parse_retry_after(response.headers.get("retry-after"), utcnow())
            if not 200 <= status_code < 300:
                error = f"HTTP {status_code}: {scrub(response.text[:300])}"
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {scrub(str(exc))[:300]}"
        duration_ms = int((time.monotonic() - started) * 1000)
        self._record(delivery_id, status_code, error, retry_after, duration_ms)

    def _record(
        self,
        delivery_id: str,
        status_code: int | None,
        error: str | None,
        retry_after: int | None,
        duration_ms: int,
    ) -> None:
        now = utcnow()
        with self.factory() as session, session.begin():
            delivery = session.get(OutboundDelivery, delivery_id)
            if delivery is None:
                return
            delivery.attempts += 1
            delivery.last_status_code = status_code
            delivery.last_error = error
            delivery.lease_until = None
            attempt = OutboundAttempt(
                delivery_id=delivery_id,
                attempt=delivery.attempts,
                attempted_at=now,
                status_code=status_code,
                error=error,
                retry_after_s=retry_after,
                duration_ms=duration_ms,
            )
            session.add(attempt)
            if status_code is not None and 200 <= status_code < 300:
                delivery.status = "delivered"
                delivery.delivered_at = now
                OUTBOUND_ATTEMPTS.labels("delivered").inc()
                return
            if status_code == 410:
                # Standard Webhooks: 410 Gone means the endpoint is gone; stop sending to it.
                platform = session.get(Platform, delivery.platform_id)
                if platform is not None:
                    platform.outbound_enabled = False
                    platform.outbound_disabled_reason = (
                        f"endpoint answered 410 at {now.isoformat()}"
                    )
                delivery.status = "disabled"
                session.execute(
                    update(OutboundDelivery)
                    .where(
                        OutboundDelivery.platform_id == delivery.platform_id,
                        OutboundDelivery.status == "pending",
                    )
                    .values(status="disabled")
                )
                OUTBOUND_ATTEMPTS.labels("gone").inc()
                log.warning(
                    "outbound endpoint disabled after 410",
                    extra={"platform_id": delivery.platform_id},
                )
                return
            delivery.schedule_step += 1
            delay = next_delay(
                delivery.schedule_step,
                scale=self.settings.outbound_schedule_scale,
                jitter=self.settings.outbound_jitter,
                retry_after_s=retry_after,
                rng=self.rng,
            )
            if delay is None:
                delivery.status = "failed"
                OUTBOUND_ATTEMPTS.labels("failed").inc()
                log.warning(
                    "outbound delivery failed after the whole schedule",
                    extra={"platform_id": delivery.platform_id, "delivery_id": delivery_id},
                )
                return
            OUTBOUND_ATTEMPTS.labels("retry").inc()
            delivery.status = "pending"
            delivery.next_attempt_at = due_at(now, delay)
            attempt.next_attempt_at = delivery.next_attempt_at

    def _finish(self, delivery_id: str, *, status: str, clear_lease: bool) -> None:
        with self.factory() as session, session.begin():
            delivery = session.get(OutboundDelivery, delivery_id)
            if delivery is not None:
                delivery.status = status
                if clear_lease:
                    delivery.lease_until = None


def list_deliveries(
    session: Session,
    platform_id: str,
    *,
    status: str | None,
    limit: int,
    before: datetime | None = None,
) -> list[tuple[OutboundDelivery, list[OutboundAttempt]]]:
    q = select(OutboundDelivery).where(OutboundDelivery.platform_id == platform_id)
    if status:
        q = q.where(OutboundDelivery.status == status)
    if before:
        q = q.where(OutboundDelivery.created_at < before)
    rows = list(
        session.execute(q.order_by(OutboundDelivery.created_at.desc()).limit(limit)).scalars()
    )
    attempts: dict[str, list[OutboundAttempt]] = {r.id: [] for r in rows}
    if rows:
        for a in session.execute(
            select(OutboundAttempt)
            .where(OutboundAttempt.delivery_id.in_(list(attempts)))
            .order_by(OutboundAttempt.id)
        ).scalars():
            attempts[a.delivery_id].append(a)
    return [(r, attempts[r.id]) for r in rows]


def replay_delivery(session: Session, platform_id: str, delivery_id: str) -> OutboundDelivery:
    """Send a delivery again now, with a fresh retry schedule (same webhook-id)."""
    delivery = session.get(OutboundDelivery, delivery_id)
    if delivery is None or delivery.platform_id != platform_id:
        raise not_found("delivery")
    platform = session.get(Platform, platform_id)
    if platform is None or not platform.outbound_enabled or not platform.outbound_url:
        raise Problem(
            409,
            "Conflict",
            "the platform's outbound endpoint is disabled or unset; "
            "PATCH /v1/platforms/{id} with outbound_enabled=true first",
        )
    if delivery.status == "delivering":
        raise Problem(409, "Conflict", "the delivery is being attempted right now")
    delivery.status = "pending"
    delivery.schedule_step = 0
    delivery.next_attempt_at = utcnow()
    delivery.lease_until = None
    return delivery


def delivery_json(delivery: OutboundDelivery, attempts: list[OutboundAttempt]) -> dict[str, Any]:
    return {
        "id": delivery.id,
        "event_id": delivery.event_id,
        "event_type": delivery.event_type,
        "case_id": delivery.case_id,
        "status": delivery.status,
        "attempts": delivery.attempts,
        "next_attempt_at": delivery.next_attempt_at.isoformat()
        if delivery.status in ("pending", "delivering")
        else None,
        "last_status_code": delivery.last_status_code,
        "last_error": delivery.last_error,
        "created_at": delivery.created_at.isoformat(),
        "delivered_at": delivery.delivered_at.isoformat() if delivery.delivered_at else None,
        "payload": json.loads(delivery.payload),
        "log": [
            {
                "attempt": a.attempt,
                "attempted_at": a.attempted_at.isoformat(),
                "status_code": a.status_code,
                "error": a.error,
                "retry_after_s": a.retry_after_s,
                "duration_ms": a.duration_ms,
                "next_attempt_at": a.next_attempt_at.isoformat() if a.next_attempt_at else None,
            }
            for a in attempts
        ],
    }
