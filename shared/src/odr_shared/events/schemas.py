"""Versioned payloads of the platform's topics.

Payloads ignore unknown fields (a newer producer may add some). A breaking change gets a new
model registered under the next version; consumers read both until producers have moved.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from odr_shared.events.envelope import register

ORDERS_TOPIC = "orders.events"
CASES_TOPIC = "cases.events"
MEDIATION_TOPIC = "mediation.events"
NOTIFICATIONS_TOPIC = "notifications.commands"
PRIVACY_TOPIC = "privacy.events"
TOPICS = (ORDERS_TOPIC, CASES_TOPIC, MEDIATION_TOPIC, NOTIFICATIONS_TOPIC, PRIVACY_TOPIC)


def dead_letter_topic(topic: str) -> str:
    return f"{topic}.dlq"


def order_id(platform_id: str, order_code: str) -> str:
    """The order aggregate id and the Kafka key of its events."""
    return f"{platform_id}:{order_code}"


class _Payload(BaseModel):
    model_config = ConfigDict(extra="ignore")


class OrderStatus(StrEnum):
    CREATED = "created"
    PAID = "paid"
    READY_TO_SHIP = "ready_to_ship"
    SHIPPED = "shipped"
    DELIVERED = "delivered"
    COMPLETED = "completed"
    CANCELLED = "cancelled"
    RETURN_REQUESTED = "return_requested"
    RETURNED = "returned"
    REFUNDED = "refunded"


class Buyer(_Payload):
    name: str = Field(min_length=1, max_length=200)
    phone: str = Field(min_length=6, max_length=20)
    email: str | None = Field(None, max_length=254)


class Seller(_Payload):
    id: str = Field(min_length=1, max_length=100)
    name: str = Field(min_length=1, max_length=200)


class OrderItem(_Payload):
    sku: str = Field(min_length=1, max_length=100)
    name: str = Field(min_length=1, max_length=500)
    quantity: int = Field(ge=1)
    unit_price: int = Field(ge=0, description="integer đồng")


class Money(_Payload):
    amount: int = Field(ge=0)
    currency: str = Field("VND", min_length=3, max_length=3)


class OrderStatusChangedV1(_Payload):
    """orders.events `order.status_changed` v1: a full snapshot of the order after the change."""

    order_id: str
    platform_id: str
    platform_kind: str = "standard"
    order_code: str = Field(min_length=1, max_length=100)
    status: OrderStatus
    status_at: datetime
    buyer: Buyer
    seller: Seller
    items: list[OrderItem] = Field(default_factory=list)
    total_amount: int = Field(ge=0)
    currency: str = Field("VND", min_length=3, max_length=3)
    delivery_id: str | None = Field(None, description="the gateway's inbound delivery id")
    status_notifications: bool = Field(
        False, description="the platform turned on order-status messages to buyers"
    )
    subject_id: str | None = Field(
        None, description="the data subject the personal fields belong to (odr_shared.privacy)"
    )


class CaseStatus(StrEnum):
    AWAITING_MERCHANT = "awaiting_merchant"
    NEGOTIATING = "negotiating"
    RESOLVED = "resolved"
    ESCALATED = "escalated"
    IN_MEDIATION = "in_mediation"
    IN_ARBITRATION = "in_arbitration"
    DECIDED = "decided"
    CLOSED = "closed"
    WITHDRAWN = "withdrawn"


class Actor(_Payload):
    role: Literal["consumer", "platform", "mediator", "arbitrator", "admin", "system"]
    id: str | None = None


class Contact(_Payload):
    name: str | None = None
    phone: str | None = None
    email: str | None = None
    language: str = "vi"


class CaseEventV1(_Payload):
    """cases.events payload (every `case.*` type), v1: the case as it stands after the event."""

    case_id: str
    reference: str
    order_id: str
    platform_id: str
    order_code: str
    seller_id: str | None = None
    status: CaseStatus
    previous_status: CaseStatus | None = None
    category: str
    language: str = "vi"
    claimed_amount: int | None = Field(None, ge=0)
    currency: str = "VND"
    desired_outcome: str | None = None
    actor: Actor
    reason: str | None = None
    merchant_response_due_at: datetime | None = None
    consumer: Contact = Field(default_factory=Contact)
    details: dict[str, Any] = Field(default_factory=dict)
    subject_id: str | None = Field(
        None, description="the data subject the personal fields belong to (odr_shared.privacy)"
    )


class MediationEventV1(_Payload):
    """mediation.events payload (assignment, proposal, escalation, decision), v1."""

    case_id: str
    platform_id: str | None = None
    neutral_id: str | None = None
    neutral_role: Literal["mediator", "arbitrator"] | None = None
    neutral_ids: list[str] = Field(default_factory=list, description="an arbitration panel")
    assignment_id: str | None = None
    actor: Actor
    reason: str | None = None
    proposal: dict[str, Any] | None = None
    decision: dict[str, Any] | None = None
    neutral_contact: Contact | None = None
    details: dict[str, Any] = Field(default_factory=dict)
    subject_id: str | None = Field(
        None, description="the data subject the personal fields belong to (odr_shared.privacy)"
    )


class NotificationCommandV1(_Payload):
    """notifications.commands `notification.send` v1: send one templated message now."""

    template: str = Field(min_length=1)
    channel: Literal["sms", "email"]
    recipient: Contact
    params: dict[str, Any] = Field(default_factory=dict)
    urgent: bool = False
    case_id: str | None = None
    order_id: str | None = None
    subject_id: str | None = Field(
        None, description="the data subject the personal fields belong to (odr_shared.privacy)"
    )


# An event type names one schema across all topics, so no two topics reuse a type.
ORDER_EVENT_TYPES = ("order.status_changed",)
CASE_EVENT_TYPES = (
    "case.opened",
    "case.message_posted",
    "case.evidence_added",
    "case.offer_made",
    "case.offer_accepted",
    "case.offer_rejected",
    "case.proposal_accepted",
    "case.proposal_rejected",
    "case.merchant_responded",
    "case.deadline_missed",
    "case.escalated",
    "case.mediation_started",
    "case.arbitration_started",
    "case.resolved",
    "case.decided",
    "case.withdrawn",
    "case.closed",
)
MEDIATION_EVENT_TYPES = (
    "case.assigned",
    "case.queued",
    "case.reassigned",
    "mediation.proposal_made",
    "mediation.message_posted",
    "case.referred_to_arbitration",
    "arbitration.decided",
)
COMMAND_TYPES = ("notification.send",)


class Sealed(_Payload):
    """Personal fields encrypted under one data subject's key (odr_shared.privacy)."""

    kid: str = Field(min_length=1, max_length=64, description="the subject key's id")
    owner: str = Field(min_length=1, max_length=40, description="the service that holds the key")
    ct: str = Field(min_length=1, description="base64url(nonce + AES-256-GCM ciphertext)")


class SealedPayloadV2(BaseModel):
    """Version 2 of every event type above: the v1 payload with its personal fields sealed.

    The non-personal fields travel as in v1 (kept as extra fields here); `sealed` holds the
    others, which only a holder of the subject's key can read. Destroying that key leaves them
    unreadable in every copy (crypto-shredding). `odr_shared.privacy` seals and opens.
    """

    model_config = ConfigDict(extra="allow")

    subject_id: str | None = None
    sealed: Sealed


# privacy.events: data-subject requests and their per-service outcomes.
class ErasureRequestedV1(_Payload):
    """`privacy.erasure_requested`: complaints asks every service to erase one subject's data."""

    request_id: str
    subject_id: str
    platform_id: str | None = Field(
        None, description="set: only this platform's copies (a marketplace's redaction request)"
    )
    order_ids: list[str] = Field(default_factory=list)
    case_ids: list[str] = Field(default_factory=list)
    requested_at: datetime


class ErasureReportedV1(_Payload):
    """`privacy.erasure_reported`: one service's outcome of an erasure request."""

    request_id: str
    service: Literal["gateway", "complaints", "mediation", "notifications"]
    subject_id: str
    status: Literal["completed", "deferred"]
    reason: str | None = None
    until: datetime | None = None
    counts: dict[str, int] = Field(default_factory=dict)


class RedactionRequestedV1(_Payload):
    """`privacy.redaction_requested`: a marketplace asked (for its buyer) for erasure or access."""

    platform_id: str
    kind: Literal["erasure", "access"]
    subject_id: str | None = None
    order_ids: list[str] = Field(default_factory=list)
    source_delivery_id: str | None = None


PRIVACY_EVENT_TYPES = (
    "privacy.erasure_requested",
    "privacy.erasure_reported",
    "privacy.redaction_requested",
)

for _t in ORDER_EVENT_TYPES:
    register(_t, 1, OrderStatusChangedV1)
for _t in CASE_EVENT_TYPES:
    register(_t, 1, CaseEventV1)
for _t in MEDIATION_EVENT_TYPES:
    register(_t, 1, MediationEventV1)
for _t in COMMAND_TYPES:
    register(_t, 1, NotificationCommandV1)

register("privacy.erasure_requested", 1, ErasureRequestedV1)
register("privacy.erasure_reported", 1, ErasureReportedV1)
register("privacy.redaction_requested", 1, RedactionRequestedV1)

# The sealed form of every event that may carry personal data.
SEALABLE_TYPES = ORDER_EVENT_TYPES + CASE_EVENT_TYPES + MEDIATION_EVENT_TYPES + COMMAND_TYPES
for _t in SEALABLE_TYPES:
    register(_t, 2, SealedPayloadV2)
