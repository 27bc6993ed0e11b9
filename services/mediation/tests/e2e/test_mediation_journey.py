"""On the running platform: escalate -> assign -> propose -> arbitrate -> decide."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any, TypeVar

import httpx
import pytest
from kafka import KafkaConsumer, KafkaProducer
from mediation_testkit import PASSWORD, case_event, neutral_body

from odr_shared.auth import TokenService
from odr_shared.events import CASES_TOPIC, MEDIATION_TOPIC, build_event, parse_event
from odr_shared.privacy import Opener
from odr_shared.settings import ServiceSettings

pytestmark = pytest.mark.e2e
T = TypeVar("T")


def admin_headers() -> dict[str, str]:
    token = TokenService(ServiceSettings()).issue(
        role="admin", subject="e2e", ttl=timedelta(minutes=10)
    )
    return {"Authorization": f"Bearer {token}"}


def wait_for(fn: Callable[[], T | None], timeout_s: float = 30.0) -> T:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        result = fn()
        if result:
            return result
        time.sleep(0.2)
    raise AssertionError("condition not met in time")


def login(base: str, email: str) -> dict[str, str]:
    r = httpx.post(f"{base}/v1/auth/login", json={"email": email, "password": PASSWORD})
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


def test_escalate_assign_propose_arbitrate_decide_on_the_stack(stack: Any) -> None:
    base = stack.url("mediation")
    category = f"e2e-{uuid.uuid4().hex[:6]}"  # keeps other tests' neutrals out of this case
    mediator = neutral_body(categories=[category])
    arbitrator = neutral_body(categories=[category], roles=["arbitrator"])

    # The operator registers the mediator with the CLI, the arbitrator with the API.
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "odr_cli.main",
            "neutral",
            "add",
            "--name",
            mediator["name"],
            "--email",
            mediator["email"],
            "--phone",
            mediator["phone"],
            "--role",
            "mediator",
            "--category",
            category,
            "--language",
            "vi,en",
            "--max-active-cases",
            "3",
            "--mediation-url",
            base,
        ],
        env={**os.environ, **stack.env, "ODR_NEUTRAL_PASSWORD": PASSWORD},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    mediator_id = json.loads(out.stdout)["neutral_id"]
    r = httpx.post(f"{base}/v1/neutrals", json=arbitrator, headers=admin_headers())
    assert r.status_code == 201, r.text

    # Complaints escalates the case (published here directly, as complaints does).
    data = case_event(category=category, claimed_amount=4_000_000)
    event = build_event(
        source="odr/complaints", event_type="case.escalated", subject=data.case_id, data=data
    )
    producer = KafkaProducer(bootstrap_servers=stack.bootstrap, acks="all", enable_idempotence=True)
    producer.send(CASES_TOPIC, key=data.case_id.encode(), value=event.to_json_bytes()).get(15)
    producer.close()

    med = login(base, mediator["email"])
    queue = wait_for(lambda: httpx.get(f"{base}/v1/assignments", headers=med).json())
    assert queue[0]["case_id"] == data.case_id

    r = httpx.post(
        f"{base}/v1/cases/{data.case_id}/proposals",
        headers=med,
        json={"outcome": "partial_refund", "amount": 2_000_000, "terms": "Hoàn 2.000.000 đồng"},
    )
    assert r.status_code == 201, r.text
    r = httpx.post(
        f"{base}/v1/cases/{data.case_id}/escalate",
        headers=med,
        json={"reason": "Người bán không đồng ý"},
    )
    assert r.status_code == 200, r.text
    assert r.json()["stage"] == "arbitration"

    arb = login(base, arbitrator["email"])
    r = httpx.post(
        f"{base}/v1/cases/{data.case_id}/decision",
        headers=arb,
        json={
            "outcome": "full_refund",
            "amount": 4_000_000,
            "reasons": "Hàng không được giao; người bán không có bằng chứng.",
        },
    )
    assert r.status_code == 201, r.text

    consumer = KafkaConsumer(
        MEDIATION_TOPIC,
        bootstrap_servers=stack.bootstrap,
        group_id=f"e2e-med-{uuid.uuid4().hex[:6]}",
        auto_offset_reset="earliest",
        session_timeout_ms=6000,
        heartbeat_interval_ms=1000,
    )
    seen: list[Any] = []
    deadline = time.monotonic() + 40
    try:
        while time.monotonic() < deadline and len(seen) < 5:
            for records in consumer.poll(timeout_ms=500).values():
                seen += [parse_event(r.value) for r in records if r.key == data.case_id.encode()]
    finally:
        consumer.close()
    assert [e.type for e in seen] == [
        "case.assigned",
        "mediation.proposal_made",
        "case.referred_to_arbitration",
        "case.assigned",
        "arbitration.decided",
    ]
    # Sealed on the topic: another service opens them with keys from mediation's key endpoint.
    assert "decision" not in seen[4].data.model_dump()
    opener = Opener.from_settings(
        ServiceSettings(service_urls=f"mediation={base}"), service="complaints"
    )
    opened = [opener.open(e) for e in seen]
    assert all(e is not None for e in opened)
    assert opened[0].data.neutral_id == mediator_id  # type: ignore[union-attr]
    assert opened[0].data.neutral_contact.email == mediator["email"]  # type: ignore[union-attr]
    assert opened[3].data.neutral_role == "arbitrator"  # type: ignore[union-attr]
    assert opened[3].data.neutral_id != mediator_id  # type: ignore[union-attr]
    assert opened[4].data.decision["amount"] == 4_000_000  # type: ignore[union-attr]
    assert opened[1].data.proposal["terms"] == "Hoàn 2.000.000 đồng"  # type: ignore[union-attr]
    # The neutrals' dashboard is served by the running API.
    assert "Đăng nhập" in httpx.get(f"{base}/dashboard/login").text
