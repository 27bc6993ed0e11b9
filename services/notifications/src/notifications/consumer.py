"""Notifications' Kafka handlers: each event -> the deliveries it calls for, recorded once; an
erasure request -> the subject's data erased and the outcome reported (notifications.privacy)."""

from __future__ import annotations

import logging

from pydantic import BaseModel
from sqlalchemy.orm import Session

from notifications.deliveries import Notifier, record_event
from notifications.planner import MEDIATION_CONSUMER_TEMPLATES, NEUTRAL_TEMPLATES
from notifications.privacy import erase_subject, report_erasure
from odr_shared.events import CloudEvent, ErasureRequestedV1
from odr_shared.events.schemas import CASE_EVENT_TYPES, COMMAND_TYPES, ORDER_EVENT_TYPES
from odr_shared.kafka import EventHandler
from odr_shared.privacy import KeyStore, Opener

log = logging.getLogger(__name__)

GROUP_ID = "notifications"
ERASURE_REQUESTED = "privacy.erasure_requested"


def handlers(
    notifier: Notifier, store: KeyStore, opener: Opener | None = None
) -> dict[str, EventHandler]:
    def handle(session: Session, event: CloudEvent[BaseModel]) -> None:
        record_event(session, notifier, event)

    def erase(session: Session, event: CloudEvent[BaseModel]) -> None:
        request = event.data
        if not isinstance(request, ErasureRequestedV1):
            raise TypeError(f"{event.type} carries {type(request).__name__}")
        counts = erase_subject(session, notifier.cipher, store, request, clock=notifier.clock)
        report_erasure(session, request, counts)
        if opener is not None and request.platform_id is None:
            opener.forget(request.subject_id)
        log.info(
            "subject erased",
            extra={"request_id": request.request_id, "event_id": event.id, "counts": counts},
        )

    # Every case event keeps the case-contact projection current, even when nobody is told.
    types = [
        *ORDER_EVENT_TYPES,
        *CASE_EVENT_TYPES,
        *sorted(set(MEDIATION_CONSUMER_TEMPLATES) | set(NEUTRAL_TEMPLATES)),
        *COMMAND_TYPES,
    ]
    return {**dict.fromkeys(types, handle), ERASURE_REQUESTED: erase}
