"""On the running platform: webhook -> order -> OTP by SMS command -> case -> offer -> escalate."""

from __future__ import annotations

import json
import time
import uuid
from datetime import timedelta
from typing import Any

import httpx
import pytest
from kafka import KafkaConsumer

from odr_shared.auth import TokenService
from odr_shared.events import NotificationCommandV1, SealedPayloadV2, parse_event
from odr_shared.privacy import KeyClient, unsealed
from odr_shared.settings import ServiceSettings
from odr_shared.testing import sample_order, standard_webhook_headers

pytestmark = pytest.mark.e2e


def wait_for(fn: Any, timeout_s: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        result = fn()
        if result:
            return result
        time.sleep(0.2)
    raise AssertionError("condition not met in time")


def admin() -> dict[str, str]:
    token = TokenService(ServiceSettings()).issue(
        role="admin", subject="e2e", ttl=timedelta(minutes=10)
    )
    return {"Authorization": f"Bearer {token}"}


def read_otp(bootstrap: str, order_id: str, complaints_url: str) -> str:
    """The code as complaints asked notifications to text it (notifications.commands), opened
    as notifications opens it: the key from complaints' subject-key endpoint."""
    keys = KeyClient(ServiceSettings(service_urls=f"complaints={complaints_url}"), "notifications")
    reader = KafkaConsumer(
        "notifications.commands",
        bootstrap_servers=bootstrap,
        group_id=f"e2e-otp-{uuid.uuid4().hex[:6]}",
        auto_offset_reset="earliest",
        session_timeout_ms=6000,
        heartbeat_interval_ms=1000,
    )

    def poll() -> str | None:
        for records in reader.poll(timeout_ms=500).values():
            for r in records:
                event = parse_event(r.value)
                if event.type != "notification.send":
                    continue
                if isinstance(event.data, SealedPayloadV2):
                    assert "params" not in json.loads(r.value)["data"]  # sealed, not in clear
                    kid = event.data.sealed.kid
                    event = unsealed(event, keys.fetch(event.data.sealed.owner, [kid])[kid])
                data = event.data if event is not None else None
                if isinstance(data, NotificationCommandV1) and data.order_id == order_id:
                    return str(data.params["code"])
        return None

    try:
        return str(wait_for(poll, 40))
    finally:
        reader.close()
        keys.close()


def test_buyer_journey_on_the_running_stack(stack: Any) -> None:
    gw, complaints = stack.url("gateway"), stack.url("complaints")
    platform = httpx.post(
        f"{gw}/v1/platforms", json={"name": "Sàn E2E", "kind": "standard"}, headers=admin()
    ).json()
    pid = platform["platform_id"]
    code = f"DH{uuid.uuid4().hex[:8].upper()}"
    body = json.dumps(
        {"type": "order.updated", "timestamp": "2026-11-20T03:00:00Z", "data": sample_order(code)}
    ).encode()
    r = httpx.post(
        f"{gw}/v1/webhooks/{pid}",
        content=body,
        headers=standard_webhook_headers(platform["webhook_secret"], body),
        timeout=60,  # a busy machine: httpx's 5 s is too short
    )
    assert r.status_code == 202, r.text
    wait_for(
        lambda: (
            httpx.get(
                f"{complaints}/v1/orders/{code}", params={"platform_id": pid}, headers=admin()
            ).status_code
            == 200
        )
    )

    assert (
        httpx.post(
            f"{complaints}/v1/otp", json={"order_code": code, "phone": "+84912345678"}
        ).status_code
        == 202
    )
    otp = read_otp(stack.bootstrap, f"{pid}:{code}", complaints)
    token = httpx.post(
        f"{complaints}/v1/otp/verify", json={"order_code": code, "phone": "0912345678", "code": otp}
    ).json()
    consumer = {"Authorization": f"Bearer {token['access_token']}"}
    order = httpx.get(f"{complaints}/v1/orders/{code}", headers=consumer).json()
    assert order["order_id"] == f"{pid}:{code}"

    created = httpx.post(
        f"{complaints}/v1/cases",
        json={
            "order_code": code,
            "category": "damaged",
            "description": "Áo bị rách một đường dài.",
            "desired_outcome": "refund",
            "claimed_amount": 300000,
        },
        headers=consumer,
    )
    assert created.status_code == 201, created.text
    case_id = created.json()["case_id"]

    plat_token = httpx.post(
        f"{gw}/v1/oauth/token",
        data={
            "grant_type": "client_credentials",
            "client_id": platform["client_id"],
            "client_secret": platform["client_secret"],
        },
    ).json()["access_token"]
    plat = {"Authorization": f"Bearer {plat_token}"}
    assert [c["case_id"] for c in httpx.get(f"{complaints}/v1/cases", headers=plat).json()] == [
        case_id
    ]
    offer = httpx.post(
        f"{complaints}/v1/cases/{case_id}/offers",
        json={"kind": "partial_refund", "amount": 100000},
        headers=plat,
    )
    assert offer.status_code == 201, offer.text
    rejected = httpx.post(
        f"{complaints}/v1/cases/{case_id}/offers/{offer.json()['offer_id']}/reject",
        json={"reason": "thấp"},
        headers=consumer,
    )
    assert rejected.status_code == 200
    escalated = httpx.post(f"{complaints}/v1/cases/{case_id}/escalate", headers=consumer)
    assert escalated.status_code == 200, escalated.text
    assert escalated.json()["status"] == "escalated"

    # The escalation left on cases.events for mediation to route.
    reader = KafkaConsumer(
        "cases.events",
        bootstrap_servers=stack.bootstrap,
        group_id=f"e2e-cases-{uuid.uuid4().hex[:6]}",
        auto_offset_reset="earliest",
        session_timeout_ms=6000,
        heartbeat_interval_ms=1000,
    )
    types: list[str] = []

    def escalated_event() -> bool:
        for records in reader.poll(timeout_ms=500).values():
            types.extend(json.loads(r.value)["type"] for r in records if r.key == case_id.encode())
        return "case.escalated" in types

    try:
        wait_for(escalated_event, 40)
    finally:
        reader.close()
    assert types[:2] == ["case.opened", "case.merchant_responded"]
