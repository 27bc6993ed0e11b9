"""Webhooks: replayed, tampered, stale, unsigned, oversized and wrong-platform deliveries."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from typing import Any

import httpx
import pytest
from reliability_kit import (
    ReliabilityStack,
    admin,
    make_platform,
    new_email,
    new_phone,
    order,
    record,
    wait_for,
)

from odr_shared.testing import standard_webhook_headers

pytestmark = [pytest.mark.reliability, pytest.mark.e2e]


def envelope(data: dict[str, Any]) -> bytes:
    return json.dumps(
        {"type": "order.updated", "timestamp": "2026-11-20T03:00:00Z", "data": data}
    ).encode()


def test_each_kind_of_bad_delivery_is_rejected_or_absorbed_as_the_contract_says(
    rstack: ReliabilityStack,
) -> None:
    stack = rstack.stack
    gw = stack.url("gateway")
    a = make_platform(stack, "Sàn Webhook A")
    b = make_platform(stack, "Sàn Webhook B")
    code, phone, email = f"RW{uuid.uuid4().hex[:8].upper()}", new_phone(), new_email("hook")
    url_a = f"{gw}/v1/webhooks/{a.platform_id}"
    outcomes: dict[str, list[int]] = {}

    def post(case: str, url: str, body: bytes, headers: dict[str, str]) -> httpx.Response:
        r = httpx.post(url, content=body, headers=headers, timeout=30)
        outcomes.setdefault(case, []).append(r.status_code)
        return r

    body = envelope(order(code, "delivered", 10, phone, email))
    signed = standard_webhook_headers(a.secret, body)
    first = post("genuine", url_a, body, signed)
    assert first.status_code == 202
    assert first.json()["duplicate"] is False
    # Replayed: the same delivery (same webhook-id) 5 times: 2xx, one effect.
    for _ in range(5):
        again = post("replayed", url_a, body, signed)
        assert again.status_code == 202
        assert again.json()["duplicate"] is True
    # The same order event under a new webhook-id (a marketplace retrying): absorbed too.
    resent = post("same_event_new_id", url_a, body, standard_webhook_headers(a.secret, body))
    assert resent.status_code == 202
    # Tampered: the body changed after signing (amount, status, buyer).
    for field, value in (("total_amount", 1), ("status", "refunded"), ("order_code", "X1")):
        forged = envelope(order(code, "delivered", 10, phone, email) | {field: value})
        post("tampered", url_a, forged, signed)
    # Signature header tampered: one bit flipped in the MAC.
    mac = signed["webhook-signature"]
    flipped = mac[:-3] + ("A" if mac[-3] != "A" else "B") + mac[-2:]
    post("tampered", url_a, body, signed | {"webhook-signature": flipped})
    # Stale: signed 10 minutes ago or 10 minutes ahead (tolerance 5 min).
    for skew in (-600, 600):
        old = standard_webhook_headers(a.secret, body, timestamp=int(time.time()) + skew)
        post("stale_timestamp", url_a, body, old)
    # Unsigned: no headers, empty signature, unknown signature version.
    post("unsigned", url_a, body, {"content-type": "application/json"})
    post("unsigned", url_a, body, signed | {"webhook-signature": ""})
    post("unsigned", url_a, body, signed | {"webhook-signature": "v2,abc"})
    # Wrong platform: A's genuine delivery sent to B's endpoint; or signed with B's secret.
    post("wrong_platform", f"{gw}/v1/webhooks/{b.platform_id}", body, signed)
    post("wrong_platform", url_a, body, standard_webhook_headers(b.secret, body))
    post("unknown_platform", f"{gw}/v1/webhooks/pf_doesnotexist", body, signed)
    # Oversized: over the 1 MiB limit, declared and chunked.
    big = b'{"pad": "' + b"x" * (1_048_576 + 10) + b'"}'
    post("oversized", url_a, big, standard_webhook_headers(a.secret, big))

    def chunks() -> Any:
        for _ in range(20):
            yield b"x" * 65_536

    post(
        "oversized",
        url_a,
        chunks(),
        standard_webhook_headers(a.secret, b"")  # type: ignore[arg-type]
        | {"content-type": "application/json"},
    )
    # Malformed but genuinely signed: 422, kept for inspection.
    for bad in (b"{not json", envelope({"order_code": code, "status": "teleported"})):
        post("malformed_signed", url_a, bad, standard_webhook_headers(a.secret, bad))
    # An older status (out-of-order delivery) is absorbed and never rolls the order back.
    older = envelope(order(code, "shipped", 5, phone, email))
    late = post("older_status", url_a, older, standard_webhook_headers(a.secret, older))
    late_status = late.json().get("status") if late.status_code == 202 else None

    expect = {
        "genuine": {202},
        "replayed": {202},
        "same_event_new_id": {202},
        "tampered": {401},
        "stale_timestamp": {401},
        "unsigned": {401},
        "wrong_platform": {401},
        "unknown_platform": {404},
        "oversized": {413},
        "malformed_signed": {400, 422},
        "older_status": {202},
    }
    for case, codes in outcomes.items():
        assert set(codes) <= expect[case], (case, codes)

    # Effects: the order exists once, at its latest status; the genuine delivery counted once
    # (the late older status is kept as history at most, never as the current status).
    def the_order() -> dict[str, Any] | None:
        r = httpx.get(
            f"{stack.url('complaints')}/v1/orders/{code}",
            params={"platform_id": a.platform_id},
            headers=admin(),
        )
        return r.json() if r.status_code == 200 else None

    seen = wait_for(the_order, timeout_s=60)
    time.sleep(2.0)
    seen = the_order()
    assert seen is not None
    assert seen["status"] == "delivered"
    statuses = [h["status"] for h in seen["history"]]
    assert statuses.count("delivered") == 1
    assert set(statuses) <= {"delivered", "shipped"}
    # Nothing lost: every refused delivery is kept in the inbound log.
    kept = dict(
        rstack.rows(
            "gateway",
            "SELECT status, count(*) FROM inbound_deliveries WHERE platform_id = :p "
            "GROUP BY status",
            p=a.platform_id,
        )
    )
    refused = sum(len(outcomes[c]) for c in ("tampered", "stale_timestamp", "unsigned"))
    refused += 1 + len(outcomes["oversized"]) + len(outcomes["malformed_signed"])
    record(
        "webhooks",
        deliveries=sum(len(v) for v in outcomes.values()),
        outcomes={k: f"{len(v)}x{sorted(set(v))}" for k, v in outcomes.items()},
        inbound_log_by_status=kept,
        order_history_entries=len(seen["history"]),
        older_status_receipt=late_status,
    )
    assert kept.get("rejected", 0) >= refused


def test_marketplace_kinds_refuse_unsigned_and_forged_deliveries(rstack: ReliabilityStack) -> None:
    gw = rstack.stack.url("gateway")
    secret = "shpk-" + uuid.uuid4().hex
    made: dict[str, str] = {}
    for kind, extra in (
        ("shopee", {"push_url": "https://odr.example/shopee"}),
        ("lazada", {"app_key": "123456"}),
        ("tiktok", {"app_key": "tt-app"}),
        ("shopify", {}),
        ("haravan", {}),
        ("sapo", {}),
    ):
        r = httpx.post(
            f"{gw}/v1/platforms",
            json={"name": f"Sàn {kind}", "kind": kind, "signing_secret": secret, **extra},
            headers=admin(),
        )
        assert r.status_code == 201, r.text
        made[kind] = r.json()["platform_id"]
    body = b'{"shop_id": 1, "code": 3, "data": {"ordersn": "X1", "status": "COMPLETED"}}'
    wrong = hmac.new(b"not-the-secret", body, hashlib.sha256)
    headers_for = {
        "shopee": {"Authorization": wrong.hexdigest()},
        "lazada": {"Authorization": wrong.hexdigest()},
        "tiktok": {"Authorization": wrong.hexdigest()},
        "shopify": {"X-Shopify-Hmac-Sha256": base64.b64encode(wrong.digest()).decode()},
        "haravan": {"X-Haravan-Hmacsha256": base64.b64encode(wrong.digest()).decode()},
        "sapo": {"X-Sapo-Hmac-Sha256": base64.b64encode(wrong.digest()).decode()},
    }
    answers: dict[str, list[int]] = {}
    for kind, pid in made.items():
        for headers in ({}, headers_for[kind]):
            r = httpx.post(f"{gw}/v1/webhooks/{pid}", content=body, headers=headers)
            answers.setdefault(kind, []).append(r.status_code)
    record("webhooks_marketplace_kinds", answers=answers)
    assert all(codes == [401, 401] for codes in answers.values()), answers
