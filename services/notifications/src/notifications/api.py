"""Notifications HTTP routes."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Request

from notifications.deliveries import list_deliveries
from odr_shared.auth import AdminParty

router = APIRouter()


@router.get("/v1/deliveries", tags=["deliveries"])
def get_deliveries(
    request: Request,
    _admin: AdminParty,
    recipient: str | None = None,
    case_id: str | None = None,
    channel: Literal["sms", "email"] | None = None,
) -> list[dict[str, Any]]:
    with request.app.state.sessions() as session:
        return list_deliveries(
            session, recipient=recipient, case_id=case_id, channel=channel, reveal_contacts=True
        )
