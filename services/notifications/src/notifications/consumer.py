"""Notifications' Kafka handlers: event -> use case."""

from __future__ import annotations

from notifications.deliveries import record_command
from odr_shared.kafka import EventHandler

GROUP_ID = "notifications"


def handlers() -> dict[str, EventHandler]:
    return {"notification.send": record_command}
