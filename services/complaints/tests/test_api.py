"""The complaints HTTP API against the app on SQLite and PostgreSQL: OTP, cases, offers, access."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi.testclient import TestClient

from complaints.service import Deps

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
PDF = b"%PDF-1.7\n" + b"x" * 64


def otp_code(outbox: Callable[..., list[dict[str, Any]]]) -> str:
    commands = outbox("notification.send")
    assert commands, "no SMS command queued"
    data = commands[-1]["data"]
    assert data["template"] == "otp"
    assert data["channel"] == "sms"
    assert data["urgent"] is True
    return str(data["params"]["code"])


def login(
    client: TestClient, outbox: Callable[..., list[dict[str, Any]]], code: str, phone: str
) -> dict[str, str]:
    r = client.post("/v1/otp", json={"order_code": code, "phone": phone})
    assert r.status_code == 202
    r = client.post(
        "/v1/otp/verify", json={"order_code": code, "phone": phone, "code": otp_code(outbox)}
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["token_type"] == "bearer"
    assert body["expires_in"] > 0
    return {"Authorization": f"Bearer {body['access_token']}"}


CASE = {
    "category": "damaged",
    "description": "Áo bị rách khi nhận hàng, đóng gói kém.",
    "desired_outcome": "refund",
    "claimed_amount": 300000,
}


def test_otp_is_always_202_and_only_a_real_buyer_gets_a_code(
    client: TestClient, seed_order: Callable[..., str], outbox: Callable[..., list[dict[str, Any]]]
) -> None:
    seed_order("DH100")
    unknown = client.post("/v1/otp", json={"order_code": "NOPE", "phone": "0912345678"})
    wrong_phone = client.post("/v1/otp", json={"order_code": "DH100", "phone": "0987654321"})
    assert unknown.status_code == wrong_phone.status_code == 202
    assert unknown.json() == wrong_phone.json()
    assert outbox("notification.send") == []
    # The +84 form is the same person as the 0 form.
    assert (
        client.post("/v1/otp", json={"order_code": "DH100", "phone": "+84 912 345 678"}).status_code
        == 202
    )
    (cmd,) = outbox("notification.send")
    assert cmd["data"]["recipient"]["phone"] == "+84912345678"
    assert len(cmd["data"]["params"]["code"]) == 6
    assert cmd["data"]["params"]["ttl_minutes"] == 5
    assert cmd["data"]["recipient"]["language"] == "vi"


def test_otp_code_is_stored_hashed_and_wrong_codes_are_limited(
    client: TestClient,
    deps: Deps,
    seed_order: Callable[..., str],
    outbox: Callable[..., list[dict[str, Any]]],
) -> None:
    from sqlalchemy import select

    from complaints.models import OtpChallenge

    seed_order("DH101")
    client.post("/v1/otp", json={"order_code": "DH101", "phone": "0912345678"})
    code = otp_code(outbox)
    with deps.sessions() as s:
        (ch,) = s.execute(select(OtpChallenge)).scalars()
        assert code not in ch.code_hash
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"
    for _ in range(5):
        r = client.post(
            "/v1/otp/verify", json={"order_code": "DH101", "phone": "0912345678", "code": wrong}
        )
        assert r.status_code == 400
        assert r.json()["errors"][0]["field"] == "code"
    # After 5 failures even the right code is refused.
    r = client.post(
        "/v1/otp/verify", json={"order_code": "DH101", "phone": "0912345678", "code": code}
    )
    assert r.status_code == 400


def test_otp_requests_are_rate_limited_per_phone_with_retry_after(
    client: TestClient, seed_order: Callable[..., str]
) -> None:
    seed_order("DH102")
    statuses = [
        client.post("/v1/otp", json={"order_code": "DH102", "phone": "0912345678"}).status_code
        for _ in range(6)
    ]
    assert statuses[:5] == [202] * 5
    assert statuses[5] == 429
    r = client.post("/v1/otp", json={"order_code": "OTHER", "phone": "+84912345678"})
    assert r.status_code == 429
    assert int(r.headers["Retry-After"]) > 0


def test_buyer_journey_case_offer_reject_escalate(
    client: TestClient,
    seed_order: Callable[..., str],
    outbox: Callable[..., list[dict[str, Any]]],
    bearer: Callable[..., dict[str, str]],
) -> None:
    seed_order("DH200")
    consumer = login(client, outbox, "DH200", "0912345678")
    order = client.get("/v1/orders/DH200", headers=consumer).json()
    assert order["history"][0]["status"] == "delivered"
    assert "0912345678" not in str(order)

    r = client.post("/v1/cases", json={"order_code": "DH200", **CASE}, headers=consumer)
    assert r.status_code == 201, r.text
    created = r.json()
    assert created["reference"].startswith("KN-20")
    assert created["status"] == "awaiting_merchant"
    case_id = created["case_id"]

    dup = client.post("/v1/cases", json={"order_code": "DH200", **CASE}, headers=consumer)
    assert dup.status_code == 409
    assert dup.json()["reference"] == created["reference"]

    ev = client.post(
        f"/v1/cases/{case_id}/evidence",
        files={"file": ("ảnh hỏng.png", PNG, "image/png")},
        headers=consumer,
    )
    assert ev.status_code == 201, ev.text
    assert ev.json()["content_type"] == "image/png"
    fake = client.post(
        f"/v1/cases/{case_id}/evidence",
        files={"file": ("x.png", b"MZ\x90\x00 not an image", "image/png")},
        headers=consumer,
    )
    assert fake.status_code == 415
    big = client.post(
        f"/v1/cases/{case_id}/evidence",
        files={"file": ("big.pdf", PDF + b"0" * 300_000, "application/pdf")},
        headers=consumer,
    )
    assert big.status_code == 413

    platform = bearer("platform", platform_id="plat-a")
    assert (
        client.post(
            f"/v1/cases/{case_id}/messages", json={"text": "Xin gửi thêm ảnh"}, headers=platform
        ).status_code
        == 201
    )
    case = client.get(f"/v1/cases/{case_id}", headers=consumer).json()
    assert case["status"] == "negotiating"
    assert case["waiting_on_consumer"] is True
    assert (
        client.post(
            f"/v1/cases/{case_id}/messages", json={"text": "Đây ạ"}, headers=consumer
        ).status_code
        == 201
    )

    # Only the platform makes offers; only the consumer answers them.
    assert (
        client.post(
            f"/v1/cases/{case_id}/offers", json={"kind": "refund", "amount": 1}, headers=consumer
        ).status_code
        == 403
    )
    assert (
        client.post(
            f"/v1/cases/{case_id}/offers", json={"kind": "partial_refund"}, headers=platform
        ).status_code
        == 422
    )
    offer = client.post(
        f"/v1/cases/{case_id}/offers",
        json={"kind": "partial_refund", "amount": 100000, "terms": "Hoàn 100.000 đ"},
        headers=platform,
    )
    assert offer.status_code == 201, offer.text
    offer_id = offer.json()["offer_id"]
    assert (
        client.post(f"/v1/cases/{case_id}/offers/{offer_id}/accept", headers=platform).status_code
        == 403
    )

    # Escalation waits for a rejected offer (or the deadline).
    early = client.post(f"/v1/cases/{case_id}/escalate", headers=consumer)
    assert early.status_code == 409
    assert (
        client.post(
            f"/v1/cases/{case_id}/offers/{offer_id}/reject",
            json={"reason": "quá thấp"},
            headers=consumer,
        ).status_code
        == 200
    )
    esc = client.post(
        f"/v1/cases/{case_id}/escalate",
        json={"reason": "không đồng ý", "consent_share_with_neutral": True},
        headers=consumer,
    )
    assert esc.status_code == 200, esc.text
    case = esc.json()
    assert case["status"] == "escalated"
    # The consent to share the file with the neutral is on the record, with its purpose.
    consent = [e for e in case["timeline"] if e["kind"] == "consent"]
    assert [(c["purpose"], c["via"], c["actor"]["role"]) for c in consent] == [
        ("share_with_neutral", "escalation", "consumer")
    ]
    kinds = [e["kind"] for e in case["timeline"]]
    assert {"message", "evidence", "offer", "offer_rejected", "status"} <= set(kinds)
    statuses = [e["to_status"] for e in case["timeline"] if e["kind"] == "status"]
    assert statuses == ["awaiting_merchant", "negotiating", "escalated"]

    types = [e["type"] for e in outbox() if e["type"].startswith("case.")]
    assert types[0] == "case.opened"
    assert {
        "case.evidence_added",
        "case.merchant_responded",
        "case.message_posted",
        "case.offer_made",
        "case.offer_rejected",
        "case.escalated",
    } <= set(types)
    escalated = [e for e in outbox("case.escalated")][-1]["data"]
    assert escalated["previous_status"] == "negotiating"
    assert escalated["consumer"]["phone"] == "+84912345678"
    assert escalated["reference"] == created["reference"]

    # Evidence download for the parties; the bytes come back as stored.
    ev_url = case["evidence"][0]["url"]
    download = client.get(ev_url, headers=platform)
    assert download.content == PNG
    assert "filename*=UTF-8''%E1%BA%A3nh" in download.headers["content-disposition"]

    # Once escalated, a new case for the order is still refused (the case is open).
    assert (
        client.post("/v1/cases", json={"order_code": "DH200", **CASE}, headers=consumer).status_code
        == 409
    )


def test_accepted_offer_resolves_and_a_new_case_may_then_be_opened(
    client: TestClient,
    seed_order: Callable[..., str],
    outbox: Callable[..., list[dict[str, Any]]],
    bearer: Callable[..., dict[str, str]],
) -> None:
    seed_order("DH201")
    consumer = login(client, outbox, "DH201", "0912345678")
    case_id = client.post(
        "/v1/cases", json={"order_code": "DH201", **CASE}, headers=consumer
    ).json()["case_id"]
    platform = bearer("platform", platform_id="plat-a")
    offer_id = client.post(
        f"/v1/cases/{case_id}/offers", json={"kind": "replacement"}, headers=platform
    ).json()["offer_id"]
    r = client.post(f"/v1/cases/{case_id}/offers/{offer_id}/accept", headers=consumer)
    assert r.json()["status"] == "resolved"
    assert client.post(f"/v1/cases/{case_id}/withdraw", headers=consumer).status_code == 409
    again = client.post("/v1/cases", json={"order_code": "DH201", **CASE}, headers=consumer)
    assert again.status_code == 201
    records = {r["platform_id"]: r for r in client.get("/v1/platform-records").json()}
    rec = records["plat-a"]
    assert rec["cases_received"] == 2
    assert rec["settled_by_agreement_pct"] == 100.0
    assert rec["answered_in_time_pct"] == 100.0


def test_invalid_case_input_names_the_field(
    client: TestClient, seed_order: Callable[..., str], outbox: Callable[..., list[dict[str, Any]]]
) -> None:
    seed_order("DH202")
    consumer = login(client, outbox, "DH202", "0912345678")
    r = client.post(
        "/v1/cases", json={"order_code": "DH202", **CASE, "category": "bogus"}, headers=consumer
    )
    assert r.status_code == 422
    assert r.json()["errors"][0]["field"] == "category"
    r = client.post(
        "/v1/cases", json={"order_code": "DH202", **CASE, "claimed_amount": -5}, headers=consumer
    )
    assert r.json()["errors"][0]["field"] == "claimed_amount"


def test_otp_requests_are_rate_limited_per_ip(client: TestClient) -> None:
    client.app.state.deps.settings.otp_per_ip_per_hour = 3  # type: ignore[attr-defined]
    phones = ["0912000001", "0912000002", "0912000003", "0912000004"]
    statuses = [
        client.post("/v1/otp", json={"order_code": "ANY", "phone": p}).status_code for p in phones
    ]
    assert statuses == [202, 202, 202, 429]
