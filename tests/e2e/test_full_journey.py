"""The whole dispute across all four services on the running platform, as its users drive it.

A marketplace's webhook creates the order; the buyer proves the phone with the code that the
notifications service really sent to the SMS sink; files a case; rejects the merchant's offer;
escalates. Mediation routes the case to the only eligible mediator, who proposes; the buyer
rejects; the mediator refers the case to arbitration; the arbitrator decides. Complaints follows
every step from mediation's events, and the buyer is told by SMS.
"""

from __future__ import annotations

import json
import re
import uuid
from datetime import timedelta
from typing import Any

import httpx
import pytest
from journey_support import bearer, eventually, sms_to

from odr_cli.stack import Stack
from odr_shared.auth import TokenService
from odr_shared.settings import ServiceSettings
from odr_shared.testing import (
    sample_order,
    standard_webhook_headers,
    standard_webhook_signed_by,
)

pytestmark = pytest.mark.e2e


def test_a_dispute_goes_from_webhook_to_arbitration_decision(stack: Stack) -> None:
    gw, complaints, mediation = (stack.url(n) for n in ("gateway", "complaints", "mediation"))
    admin = bearer(
        TokenService(ServiceSettings()).issue(
            role="admin", subject="e2e-journey", ttl=timedelta(minutes=30)
        )
    )
    suffix = uuid.uuid4().hex[:6]
    # A buyer phone no other test uses, so the SMS sink lines are this test's alone.
    digits = f"{int(suffix, 16) % 10_000_000:07d}"
    phone_local, phone_e164 = f"093{digits}", f"+8493{digits}"

    # The marketplace and the neutrals.
    platform = httpx.post(
        f"{gw}/v1/platforms", json={"name": f"Sàn {suffix}", "kind": "standard"}, headers=admin
    ).json()
    category = "damaged"
    neutrals = {}
    for role in ("mediator", "arbitrator"):
        email = f"{role}-{suffix}@example.vn"
        r = httpx.post(
            f"{mediation}/v1/neutrals",
            json={
                "name": f"{role.title()} {suffix}",
                "email": email,
                "phone": "0901234567",
                "password": "correct horse battery staple",
                "roles": [role],
                "categories": [category],
                "languages": ["vi"],
                "max_active_cases": 5,
            },
            headers=admin,
        )
        assert r.status_code == 201, r.text
        login = httpx.post(
            f"{mediation}/v1/auth/login",
            json={"email": email, "password": "correct horse battery staple"},
        )
        assert login.status_code == 200, login.text
        neutrals[role] = {
            "id": r.json()["neutral_id"],
            "auth": bearer(login.json()["access_token"]),
        }

    # 1. The order arrives from the marketplace.
    code = f"DH{suffix.upper()}"
    order = sample_order(code, buyer={"name": "Lê Thị Mai", "phone": phone_local})
    body = json.dumps(
        {"type": "order.updated", "timestamp": "2026-11-20T03:00:00Z", "data": order}
    ).encode()
    r = httpx.post(
        f"{gw}/v1/webhooks/{platform['platform_id']}",
        content=body,
        headers=standard_webhook_headers(platform["webhook_secret"], body),
        timeout=60,
    )
    assert r.status_code == 202, r.text

    eventually(
        lambda: (
            httpx.get(
                f"{complaints}/v1/orders/{code}",
                params={"platform_id": platform["platform_id"]},
                headers=admin,
            ).status_code
            == 200
        ),
        "the order in complaints",
    )

    # 2. The buyer asks for a code; notifications sends it to the SMS provider (the sink).
    r = httpx.post(f"{complaints}/v1/otp", json={"order_code": code, "phone": phone_local})
    assert r.status_code == 202, r.text

    def code_sent() -> str | None:
        texts = sms_to(stack.var, phone_e164)
        found = re.search(r"\b(\d{6})\b", texts[-1]) if texts else None
        return found.group(1) if found else None

    otp = eventually(code_sent, "the one-time code SMS")
    verified = httpx.post(
        f"{complaints}/v1/otp/verify", json={"order_code": code, "phone": phone_e164, "code": otp}
    )
    assert verified.status_code == 200, verified.text
    buyer = bearer(verified.json()["access_token"])

    # 3. The buyer files a case; the platform answers with an offer the buyer rejects.
    created = httpx.post(
        f"{complaints}/v1/cases",
        json={
            "order_code": code,
            "category": category,
            "description": "Áo bị rách khi nhận hàng, shop không trả lời.",
            "desired_outcome": "refund",
            "claimed_amount": 300000,
        },
        headers=buyer,
    )
    assert created.status_code == 201, created.text
    case_id = created.json()["case_id"]
    assert created.json()["status"] == "awaiting_merchant"
    platform_token = httpx.post(
        f"{gw}/v1/oauth/token",
        data={
            "grant_type": "client_credentials",
            "client_id": platform["client_id"],
            "client_secret": platform["client_secret"],
        },
    ).json()["access_token"]
    offer = httpx.post(
        f"{complaints}/v1/cases/{case_id}/offers",
        json={"kind": "partial_refund", "amount": 50000, "terms": "Hoàn 50.000 đ"},
        headers=bearer(platform_token),
    )
    assert offer.status_code == 201, offer.text
    offer_id = offer.json()["offer_id"]
    r = httpx.post(f"{complaints}/v1/cases/{case_id}/offers/{offer_id}/reject", headers=buyer)
    assert r.status_code == 200, r.text
    r = httpx.post(f"{complaints}/v1/cases/{case_id}/escalate", json={}, headers=buyer)
    assert r.status_code == 200, r.text

    def case_view() -> dict[str, Any]:
        resp = httpx.get(f"{complaints}/v1/cases/{case_id}", headers=buyer)
        assert resp.status_code == 200, resp.text
        return resp.json()  # type: ignore[no-any-return]

    # 4. Mediation routes it to the mediator; complaints hears of it.
    in_mediation = eventually(
        lambda: (v := case_view())["status"] == "in_mediation" and v, "the case in mediation"
    )
    assert in_mediation["neutral_id"] == neutrals["mediator"]["id"]
    queue = httpx.get(f"{mediation}/v1/assignments", headers=neutrals["mediator"]["auth"]).json()
    assert case_id in json.dumps(queue)
    # The arbitrator is not assigned yet: the case is not theirs to see.
    assert (
        httpx.get(f"{complaints}/v1/cases/{case_id}", headers=neutrals["arbitrator"]["auth"])
    ).status_code == 404

    # 5. The mediator proposes; the buyer sees the proposal and rejects it.
    r = httpx.post(
        f"{mediation}/v1/cases/{case_id}/proposals",
        json={"outcome": "partial_refund", "amount": 150000, "terms": "Hoàn 150.000 đ"},
        headers=neutrals["mediator"]["auth"],
    )
    assert r.status_code == 201, r.text
    proposal = eventually(
        lambda: next(iter(case_view().get("proposals") or []), None), "the proposal in complaints"
    )
    r = httpx.post(
        f"{complaints}/v1/cases/{case_id}/proposals/{proposal['proposal_id']}/reject",
        json={},
        headers=buyer,
    )
    assert r.status_code == 200, r.text

    # 6. The mediator refers the case to arbitration; the arbitrator decides.
    r = httpx.post(
        f"{mediation}/v1/cases/{case_id}/escalate",
        json={"reason": "Hai bên không thống nhất được."},
        headers=neutrals["mediator"]["auth"],
    )
    assert r.status_code == 200, r.text
    eventually(lambda: case_view()["status"] == "in_arbitration", "the case in arbitration")
    eventually(
        lambda: (
            httpx.get(
                f"{mediation}/v1/cases/{case_id}", headers=neutrals["arbitrator"]["auth"]
            ).status_code
            == 200
        ),
        "the arbitrator's assignment",
    )
    r = httpx.post(
        f"{mediation}/v1/cases/{case_id}/decision",
        json={
            "outcome": "full_refund",
            "amount": 300000,
            "reasons": "Ảnh chụp cho thấy hàng hỏng khi giao; người bán phải hoàn tiền.",
        },
        headers=neutrals["arbitrator"]["auth"],
    )
    assert r.status_code in (200, 201), r.text

    final = eventually(
        lambda: (v := case_view())["status"] in ("decided", "closed") and v, "the decision"
    )
    assert "full_refund" in json.dumps(final, ensure_ascii=False)

    # 7. The buyer was told by SMS along the way (code, case opened, and more), once each.
    reference = created.json()["reference"]
    texts = eventually(
        lambda: (t := sms_to(stack.var, phone_e164)) and sum(reference in x for x in t) >= 3 and t,
        "the case messages by SMS",
    )
    assert len(texts) == len(set(texts)), texts


class Receiver:
    """The marketplace's outbound_url: a real HTTP server recording what it is sent."""

    def __init__(self) -> None:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        received: list[tuple[dict[str, str], bytes]] = []
        self.received = received

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                received.append(
                    ({k.lower(): v for k, v in self.headers.items()}, self.rfile.read(length))
                )
                self.send_response(204)
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/odr-hooks"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_a_dispute_settled_by_agreement_reaches_the_marketplace_signed(stack: Stack) -> None:
    gw, complaints, mediation = (stack.url(n) for n in ("gateway", "complaints", "mediation"))
    admin = bearer(
        TokenService(ServiceSettings()).issue(
            role="admin", subject="e2e-agreement", ttl=timedelta(minutes=30)
        )
    )
    receiver = Receiver()
    try:
        suffix = uuid.uuid4().hex[:6]
        platform = httpx.post(
            f"{gw}/v1/platforms",
            json={"name": f"Sàn {suffix}", "kind": "standard", "outbound_url": receiver.url},
            headers=admin,
        ).json()
        # A category only this test's mediator handles, so routing has one candidate.
        category = "counterfeit"
        email = f"med-{suffix}@example.vn"
        r = httpx.post(
            f"{mediation}/v1/neutrals",
            json={
                "name": f"Mediator {suffix}",
                "email": email,
                "phone": "0901234567",
                "password": "correct horse battery staple",
                "roles": ["mediator"],
                "categories": [category],
                "languages": ["vi"],
                "max_active_cases": 50,
            },
            headers=admin,
        )
        assert r.status_code == 201, r.text
        neutral_id = r.json()["neutral_id"]

        def mediator_load() -> int:
            resp = httpx.get(f"{mediation}/v1/neutrals/{neutral_id}", headers=admin)
            return int(resp.json()["active_cases"])

        mediator = bearer(
            httpx.post(
                f"{mediation}/v1/auth/login",
                json={"email": email, "password": "correct horse battery staple"},
            ).json()["access_token"]
        )
        code = f"AG{suffix.upper()}"
        body = json.dumps(
            {
                "type": "order.updated",
                "timestamp": "2026-11-20T03:00:00Z",
                "data": sample_order(code),
            }
        ).encode()
        r = httpx.post(
            f"{gw}/v1/webhooks/{platform['platform_id']}",
            content=body,
            headers=standard_webhook_headers(platform["webhook_secret"], body),
            timeout=60,
        )
        assert r.status_code == 202, r.text
        order_id = f"{platform['platform_id']}:{code}"
        # The buyer's token as complaints would issue it after the one-time code.
        buyer = bearer(
            TokenService(ServiceSettings()).issue(
                role="consumer",
                subject="+84912345678",
                ttl=timedelta(minutes=30),
                order_id=order_id,
                platform_id=platform["platform_id"],
            )
        )
        created = eventually(
            lambda: (
                (
                    resp := httpx.post(
                        f"{complaints}/v1/cases",
                        json={
                            "order_code": code,
                            "category": category,
                            "description": "Hàng giả, không đúng thương hiệu như quảng cáo.",
                            "desired_outcome": "refund",
                            "claimed_amount": 300000,
                        },
                        headers=buyer,
                    )
                ).status_code
                == 201
                and resp.json()
            ),
            "the case to open once complaints has the order",
        )
        case_id = created["case_id"]
        platform_auth = bearer(
            httpx.post(
                f"{gw}/v1/oauth/token",
                data={
                    "grant_type": "client_credentials",
                    "client_id": platform["client_id"],
                    "client_secret": platform["client_secret"],
                },
            ).json()["access_token"]
        )
        # The platform escalates straight away (it may, during negotiation).
        r = httpx.post(
            f"{complaints}/v1/cases/{case_id}/messages",
            json={"text": "Chúng tôi sẽ kiểm tra."},
            headers=platform_auth,
        )
        assert r.status_code == 201, r.text
        r = httpx.post(f"{complaints}/v1/cases/{case_id}/escalate", json={}, headers=platform_auth)
        assert r.status_code == 200, r.text

        def view() -> dict[str, Any]:
            return httpx.get(f"{complaints}/v1/cases/{case_id}", headers=buyer).json()  # type: ignore[no-any-return]

        eventually(lambda: view()["status"] == "in_mediation", "mediation to start")
        assert mediator_load() == 1
        r = httpx.post(
            f"{mediation}/v1/cases/{case_id}/proposals",
            json={"outcome": "full_refund", "amount": 300000, "terms": "Hoàn toàn bộ tiền"},
            headers=mediator,
        )
        assert r.status_code == 201, r.text
        proposal = eventually(lambda: next(iter(view().get("proposals") or []), None), "proposal")
        for party in (buyer, platform_auth):
            r = httpx.post(
                f"{complaints}/v1/cases/{case_id}/proposals/{proposal['proposal_id']}/accept",
                json={},
                headers=party,
            )
            assert r.status_code == 200, r.text
        assert view()["status"] == "resolved"

        # Mediation frees the mediator once the case is resolved.
        eventually(lambda: mediator_load() == 0, "the mediator's capacity to free")

        # The marketplace received the case's story, each delivery signed with its secret,
        # with no buyer contact data in it.
        def types_received() -> set[str]:
            return {json.loads(b).get("type", "") for _h, b in receiver.received}

        eventually(
            lambda: {"case.opened", "case.escalated", "case.resolved"} <= types_received() or None,
            "outbound webhooks",
        )
        for headers, raw in receiver.received:
            assert standard_webhook_signed_by(platform["webhook_secret"], headers, raw)
            assert "0912345678" not in raw.decode()
            assert "an.nguyen@example.vn" not in raw.decode()
    finally:
        receiver.close()
