"""CloudEvents envelope and versioned schemas."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from odr_shared.events import (
    Actor,
    CaseEventV1,
    EventParseError,
    OrderStatusChangedV1,
    build_event,
    parse_event,
)
from odr_shared.events.envelope import register
from odr_shared.events.schemas import TOPICS, dead_letter_topic, order_id
from odr_shared.testing import sample_order


def order_payload(code: str = "DH1") -> OrderStatusChangedV1:
    order = sample_order(code)
    return OrderStatusChangedV1(
        order_id=order_id("plt_1", code),
        platform_id="plt_1",
        **order,  # type: ignore[arg-type]
    )


def test_round_trip_keeps_every_cloudevents_attribute() -> None:
    event = build_event(
        source="odr/test",
        event_type="order.status_changed",
        subject="plt_1:DH1",
        data=order_payload(),
    )
    doc = json.loads(event.to_json_bytes())
    assert doc["specversion"] == "1.0"
    assert {"id", "source", "type", "time", "subject", "datacontenttype", "data"} <= set(doc)
    assert doc["dataschema"] == "urn:odr:schema:order.status_changed:v1"
    parsed = parse_event(event.to_json_bytes())
    assert parsed.id == event.id
    assert isinstance(parsed.data, OrderStatusChangedV1)
    assert parsed.data.total_amount == 300000
    assert parsed.version == 1


def test_unknown_payload_fields_are_ignored_and_extensions_kept() -> None:
    event = build_event(
        source="odr/test", event_type="order.status_changed", subject="s", data=order_payload()
    )
    doc = json.loads(event.to_json_bytes())
    doc["data"]["added_by_a_newer_producer"] = {"x": 1}
    doc["traceparent"] = "00-abc-def-01"
    parsed = parse_event(json.dumps(doc))
    assert not hasattr(parsed.data, "added_by_a_newer_producer")
    assert parsed.model_extra == {"traceparent": "00-abc-def-01"}


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"{not json", "not JSON"),
        (b"[1, 2]", "JSON object"),
        (b'{"specversion": "1.0"}', "missing attribute 'type'"),
        (b'{"type": "order.teleported", "specversion": "1.0"}', "unknown event type"),
    ],
)
def test_garbage_is_refused_with_a_reason(raw: bytes, reason: str) -> None:
    with pytest.raises(EventParseError, match=reason):
        parse_event(raw)


def test_invalid_payload_names_the_field() -> None:
    event = build_event(
        source="odr/test", event_type="order.status_changed", subject="s", data=order_payload()
    )
    doc = json.loads(event.to_json_bytes())
    doc["data"]["status"] = "teleported"
    with pytest.raises(EventParseError, match=r"data\.status"):
        parse_event(json.dumps(doc))


def test_naive_time_and_other_specversions_are_refused() -> None:
    event = build_event(
        source="odr/test", event_type="order.status_changed", subject="s", data=order_payload()
    )
    doc = json.loads(event.to_json_bytes())
    with pytest.raises(EventParseError, match="specversion"):
        parse_event(json.dumps({**doc, "specversion": "0.3"}))
    with pytest.raises(EventParseError, match="time"):
        parse_event(json.dumps({**doc, "time": "2026-11-20T03:00:00"}))


def test_versions_are_read_side_by_side() -> None:
    from pydantic import BaseModel

    class CaseOpenedV2(BaseModel):
        case_id: str
        channel: str

    # A version nobody uses (2 is the sealed form), taken out again: the registry is global.
    from odr_shared.events import envelope

    register("case.opened", 9, CaseOpenedV2)
    try:
        v9 = build_event(
            source="odr/test",
            event_type="case.opened",
            subject="c1",
            data=CaseOpenedV2(case_id="c1", channel="web"),
            version=9,
        )
        assert isinstance(parse_event(v9.to_json_bytes()).data, CaseOpenedV2)
    finally:
        envelope._REGISTRY.pop(("case.opened", 9), None)
    v1 = build_event(
        source="odr/test",
        event_type="case.opened",
        subject="c1",
        data=CaseEventV1(
            case_id="c1",
            reference="KN-2026-000001",
            order_id="p:o",
            platform_id="p",
            order_code="o",
            status="awaiting_merchant",  # type: ignore[arg-type]
            category="not_delivered",
            actor=Actor(role="consumer"),
        ),
        time=datetime(2026, 11, 20, tzinfo=UTC),
    )
    assert isinstance(parse_event(v1.to_json_bytes()).data, CaseEventV1)


def test_building_an_unregistered_type_fails_loudly() -> None:
    with pytest.raises(KeyError):
        build_event(source="s", event_type="case.vanished", subject="x", data=order_payload())


def test_topics_and_dead_letters() -> None:
    assert TOPICS == (
        "orders.events",
        "cases.events",
        "mediation.events",
        "notifications.commands",
        "privacy.events",
    )
    assert dead_letter_topic("orders.events") == "orders.events.dlq"
