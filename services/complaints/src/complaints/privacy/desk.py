"""The privacy desk: the worker part that carries data-subject requests out, a few per round.

- erasure: complaints erases its own data of the subject and destroys the subject's keys in one
  transaction, which also queues `privacy.erasure_requested` for the other services; their
  `privacy.erasure_reported` complete it (complaints.privacy.handlers). While the subject has an
  open case complaints erases nothing and the request is `deferred` (reason "open case", until
  the merchant's deadline when known); closing the last case gives it back to the desk
  (complaints.privacy.state.release_deferred_erasures).
- access: complaints' own export plus each other service's (`POST /internal/v1/privacy/export`
  with a service token), assembled into one JSON document stored encrypted until it expires. A
  service that does not answer is asked again later (backoff up to PRIVACY_RETRY_MAX_S).
"""

from __future__ import annotations

import json
import logging
import threading
from datetime import timedelta
from typing import Any

import httpx
from sqlalchemy import or_, select

from complaints.models import PrivacyExport, PrivacyRequest
from complaints.privacy import data
from complaints.privacy.state import OPEN_CASE, OWN, record_report, settle_erasure
from complaints.service import SOURCE, Deps
from odr_shared.auth import ServiceTokens
from odr_shared.db import utcnow
from odr_shared.events import PRIVACY_TOPIC, ErasureRequestedV1, build_event
from odr_shared.outbox import add_to_outbox
from odr_shared.worker import Stoppable

log = logging.getLogger(__name__)
NOTHING_HELD = "nothing held: the buyer is unknown"


class ServiceUnavailable(Exception):
    """Another service did not give its part of an export; the request is tried again later."""


def service_url(deps: Deps, name: str) -> str:
    try:
        return deps.settings.service_url(name)
    except KeyError as exc:
        raise ServiceUnavailable(str(exc)) from exc


def work_once(deps: Deps, http: httpx.Client | None = None) -> int:
    """Take the requests that need work (the earliest due first); how many were worked on."""
    now = utcnow()
    with deps.sessions() as session:
        ids = list(
            session.execute(
                select(PrivacyRequest.id)
                .where(
                    PrivacyRequest.needs_work.is_(True),
                    or_(
                        PrivacyRequest.next_attempt_at.is_(None),
                        PrivacyRequest.next_attempt_at <= now,
                    ),
                )
                .order_by(PrivacyRequest.due_at)
                .limit(deps.settings.privacy_batch_size)
            ).scalars()
        )
    for request_id in ids:
        try:
            process(deps, request_id, http)
        except Exception as exc:  # noqa: BLE001 - one request's failure must not stop the others
            _failed(deps, request_id, exc)
    return len(ids)


def process(deps: Deps, request_id: str, http: httpx.Client | None = None) -> None:
    with deps.sessions() as session:
        req = session.get(PrivacyRequest, request_id)
        kind = req.kind if req is not None else None
    if kind == "erasure":
        _erase(deps, request_id)
    elif kind == "access":
        _export(deps, request_id, http)


def _failed(deps: Deps, request_id: str, exc: Exception) -> None:
    log.warning(
        "privacy request failed; trying again later",
        extra={"request_id": request_id, "error": f"{type(exc).__name__}: {exc}"},
    )
    with deps.sessions.begin() as session:
        req = session.get(PrivacyRequest, request_id, with_for_update=True)
        if req is None:
            return
        req.attempts += 1
        req.last_error = f"{type(exc).__name__}: {exc}"[:2000]
        wait = min(deps.settings.privacy_retry_max_s, 5.0 * 2 ** min(req.attempts, 10))
        req.next_attempt_at = utcnow() + timedelta(seconds=wait)
        if req.status == "received":
            req.status = "in_progress"
        req.updated_at = utcnow()


# --------------------------------------------------------------------------- erasure


def _erase(deps: Deps, request_id: str) -> None:
    services = deps.settings.privacy_service_names
    with deps.sessions.begin() as session:
        req = session.get(PrivacyRequest, request_id, with_for_update=True)
        if req is None or not req.needs_work:
            return
        found = data.scope(
            session,
            req.subject_id,
            platform_id=req.platform_id,
            order_ids=req.order_ids,
            lock=True,
        )
        req.order_ids = sorted(set(req.order_ids) | set(found.order_ids))
        req.case_ids = sorted(set(req.case_ids) | set(found.case_ids))
        req.needs_work = False
        req.next_attempt_at = None
        if not req.subject_id and not req.order_ids:
            # A marketplace named a buyer no service can know (no subject, no orders): nothing
            # is held about them anywhere, so nothing to ask of anyone.
            for name in [OWN, *services]:
                record_report(req, name, "completed", reason=NOTHING_HELD)
            settle_erasure(req, services)
            return
        if found.open_cases:
            until = data.deferral_until(found.open_cases)
            record_report(req, OWN, "deferred", reason=OPEN_CASE, until=until)
            settle_erasure(req, services)
            log.info("erasure deferred: open case", extra={"request_id": req.id})
            return
        erased = data.erase(session, found)
        destroyed = 0
        if req.subject_id and not (
            req.platform_id and data.other_orders_remain(session, req.subject_id)
        ):
            destroyed = deps.keys.destroy(session, req.subject_id)
        record_report(req, OWN, "completed", counts={**erased.counts, "keys": destroyed})
        if services:
            event = build_event(
                source=SOURCE,
                event_type="privacy.erasure_requested",
                subject=req.subject_id or req.id,
                data=ErasureRequestedV1(
                    request_id=req.id,
                    subject_id=req.subject_id or "",
                    platform_id=req.platform_id,
                    order_ids=req.order_ids,
                    case_ids=req.case_ids,
                    requested_at=req.acknowledged_at,
                ),
            )
            add_to_outbox(session, PRIVACY_TOPIC, req.subject_id or req.id, event)
        settle_erasure(req, services)
        storage_keys = erased.storage_keys
    # The rows are gone for good: now the files (a crash here leaves orphans the purge sweeps).
    for key in storage_keys:
        try:
            deps.storage.delete(key)
        except (OSError, ValueError) as exc:
            log.warning("evidence file not deleted", extra={"key": key, "error": str(exc)})
    log.info("erasure done in complaints", extra={"request_id": request_id})


# --------------------------------------------------------------------------- access


def _export(deps: Deps, request_id: str, http: httpx.Client | None) -> None:
    now = utcnow()
    with deps.sessions.begin() as session:
        req = session.get(PrivacyRequest, request_id, with_for_update=True)
        if req is None or not req.needs_work:
            return
        if req.next_attempt_at is not None and req.next_attempt_at > now:
            return  # another worker holds it (its lease below) or it waits for a retry
        # A lease: another replica's desk leaves it alone while this one asks the services.
        asks = len(deps.settings.privacy_service_names) + 1
        req.next_attempt_at = now + timedelta(seconds=deps.settings.privacy_http_timeout_s * asks)
        if req.status == "received":
            req.status = "in_progress"
        req.updated_at = now
    with deps.sessions() as session:
        req = session.get(PrivacyRequest, request_id)
        assert req is not None
        found = data.scope(
            session, req.subject_id, platform_id=req.platform_id, order_ids=req.order_ids
        )
        subject_id = req.subject_id
        order_ids, case_ids = found.order_ids, found.case_ids
        own = data.export(session, deps.cipher, found, subject_id)
    parts: dict[str, Any] = {
        OWN: {
            "service": OWN,
            "subject_id": subject_id,
            "generated_at": now.isoformat(),
            "records": own,
        }
    }
    body = {"subject_id": subject_id, "order_ids": order_ids, "case_ids": case_ids}
    # The services find a person by their subject; without one (a marketplace asked about a
    # buyer already erased, or never known) nobody can hold anything about them: their parts
    # are empty rather than a request each refuses.
    if subject_id:
        for name in deps.settings.privacy_service_names:
            parts[name] = _ask(deps, http, name, body)
    document = {
        "request_id": request_id,
        "subject_id": subject_id,
        "generated_at": now.isoformat(),
        "order_ids": order_ids,
        "case_ids": case_ids,
        "services": parts,
    }
    blob = deps.cipher.encrypt_bytes(json.dumps(document, ensure_ascii=False).encode())
    expires = utcnow() + timedelta(days=deps.settings.privacy_export_ttl_days)
    with deps.sessions.begin() as session:
        req = session.get(PrivacyRequest, request_id, with_for_update=True)
        if req is None or not req.needs_work:
            return
        existing = session.get(PrivacyExport, request_id)
        if existing is not None:
            session.delete(existing)
            session.flush()
        session.add(
            PrivacyExport(
                request_id=request_id,
                export_enc=blob,
                size=len(blob),
                created_at=utcnow(),
                expires_at=expires,
            )
        )
        for name, part in parts.items():
            records = part.get("records") or {}
            counts = {k: len(v) for k, v in records.items() if isinstance(v, list)}
            record_report(req, name, "completed", counts=counts)
        req.order_ids = sorted(set(req.order_ids) | set(order_ids))
        req.case_ids = sorted(set(req.case_ids) | set(case_ids))
        req.export_expires_at = expires
        req.status = "completed"
        req.completed_at = utcnow()
        req.needs_work = False
        req.next_attempt_at = None
        req.last_error = None
        req.updated_at = utcnow()
    log.info("access export ready", extra={"request_id": request_id})


def _ask(deps: Deps, http: httpx.Client | None, name: str, body: dict[str, Any]) -> dict[str, Any]:
    url = f"{service_url(deps, name)}/internal/v1/privacy/export"
    headers = ServiceTokens(deps.settings, OWN).headers()
    client = http or httpx.Client(timeout=deps.settings.privacy_http_timeout_s)
    try:
        r = client.post(url, json=body, headers=headers)
    except httpx.HTTPError as exc:
        raise ServiceUnavailable(f"{name}: {type(exc).__name__}: {exc}") from exc
    finally:
        if http is None:
            client.close()
    if r.status_code != 200:
        raise ServiceUnavailable(f"{name}: HTTP {r.status_code}")
    part: dict[str, Any] = r.json()
    if part.get("subject_id") not in (None, body["subject_id"]):
        raise ServiceUnavailable(f"{name}: answered for another subject")
    return part


class PrivacyDesk(Stoppable):
    """The worker part: `work_once` every PRIVACY_POLL_INTERVAL_S."""

    def __init__(self, deps: Deps, interval_s: float | None = None) -> None:
        self.deps = deps
        self.interval_s = interval_s or deps.settings.privacy_poll_interval_s
        self._stop = threading.Event()

    def run(self) -> None:
        with httpx.Client(timeout=self.deps.settings.privacy_http_timeout_s) as http:
            while not self._stop.is_set():
                try:
                    work_once(self.deps, http)
                except Exception as exc:  # noqa: BLE001 - a database hiccup must not stop it
                    log.warning("privacy desk round failed", extra={"error": str(exc)})
                self._stop.wait(self.interval_s)

    def stop(self) -> None:
        self._stop.set()
