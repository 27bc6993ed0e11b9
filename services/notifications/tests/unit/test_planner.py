"""Which messages each event calls for, to whom, over which channel, and how urgent."""

from __future__ import annotations

import pytest
from notifications_testkit import (
    CONSUMER_EN,
    case_event,
    mediation_event,
    order_event,
    otp_command,
)

from notifications.planner import CaseUnknown, case_context, plan
from odr_shared.events import Contact
from odr_shared.events.schemas import CASE_EVENT_TYPES


def summary(planned: list) -> list[tuple[str, str, str, str, bool]]:  # type: ignore[type-arg]
    return [(p.channel, p.template, p.language, p.category, p.urgent) for p in planned]


def test_otp_command_is_one_urgent_sms() -> None:
    event = otp_command("0912345678")
    assert summary(plan(event.type, event.data, None)) == [("sms", "otp", "vi", "otp", True)]


def test_order_status_sms_only_when_the_platform_turned_it_on() -> None:
    on = order_event("0912345678", status_notifications=True)
    off = order_event("0912345678", status_notifications=False)
    assert summary(plan(on.type, on.data, None)) == [
        ("sms", "order_status", "vi", "order_status", False)
    ]
    assert plan(off.type, off.data, None) == []


def test_case_opened_reaches_the_consumer_by_sms_and_email_in_their_language() -> None:
    event = case_event("case.opened")
    assert summary(plan(event.type, event.data, None)) == [
        ("sms", "case_opened", "vi", "case", False),
        ("email", "case_opened", "vi", "case", False),
    ]
    en = case_event("case.deadline_missed", consumer=CONSUMER_EN)
    assert summary(plan(en.type, en.data, None)) == [
        ("sms", "deadline_missed", "en", "case", False)
    ]


@pytest.mark.parametrize(
    ("event_type", "template"),
    [
        ("case.offer_made", "offer_made"),
        ("case.escalated", "case_escalated"),
        ("case.resolved", "case_resolved"),
        ("case.decided", "case_decided"),
        ("case.withdrawn", "case_withdrawn"),
    ],
)
def test_case_steps_use_their_template(event_type: str, template: str) -> None:
    event = case_event(event_type)
    assert {p.template for p in plan(event.type, event.data, None)} == {template}


def test_chatter_events_notify_nobody() -> None:
    for event_type in ("case.message_posted", "case.evidence_added", "case.closed"):
        assert event_type in CASE_EVENT_TYPES
        event = case_event(event_type)
        assert plan(event.type, event.data, None) == []


def test_offer_details_become_template_params() -> None:
    event = case_event(
        "case.offer_made", details={"offer": {"offer_id": "o1", "kind": "refund", "amount": 5000}}
    )
    planned = plan(event.type, event.data, None)
    assert planned[0].params["offer_amount"] == 5000
    assert planned[0].params["reference"] == event.data.reference


def test_assignment_tells_the_consumer_from_the_projection_and_the_neutral_by_email() -> None:
    opened = case_event("case.opened")
    ctx = case_context(opened.data)
    assigned = mediation_event("case.assigned", opened.data.case_id)
    planned = plan(assigned.type, assigned.data, ctx)
    assert summary(planned) == [
        ("sms", "mediator_assigned", "vi", "case", False),
        ("email", "mediator_assigned", "vi", "case", False),
        ("email", "neutral_assigned", "vi", "case", False),
    ]
    assert planned[0].recipient.phone == "0912345678"
    assert planned[2].recipient.email == "hoa.giai@example.vn"
    assert planned[2].params["reference"] == opened.data.reference


def test_a_panel_of_three_reaches_the_consumer_once_and_each_arbitrator_by_email() -> None:
    opened = case_event("case.opened")
    ctx = case_context(opened.data)
    panel = ["arb-1", "arb-2", "arb-3"]
    planned = []
    for member in panel:
        event = mediation_event("case.assigned", opened.data.case_id)
        data = event.data.model_copy(
            update={"neutral_id": member, "neutral_role": "arbitrator", "neutral_ids": panel}
        )
        planned += plan(event.type, data, ctx)
    to_consumer = [p for p in planned if p.template == "mediator_assigned"]
    to_arbitrators = [p for p in planned if p.template == "neutral_assigned"]
    assert [(p.channel, p.params["neutral_role"]) for p in to_consumer] == [
        ("sms", "arbitrator"),
        ("email", "arbitrator"),
    ]
    assert len(to_arbitrators) == 3


def test_mediation_event_for_an_unseen_case_is_an_error_to_retry() -> None:
    assigned = mediation_event("case.assigned", "case-unknown")
    with pytest.raises(CaseUnknown):
        plan(assigned.type, assigned.data, None)


def test_mediation_chatter_needs_no_projection() -> None:
    posted = mediation_event("mediation.message_posted", "case-unknown")
    assert plan(posted.type, posted.data, None) == []


def test_consumer_without_any_contact_gets_nothing() -> None:
    event = case_event("case.opened", consumer=Contact(name="X"))
    assert plan(event.type, event.data, None) == []
