"""Object-level access: who may see a case or an order. Anything else answers 404."""

from __future__ import annotations

from collections.abc import Collection

from odr_shared.auth import Party


def can_see_order(party: Party, order_id: str, platform_id: str) -> bool:
    if party.role == "admin":
        return True
    if party.role == "consumer":
        return party.order_id == order_id
    if party.role == "platform":
        return party.platform_id == platform_id
    return False


def can_see_case(
    party: Party, *, order_id: str, platform_id: str, neutral_ids: Collection[str]
) -> bool:
    """Consumer: the order their token covers; platform: its own; neutral: assigned; admin: all."""
    if party.role in ("mediator", "arbitrator") or party.neutral_id:
        if party.role == "admin":
            return True
        return party.neutral_id is not None and party.neutral_id in neutral_ids
    return can_see_order(party, order_id, platform_id)


def party_side(party: Party) -> str | None:
    """The side of the dispute a caller speaks for (consumer or platform), if any."""
    if party.role in ("consumer", "platform"):
        return party.role
    return None
