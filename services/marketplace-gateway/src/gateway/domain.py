"""Pure gateway rules: order updates and their merge, the outbound retry schedule, redaction."""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from odr_shared.events import Buyer, OrderItem, OrderStatus, Seller

PLATFORM_KINDS = ("standard", "shopee", "lazada", "tiktok", "shopify", "haravan", "sapo")


class MappingError(Exception):
    """A body the gateway cannot map: 400 (not JSON) or 422 (a field is wrong or missing)."""

    def __init__(self, errors: list[dict[str, str]], http_status: int = 422) -> None:
        first = errors[0] if errors else {"field": "body", "reason": "invalid"}
        super().__init__(f"{first['field']}: {first['reason']}")
        self.errors = errors
        self.http_status = http_status


def field_error(field_name: str, reason: str, http_status: int = 422) -> MappingError:
    return MappingError([{"field": field_name, "reason": reason}], http_status)


@dataclass(frozen=True)
class OrderUpdate:
    """What one marketplace event says about one order; absent parts come from the snapshot."""

    order_code: str
    status: OrderStatus
    status_at: datetime
    event_key: str  # the marketplace's identity of this event: the same event twice = one effect
    buyer: Buyer | None = None
    seller: Seller | None = None
    items: list[OrderItem] | None = None
    total_amount: int | None = None
    currency: str | None = None


@dataclass(frozen=True)
class Redaction:
    """A marketplace's data-subject request about one of its buyers (Shopify's mandatory
    `customers/redact` and `customers/data_request`, the standard kind's `customer.redact`).

    `order_refs` are the marketplace's references of the orders concerned: its order ids or the
    order codes buyers see; the gateway resolves them to its orders and their data subject.
    """

    kind: str  # "erasure" | "access"
    phone: str | None = None
    email: str | None = None
    customer_ref: str | None = None
    order_refs: tuple[str, ...] = ()


@dataclass(frozen=True)
class Mapping:
    """An adapter's reading of one delivery."""

    delivery_key: str
    updates: list[OrderUpdate] = field(default_factory=list)
    ignored: str | None = None  # why the delivery carries nothing the platform tracks
    redaction: Redaction | None = None  # a data-subject request instead of order updates


def body_digest(body: bytes) -> str:
    return "sha256:" + hashlib.sha256(body).hexdigest()


def event_key(*parts: object) -> str:
    """A bounded key for a marketplace event (order code, status, time ...)."""
    raw = "|".join(str(p) for p in parts)
    if len(raw) <= 180:
        return raw
    return "sha256:" + hashlib.sha256(raw.encode()).hexdigest()


@dataclass(frozen=True)
class KnownOrder:
    """The gateway's order snapshot, possibly incomplete (a push arrived before the order)."""

    order_code: str
    status: OrderStatus
    status_at: datetime
    buyer: Buyer | None = None
    seller: Seller | None = None
    items: list[OrderItem] | None = None
    total_amount: int | None = None
    currency: str | None = None

    @property
    def complete(self) -> bool:
        return self.buyer is not None and self.seller is not None and self.total_amount is not None

    def missing(self) -> list[str]:
        names = []
        if self.buyer is None:
            names.append("buyer")
        if self.seller is None:
            names.append("seller")
        if self.total_amount is None:
            names.append("total_amount")
        return names


@dataclass(frozen=True)
class MergeResult:
    order: KnownOrder
    stale: bool  # the update is older than what is known: it changes nothing


def merge(known: KnownOrder | None, update: OrderUpdate) -> MergeResult:
    """Newest status wins; every other part the update carries replaces the known one."""
    if known is None:
        return MergeResult(
            KnownOrder(
                order_code=update.order_code,
                status=update.status,
                status_at=update.status_at,
                buyer=update.buyer,
                seller=update.seller,
                items=update.items,
                total_amount=update.total_amount,
                currency=update.currency,
            ),
            stale=False,
        )
    newer = update.status_at >= known.status_at
    merged = replace(
        known,
        status=update.status if newer else known.status,
        status_at=update.status_at if newer else known.status_at,
        buyer=update.buyer or known.buyer,
        seller=update.seller or known.seller,
        items=update.items if update.items is not None else known.items,
        total_amount=(
            update.total_amount if update.total_amount is not None else known.total_amount
        ),
        currency=update.currency or known.currency,
    )
    # An old status that arrives late is stale only if the order was already publishable:
    # for a held order it still completes the picture.
    return MergeResult(merged, stale=not newer and known.complete)


# Standard Webhooks' recommended schedule: the first attempt at once, then these delays.
RETRY_SCHEDULE_S: tuple[int, ...] = (
    0,
    5,
    5 * 60,
    30 * 60,
    2 * 3600,
    5 * 3600,
    10 * 3600,
    14 * 3600,
    20 * 3600,
    24 * 3600,
)
MAX_RETRY_AFTER_S = 24 * 3600


def next_delay(
    step: int,
    *,
    scale: float = 1.0,
    jitter: float = 0.1,
    retry_after_s: int | None = None,
    rng: random.Random | None = None,
) -> float | None:
    """Seconds until attempt number `step` (0-based), or None once the schedule is spent.

    Jitter spreads retries of many deliveries that failed together; a Retry-After from the
    platform is a floor (never retry earlier than it asks, capped at a day).
    """
    if step >= len(RETRY_SCHEDULE_S):
        return None
    base = RETRY_SCHEDULE_S[step] * scale
    spread = (rng or random).uniform(0, jitter) * base if base else 0.0
    delay = base + spread
    if retry_after_s is not None:
        delay = max(delay, float(min(retry_after_s, MAX_RETRY_AFTER_S)))
    return delay


def due_at(now: datetime, delay_s: float) -> datetime:
    return now + timedelta(seconds=delay_s)


def parse_retry_after(value: str | None, now: datetime) -> int | None:
    """Retry-After as seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return int(value)
    from email.utils import parsedate_to_datetime

    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0, int((when - now).total_seconds()))


def redact_for_platform(payload: dict[str, Any]) -> dict[str, Any]:
    """What a platform may see of a case or mediation event: no consumer or neutral contact,
    and not the consumer's data subject id (a pseudonym that would link a buyer across
    marketplaces)."""
    out = dict(payload)
    out.pop("subject_id", None)
    consumer = out.pop("consumer", None)
    if isinstance(consumer, dict) and consumer.get("language"):
        out["consumer"] = {"language": consumer["language"]}
    neutral = out.pop("neutral_contact", None)
    if isinstance(neutral, dict):
        out["neutral_contact"] = {
            k: neutral[k] for k in ("name", "language") if neutral.get(k) is not None
        }
    return out
