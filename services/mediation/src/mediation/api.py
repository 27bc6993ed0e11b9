"""Mediation HTTP routes."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from mediation.cases import waiting_queue
from odr_shared.auth import AdminParty

router = APIRouter()


@router.get("/v1/queue", tags=["routing"])
def get_waiting_queue(request: Request, _admin: AdminParty) -> list[dict[str, Any]]:
    """Cases waiting for an eligible neutral (operator view)."""
    with request.app.state.sessions() as session:
        return waiting_queue(session)
