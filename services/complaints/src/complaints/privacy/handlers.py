"""privacy.events for complaints: the other services' erasure reports, a marketplace's redaction."""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import partial

from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.orm import Session

from complaints.models import Order, PrivacyRequest
from complaints.privacy import data
from complaints.privacy.state import OWN, new_request, record_report, settle_erasure
from complaints.service import Deps
from odr_shared.events import CloudEvent, ErasureReportedV1, RedactionRequestedV1, order_id
from odr_shared.kafka import EventHandler

log = logging.getLogger(__name__)


def on_erasure_reported(
    session: Session,
    event: CloudEvent[BaseModel],
    deps: Deps,
    forget: Callable[[str], None] | None = None,
) -> None:
    """Record one service's report; the request completes when every service completed.

    A service that erased has destroyed its keys of the subject: `forget` drops what the
    worker's opener still caches of them, so no later event of theirs is opened from memory.
    """
    report = event.data
    assert isinstance(report, ErasureReportedV1)
    if forget is not None and report.status == "completed":
        forget(report.subject_id)
    req = session.get(PrivacyRequest, report.request_id, with_for_update=True)
    if req is None or req.kind != "erasure":
        log.warning(
            "erasure report for an unknown request", extra={"request_id": report.request_id}
        )
        return
    if report.service == OWN:
        return  # complaints records its own part when it does it
    record_report(
        req,
        report.service,
        report.status,
        reason=report.reason,
        until=report.until,
        counts=report.counts,
        at=event.time,
    )
    if (req.reports or {}).get(OWN, {}).get("status") == "completed":
        settle_erasure(req, deps.settings.privacy_service_names)


def _order_ids(platform_id: str, ids: list[str]) -> list[str]:
    """A marketplace names its orders by code; complaints by `{platform_id}:{code}`."""
    prefix = f"{platform_id}:"
    return [i if i.startswith(prefix) else order_id(platform_id, i) for i in ids]


def on_redaction_requested(session: Session, event: CloudEvent[BaseModel], deps: Deps) -> None:
    """A marketplace asked (Shopify customers/redact or data_request, standard customer.redact):
    a request scoped to that platform's copies of its buyer."""
    asked = event.data
    assert isinstance(asked, RedactionRequestedV1)
    if asked.source_delivery_id:
        seen = session.execute(
            select(PrivacyRequest.id).where(
                PrivacyRequest.source == "platform",
                PrivacyRequest.platform_id == asked.platform_id,
                PrivacyRequest.source_ref == asked.source_delivery_id,
            )
        ).first()
        if seen is not None:
            return
    ids = _order_ids(asked.platform_id, list(asked.order_ids))
    subject_id = asked.subject_id
    if subject_id is None and ids:
        subject_id = session.execute(
            select(Order.subject_id)
            .where(Order.id.in_(ids), Order.subject_id.is_not(None))
            .order_by(Order.id)
            .limit(1)
        ).scalar_one_or_none()
    found = data.scope(session, subject_id, platform_id=asked.platform_id, order_ids=ids)
    req = new_request(
        session,
        kind=asked.kind,
        subject_id=subject_id,
        source="platform",
        platform_id=asked.platform_id,
        order_ids=[*ids, *found.order_ids],
        case_ids=found.case_ids,
        calendar=deps.calendar,
        answer_working_days=deps.settings.privacy_answer_working_days,
        requested_by=f"platform:{asked.platform_id}",
        source_ref=asked.source_delivery_id,
    )
    log.info(
        "privacy request from a marketplace",
        extra={"request_id": req.id, "platform_id": asked.platform_id, "kind": asked.kind},
    )


def handlers(deps: Deps, forget: Callable[[str], None] | None = None) -> dict[str, EventHandler]:
    return {
        "privacy.erasure_reported": partial(on_erasure_reported, deps=deps, forget=forget),
        "privacy.redaction_requested": partial(on_redaction_requested, deps=deps),
    }
