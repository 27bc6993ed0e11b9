"""Complaints HTTP routes."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from complaints.orders import find_order, order_view
from odr_shared.auth import CurrentParty
from odr_shared.problems import Problem, not_found

router = APIRouter()


@router.get("/v1/orders/{order_code}", tags=["orders"])
def get_order(
    order_code: str, request: Request, party: CurrentParty, platform_id: str | None = None
) -> dict[str, Any]:
    """The order, its status history (buyer data masked). Others' orders answer 404."""
    if party.role == "consumer":
        scope_platform, _, scope_code = (party.order_id or "").partition(":")
        if scope_code != order_code or (platform_id and platform_id != scope_platform):
            raise not_found("order")
        platform_id = scope_platform
    elif party.role == "platform":
        if platform_id and platform_id != party.platform_id:
            raise not_found("order")
        platform_id = party.platform_id
    elif party.role == "admin":
        if platform_id is None:
            raise Problem(
                400,
                "Bad Request",
                "platform_id: required for an admin lookup",
                errors=[{"field": "platform_id", "reason": "required"}],
            )
    else:
        raise not_found("order")
    with request.app.state.sessions() as session:
        orders = find_order(session, platform_id, order_code)
        if not orders:
            raise not_found("order")
        return order_view(orders[0], request.app.state.cipher)
