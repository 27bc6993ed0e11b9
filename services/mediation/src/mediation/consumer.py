"""Mediation's Kafka handlers: cases.events and privacy.events -> use case.

Mediation reads personal fields of cases.events: the consumer's contact (kept masked for the
neutrals), the desired outcome, the escalation's reason (the case's first timeline entry) and
`details` (which proposal a party answered). So its consumer opens sealed (v2) events with an
`Opener` (mediation.worker); a v2 event whose key was destroyed (the buyer was erased) reaches
these handlers without them, and they still work: a case taken in with no contact, an answer
with no proposal id changes nothing.
"""

from __future__ import annotations

from pydantic import BaseModel
from sqlalchemy.orm import Session

from mediation import privacy, service
from mediation.settings import MediationSettings
from odr_shared.events import CaseEventV1, CloudEvent, ErasureRequestedV1
from odr_shared.kafka import EventHandler
from odr_shared.privacy import KeyStore, Opener

GROUP_ID = "mediation"
LEAVING_TYPES = ("case.resolved", "case.withdrawn", "case.closed")


def _case_data(event: CloudEvent[BaseModel]) -> CaseEventV1:
    data = event.data
    if not isinstance(data, CaseEventV1):
        raise TypeError(f"{event.type} carries {type(data).__name__}, not CaseEventV1")
    return data


def handlers(
    settings: MediationSettings, store: KeyStore | None = None, opener: Opener | None = None
) -> dict[str, EventHandler]:
    keys = store or KeyStore.from_settings(settings)

    def escalated(session: Session, event: CloudEvent[BaseModel]) -> None:
        service.take_escalated_case(session, _case_data(event), event.time, settings)

    def accepted(session: Session, event: CloudEvent[BaseModel]) -> None:
        service.proposal_answered(session, _case_data(event), accepted=True)

    def rejected(session: Session, event: CloudEvent[BaseModel]) -> None:
        service.proposal_answered(session, _case_data(event), accepted=False)

    def left(session: Session, event: CloudEvent[BaseModel]) -> None:
        service.case_left(session, _case_data(event), event.type, settings)

    def erasure_requested(session: Session, event: CloudEvent[BaseModel]) -> None:
        data = event.data
        if not isinstance(data, ErasureRequestedV1):
            raise TypeError(f"{event.type} carries {type(data).__name__}")
        privacy.erase(session, data, settings, keys)
        if opener is not None:
            opener.forget(data.subject_id)

    table: dict[str, EventHandler] = {
        "case.escalated": escalated,
        "case.proposal_accepted": accepted,
        "case.proposal_rejected": rejected,
        "privacy.erasure_requested": erasure_requested,
    }
    for t in LEAVING_TYPES:
        table[t] = left
    return table
