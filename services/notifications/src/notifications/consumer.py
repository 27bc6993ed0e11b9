"""Notifications' Kafka handlers: each event -> the deliveries it calls for, recorded once."""

from __future__ import annotations

from pydantic import BaseModel
from sqlalchemy.orm import Session

from notifications.deliveries import Notifier, record_event
from notifications.planner import MEDIATION_CONSUMER_TEMPLATES, NEUTRAL_TEMPLATES
from odr_shared.events import CloudEvent
from odr_shared.events.schemas import CASE_EVENT_TYPES, COMMAND_TYPES, ORDER_EVENT_TYPES
from odr_shared.kafka import EventHandler

GROUP_ID = "notifications"


def handlers(notifier: Notifier) -> dict[str, EventHandler]:
    def handle(session: Session, event: CloudEvent[BaseModel]) -> None:
        record_event(session, notifier, event)

    # Every case event keeps the case-contact projection current, even when nobody is told.
    types = [
        *ORDER_EVENT_TYPES,
        *CASE_EVENT_TYPES,
        *sorted(set(MEDIATION_CONSUMER_TEMPLATES) | set(NEUTRAL_TEMPLATES)),
        *COMMAND_TYPES,
    ]
    return dict.fromkeys(types, handle)
