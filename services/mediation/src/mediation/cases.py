"""Mediation's intake: a case escalated by complaints joins the routing queue."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.orm import Session

from mediation.models import MediationCase
from odr_shared.events import CaseEventV1, CloudEvent


def take_escalated_case(session: Session, event: CloudEvent[BaseModel]) -> None:
    data = event.data
    assert isinstance(data, CaseEventV1)
    if session.get(MediationCase, data.case_id) is not None:
        return
    session.add(
        MediationCase(
            case_id=data.case_id,
            reference=data.reference,
            platform_id=data.platform_id,
            seller_id=data.seller_id,
            category=data.category,
            language=data.language,
            claimed_amount=data.claimed_amount,
            state="waiting",
            escalated_at=event.time,
        )
    )


def waiting_queue(session: Session) -> list[dict[str, Any]]:
    rows = session.execute(
        select(MediationCase)
        .where(MediationCase.state == "waiting")
        .order_by(MediationCase.escalated_at)
    ).scalars()
    return [
        {
            "case_id": c.case_id,
            "reference": c.reference,
            "platform_id": c.platform_id,
            "category": c.category,
            "language": c.language,
            "escalated_at": c.escalated_at.isoformat(),
        }
        for c in rows
    ]
