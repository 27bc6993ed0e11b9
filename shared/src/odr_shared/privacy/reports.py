"""A service's answer to an erasure request, on privacy.events."""

from __future__ import annotations

from sqlalchemy.orm import Session

from odr_shared.events import PRIVACY_TOPIC, CloudEvent, ErasureReportedV1, build_event
from odr_shared.outbox import add_to_outbox


def report_erasure(
    session: Session, *, source: str, report: ErasureReportedV1
) -> CloudEvent[ErasureReportedV1]:
    """Queue `privacy.erasure_reported` in the caller's transaction, keyed by the subject.

    It carries no personal data (the subject id is a keyed hash), so there is nothing to seal.
    """
    event = build_event(
        source=source,
        event_type="privacy.erasure_reported",
        subject=report.subject_id,
        data=report,
    )
    add_to_outbox(session, PRIVACY_TOPIC, report.subject_id, event)
    return event
