"""Which messages an event calls for: event -> [(recipient, channel, template, urgent)]. Pure."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel

from odr_shared.events import (
    CASES_TOPIC,
    MEDIATION_TOPIC,
    NOTIFICATIONS_TOPIC,
    ORDERS_TOPIC,
    CaseEventV1,
    Contact,
    MediationEventV1,
    NotificationCommandV1,
    OrderStatusChangedV1,
)

Channel = Literal["sms", "email"]
# order_status: a recipient may opt out; case: deadlines and steps of their case, never opted
# out of; otp: one-time codes; command: anything else another service asked for.
Category = Literal["order_status", "case", "otp", "command"]

# Case events the consumer hears about, and the template that tells them.
CONSUMER_CASE_TEMPLATES: dict[str, str] = {
    "case.opened": "case_opened",
    "case.offer_made": "offer_made",
    "case.deadline_missed": "deadline_missed",
    "case.escalated": "case_escalated",
    "case.resolved": "case_resolved",
    "case.decided": "case_decided",
    "case.withdrawn": "case_withdrawn",
}
MEDIATION_CONSUMER_TEMPLATES: dict[str, str] = {
    "case.assigned": "mediator_assigned",
    "case.reassigned": "mediator_assigned",
    "mediation.proposal_made": "proposal_made",
}
NEUTRAL_TEMPLATES: dict[str, str] = {
    "case.assigned": "neutral_assigned",
    "case.reassigned": "neutral_assigned",
}
SOURCE_TOPICS: dict[type[BaseModel], str] = {
    OrderStatusChangedV1: ORDERS_TOPIC,
    CaseEventV1: CASES_TOPIC,
    MediationEventV1: MEDIATION_TOPIC,
    NotificationCommandV1: NOTIFICATIONS_TOPIC,
}


@dataclass(frozen=True)
class CaseContext:
    """What notifications remembers of a case from cases.events (mediation.events lack it)."""

    case_id: str
    reference: str
    order_id: str
    order_code: str
    platform_id: str
    consumer: Contact
    # The consumer as a data subject (odr_shared.privacy), if known.
    subject_id: str | None = None


@dataclass(frozen=True)
class PlannedMessage:
    recipient: Contact
    channel: Channel
    template: str
    category: Category
    urgent: bool
    params: dict[str, Any] = field(default_factory=dict)
    case_id: str | None = None
    order_id: str | None = None
    platform_id: str | None = None
    # Whose personal data the message is, when the event or the case says so; otherwise the
    # recipient's phone names them (notifications.deliveries.subject_of_planned).
    subject_id: str | None = None

    @property
    def language(self) -> str:
        return language_of(self.recipient)


def language_of(contact: Contact) -> str:
    lang = (contact.language or "vi").lower()[:2]
    return lang if lang in ("vi", "en") else "vi"


class CaseUnknown(Exception):
    """A mediation event for a case this service has not seen on cases.events yet."""


def _contact_channels(contact: Contact) -> list[Channel]:
    channels: list[Channel] = []
    if contact.phone:
        channels.append("sms")
    if contact.email:
        channels.append("email")
    return channels


def _to_consumer(ctx: CaseContext, template: str, params: dict[str, Any]) -> list[PlannedMessage]:
    base = {
        "reference": ctx.reference,
        "case_id": ctx.case_id,
        "order_code": ctx.order_code,
        "name": ctx.consumer.name,
    }
    return [
        PlannedMessage(
            recipient=ctx.consumer,
            channel=channel,
            template=template,
            category="case",
            urgent=False,
            params={**base, **params},
            case_id=ctx.case_id,
            order_id=ctx.order_id,
            platform_id=ctx.platform_id,
            subject_id=ctx.subject_id,
        )
        for channel in _contact_channels(ctx.consumer)
    ]


def case_context(event: CaseEventV1, subject_id: str | None = None) -> CaseContext:
    return CaseContext(
        case_id=event.case_id,
        reference=event.reference,
        order_id=event.order_id,
        order_code=event.order_code,
        platform_id=event.platform_id,
        consumer=event.consumer,
        subject_id=subject_id or event.subject_id,
    )


def plan_order_event(event: OrderStatusChangedV1) -> list[PlannedMessage]:
    if not event.status_notifications:
        return []
    buyer = Contact(name=event.buyer.name, phone=event.buyer.phone, email=event.buyer.email)
    return [
        PlannedMessage(
            recipient=buyer,
            channel="sms",
            template="order_status",
            category="order_status",
            urgent=False,
            params={
                "order_code": event.order_code,
                "status": event.status.value,
                "name": event.buyer.name,
                "seller": event.seller.name,
            },
            order_id=event.order_id,
            platform_id=event.platform_id,
            subject_id=event.subject_id,
        )
    ]


def plan_case_event(
    event_type: str, event: CaseEventV1, ctx_subject: str | None = None
) -> list[PlannedMessage]:
    template = CONSUMER_CASE_TEMPLATES.get(event_type)
    if template is None:
        return []
    params: dict[str, Any] = {
        "status": event.status.value,
        "due_at": event.merchant_response_due_at,
        "claimed_amount": event.claimed_amount,
        "reason": event.reason,
    }
    if event_type == "case.offer_made":
        offer = event.details.get("offer") or {}
        params.update(
            offer_kind=offer.get("kind"), offer_amount=offer.get("amount"), terms=offer.get("terms")
        )
    if event_type == "case.decided":
        decision = event.details.get("decision") or {}
        params.update(
            outcome=decision.get("outcome"),
            decision_amount=decision.get("amount"),
            reasons=decision.get("reasons"),
        )
    return _to_consumer(case_context(event, ctx_subject), template, params)


def plan_mediation_event(
    event_type: str, event: MediationEventV1, ctx: CaseContext | None
) -> list[PlannedMessage]:
    planned: list[PlannedMessage] = []
    consumer_template = MEDIATION_CONSUMER_TEMPLATES.get(event_type)
    neutral_template = NEUTRAL_TEMPLATES.get(event_type)
    if consumer_template is None and neutral_template is None:
        return []
    if ctx is None:
        raise CaseUnknown(f"case {event.case_id} not seen on cases.events yet")
    role = event.neutral_role or "mediator"
    # A panel of three arrives as one case.assigned per arbitrator, each naming the whole panel:
    # the consumer hears about the panel once (with its first member), each arbitrator by email.
    panel_member_after_first = (
        event_type == "case.assigned"
        and len(event.neutral_ids) > 1
        and event.neutral_id != event.neutral_ids[0]
    )
    if consumer_template and not panel_member_after_first:
        params: dict[str, Any] = {"neutral_role": role}
        if event.proposal:
            params.update(
                outcome=event.proposal.get("outcome"),
                proposal_amount=event.proposal.get("amount"),
                terms=event.proposal.get("terms"),
            )
        planned += _to_consumer(ctx, consumer_template, params)
    contact = event.neutral_contact
    # A mediation event is sealed under the buyer's key, so its `subject_id` is the buyer's: the
    # neutral's message is theirs, named by their own phone (subject_id left None here).
    if neutral_template and contact is not None and contact.email:
        planned.append(
            PlannedMessage(
                recipient=contact,
                channel="email",
                template=neutral_template,
                category="case",
                urgent=False,
                params={
                    "reference": ctx.reference,
                    "case_id": ctx.case_id,
                    "name": contact.name,
                    "neutral_role": role,
                },
                case_id=ctx.case_id,
                order_id=ctx.order_id,
                platform_id=ctx.platform_id,
            )
        )
    return planned


def plan_command(command: NotificationCommandV1) -> list[PlannedMessage]:
    return [
        PlannedMessage(
            recipient=command.recipient,
            channel=command.channel,
            template=command.template,
            category="otp" if command.template == "otp" else "command",
            urgent=command.urgent or command.template == "otp",
            params=dict(command.params),
            case_id=command.case_id,
            order_id=command.order_id,
            subject_id=command.subject_id,
        )
    ]


def plan(event_type: str, payload: BaseModel, ctx: CaseContext | None) -> list[PlannedMessage]:
    """Every message an event calls for; ctx is the case as seen on cases.events, if any."""
    if isinstance(payload, OrderStatusChangedV1):
        return plan_order_event(payload)
    if isinstance(payload, CaseEventV1):
        return plan_case_event(event_type, payload, ctx.subject_id if ctx else None)
    if isinstance(payload, MediationEventV1):
        return plan_mediation_event(event_type, payload, ctx)
    if isinstance(payload, NotificationCommandV1):
        return plan_command(payload)
    return []
