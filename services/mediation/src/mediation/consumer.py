"""Mediation's Kafka handlers: cases.events -> use case."""

from __future__ import annotations

from pydantic import BaseModel
from sqlalchemy.orm import Session

from mediation import service
from mediation.settings import MediationSettings
from odr_shared.events import CaseEventV1, CloudEvent
from odr_shared.kafka import EventHandler

GROUP_ID = "mediation"
LEAVING_TYPES = ("case.resolved", "case.withdrawn", "case.closed")


def _case_data(event: CloudEvent[BaseModel]) -> CaseEventV1:
    data = event.data
    if not isinstance(data, CaseEventV1):
        raise TypeError(f"{event.type} carries {type(data).__name__}, not CaseEventV1")
    return data


def handlers(settings: MediationSettings) -> dict[str, EventHandler]:
    def escalated(session: Session, event: CloudEvent[BaseModel]) -> None:
        service.take_escalated_case(session, _case_data(event), event.time, settings)

    def accepted(session: Session, event: CloudEvent[BaseModel]) -> None:
        service.proposal_answered(session, _case_data(event), accepted=True)

    def rejected(session: Session, event: CloudEvent[BaseModel]) -> None:
        service.proposal_answered(session, _case_data(event), accepted=False)

    def left(session: Session, event: CloudEvent[BaseModel]) -> None:
        service.case_left(session, _case_data(event), event.type, settings)

    table: dict[str, EventHandler] = {
        "case.escalated": escalated,
        "case.proposal_accepted": accepted,
        "case.proposal_rejected": rejected,
    }
    for t in LEAVING_TYPES:
        table[t] = left
    return table
