"""Deliveries: a notification command becomes exactly one delivery per recipient and channel."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.orm import Session

from notifications.models import Delivery
from odr_shared.db import utcnow
from odr_shared.events import CloudEvent, NotificationCommandV1
from odr_shared.logs import mask_email, mask_phone
from odr_shared.phone import InvalidPhone, normalize_phone


def _recipient(command: NotificationCommandV1) -> str:
    if command.channel == "sms":
        raw = command.recipient.phone or ""
        try:
            return normalize_phone(raw)
        except InvalidPhone:
            return raw
    return (command.recipient.email or "").lower()


def record_command(session: Session, event: CloudEvent[BaseModel]) -> None:
    """Queue the delivery a command asks for; a redelivered command finds it already there."""
    command = event.data
    assert isinstance(command, NotificationCommandV1)
    recipient = _recipient(command)
    exists = session.execute(
        select(Delivery.id).where(
            Delivery.event_id == event.id,
            Delivery.recipient == recipient,
            Delivery.channel == command.channel,
        )
    ).first()
    if exists:
        return
    session.add(
        Delivery(
            channel=command.channel,
            recipient=recipient,
            template=command.template,
            language=command.recipient.language,
            body="",
            status="pending",
            attempts=0,
            event_id=event.id,
            case_id=command.case_id,
            created_at=utcnow(),
        )
    )


def list_deliveries(
    session: Session,
    *,
    recipient: str | None,
    case_id: str | None,
    channel: str | None,
    reveal_contacts: bool,
    limit: int = 200,
) -> list[dict[str, Any]]:
    q = select(Delivery).order_by(Delivery.id.desc()).limit(limit)
    if recipient:
        try:
            recipient = normalize_phone(recipient)
        except InvalidPhone:
            recipient = recipient.lower()
        q = q.where(Delivery.recipient == recipient)
    if case_id:
        q = q.where(Delivery.case_id == case_id)
    if channel:
        q = q.where(Delivery.channel == channel)
    out = []
    for d in session.execute(q).scalars():
        shown = d.recipient
        if not reveal_contacts:
            shown = mask_email(shown) if "@" in shown else mask_phone(shown)
        out.append(
            {
                "id": d.id,
                "channel": d.channel,
                "recipient": shown,
                "template": d.template,
                "language": d.language,
                "body": d.body,
                "status": d.status,
                "attempts": d.attempts,
                "event_id": d.event_id,
                "case_id": d.case_id,
                "created_at": d.created_at.isoformat(),
                "sent_at": d.sent_at.isoformat() if d.sent_at else None,
            }
        )
    return out
