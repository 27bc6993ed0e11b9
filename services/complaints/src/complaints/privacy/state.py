"""A data-subject request's record and the rules of its status (no I/O beyond the session).

Status: `received` (acknowledged, nothing done yet) -> `in_progress` (the worker is on it, or
waits for other services' reports) -> `completed`; `deferred` (with `reason` and `until`) while
the subject has an open case, or a service keeps a record a law requires it to keep.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from complaints.domain import HolidayCalendar
from complaints.models import CaseRecord, PrivacyRequest
from odr_shared.db import utcnow

KINDS = ("access", "erasure")
SOURCES = ("consumer", "platform", "admin")
STATUSES = ("received", "in_progress", "completed", "deferred")
OWN = "complaints"
OPEN_CASE = "open case"  # complaints' own deferral: the subject's case is not closed yet


def due_date(calendar: HolidayCalendar, at: datetime, working_days: int) -> datetime:
    """The end of the local day `working_days` working days after `at` (holidays skipped).

    A request is acknowledged the moment it is made (the law's 2 working days for the
    acknowledgement are met by design); its answer is due COMPLAINTS_PRIVACY_ANSWER_WORKING_DAYS
    (15) working days later on the complaints holiday calendar. That default is a setting, not
    a reading of Decree 356/2025: the operator checks it against the Decree for each kind of
    request (docs/privacy.md) and sets it there.
    """
    return calendar.deadline(at, working_days)


def new_request(
    session: Session,
    *,
    kind: str,
    subject_id: str | None,
    source: str,
    order_ids: list[str],
    case_ids: list[str],
    calendar: HolidayCalendar,
    answer_working_days: int,
    platform_id: str | None = None,
    requested_by: str | None = None,
    source_ref: str | None = None,
    now: datetime | None = None,
) -> PrivacyRequest:
    if kind not in KINDS or source not in SOURCES:
        raise ValueError(f"unknown request kind {kind!r} or source {source!r}")
    now = now or utcnow()
    req = PrivacyRequest(
        id=str(uuid.uuid4()),
        kind=kind,
        subject_id=subject_id,
        source=source,
        platform_id=platform_id,
        source_ref=source_ref,
        requested_by=requested_by,
        order_ids=sorted(set(order_ids)),
        case_ids=sorted(set(case_ids)),
        status="received",
        acknowledged_at=now,
        due_at=due_date(calendar, now, answer_working_days),
        reports={},
        needs_work=True,
        attempts=0,
        created_at=now,
        updated_at=now,
    )
    session.add(req)
    session.flush()
    return req


def record_report(
    req: PrivacyRequest,
    service: str,
    status: str,
    *,
    reason: str | None = None,
    until: datetime | None = None,
    counts: dict[str, int] | None = None,
    at: datetime | None = None,
) -> None:
    reports = dict(req.reports or {})
    reports[service] = {
        "status": status,
        "reason": reason,
        "until": until.isoformat() if until else None,
        "counts": dict(counts or {}),
        "at": (at or utcnow()).isoformat(),
    }
    req.reports = reports  # a new dict: the JSON column notices the change


def settle_erasure(req: PrivacyRequest, services: list[str], now: datetime | None = None) -> None:
    """An erasure completes when complaints and every other service reported it completed.

    Until then it is deferred if one of them deferred (the latest `until` of theirs, none if one
    of them gave none), else in progress.
    """
    now = now or utcnow()
    reports = req.reports or {}
    required = [OWN, *[s for s in services if s != OWN]]
    statuses = {s: (reports.get(s) or {}).get("status") for s in required}
    if all(v == "completed" for v in statuses.values()):
        req.status = "completed"
        req.reason = None
        req.until = None
        req.completed_at = req.completed_at or now
    elif any(v == "deferred" for v in statuses.values()):
        deferred = [reports[s] for s, v in statuses.items() if v == "deferred"]
        req.status = "deferred"
        reasons = [str(d.get("reason") or "deferred") for d in deferred]
        req.reason = "; ".join(dict.fromkeys(reasons))
        untils = [d.get("until") for d in deferred]
        req.until = (
            None
            if any(u is None for u in untils)
            else max(datetime.fromisoformat(str(u)) for u in untils)
        )
    else:
        req.status = "in_progress"
        req.reason = None
        req.until = None
    req.updated_at = now


def release_deferred_erasures(session: Session, rec: CaseRecord) -> list[str]:
    """The case `rec` just closed: erasures complaints deferred for its buyer may go ahead now.

    Called in the transaction that closes the case (service._save), so an erasure never waits
    on a case that is over. It goes back to the worker once the subject has no open case left.
    """
    if rec.subject_id is None:
        return []
    still_open = session.execute(
        select(CaseRecord.id).where(
            CaseRecord.subject_id == rec.subject_id,
            CaseRecord.open_order_id.is_not(None),
            CaseRecord.id != rec.id,
        )
    ).first()
    if still_open is not None:
        return []
    waiting = session.execute(
        select(PrivacyRequest)
        .where(
            PrivacyRequest.subject_id == rec.subject_id,
            PrivacyRequest.kind == "erasure",
            PrivacyRequest.status == "deferred",
        )
        .with_for_update()
    ).scalars()
    released: list[str] = []
    now = utcnow()
    for req in waiting:
        own = (req.reports or {}).get(OWN) or {}
        if own.get("status") != "deferred":
            continue  # deferred by another service: not this case's to lift
        reports = dict(req.reports)
        reports.pop(OWN)
        req.reports = reports
        req.status = "in_progress"
        req.reason = None
        req.until = None
        req.needs_work = True
        req.next_attempt_at = None
        req.updated_at = now
        released.append(req.id)
    return released


def summary(req: PrivacyRequest) -> dict[str, Any]:
    """The request as its owner and the operator see it (no personal data in it)."""
    return {
        "request_id": req.id,
        "kind": req.kind,
        "status": req.status,
        "source": req.source,
        "platform_id": req.platform_id,
        "acknowledged_at": req.acknowledged_at.isoformat(),
        "due_at": req.due_at.isoformat(),
        "completed_at": req.completed_at.isoformat() if req.completed_at else None,
        "reason": req.reason,
        "until": req.until.isoformat() if req.until else None,
        "services": {
            name: {k: v for k, v in report.items() if k in ("status", "reason", "until", "at")}
            for name, report in sorted((req.reports or {}).items())
        },
    }
