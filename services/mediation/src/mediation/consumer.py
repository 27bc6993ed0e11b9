"""Mediation's Kafka handlers: event -> use case."""

from __future__ import annotations

from mediation.cases import take_escalated_case
from odr_shared.kafka import EventHandler

GROUP_ID = "mediation"


def handlers() -> dict[str, EventHandler]:
    return {"case.escalated": take_escalated_case}
