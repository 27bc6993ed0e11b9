"""Access: every endpoint that takes a case id or order code, every role and a second party of
each role: 404 for whatever is not theirs. JWT negatives: every forged token is 401 everywhere."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from jose import jwt
from reliability_kit import (
    ReliabilityStack,
    admin,
    bearer,
    make_platform,
    new_email,
    new_phone,
    order,
    record,
    token,
    wait_for,
)

from odr_shared.settings import DEV_JWT_SECRET

pytestmark = [pytest.mark.reliability, pytest.mark.e2e]

PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360000002000001e221bc330000000049454e44ae426082"
)


@dataclass
class Side:
    """One side of the matrix: a platform, its order and case, and who may see them."""

    platform_id: str
    code: str
    case_id: str
    offer_id: str
    evidence_id: str
    inbound_id: int
    tokens: dict[str, str]  # role label -> token of a party of this side
    neutral_ids: dict[str, str]  # mediator / arbitrator -> neutral id


def setup_side(rs: ReliabilityStack, tag: str, category: str) -> Side:
    stack = rs.stack
    platform = make_platform(stack, f"Sàn Quyền {tag}", outbound_url=rs.receiver.url)
    code = f"RA{tag}{uuid.uuid4().hex[:6].upper()}"
    assert platform.post(order(code, "delivered", 30, new_phone(), new_email(tag))).status_code
    complaints = stack.url("complaints")
    wait_for(
        lambda: (
            httpx.get(
                f"{complaints}/v1/orders/{code}",
                params={"platform_id": platform.platform_id},
                headers=admin(),
            ).status_code
            == 200
        ),
        timeout_s=60,
    )
    consumer = token(
        "consumer", order_id=f"{platform.platform_id}:{code}", platform_id=platform.platform_id
    )
    case = httpx.post(
        f"{complaints}/v1/cases",
        json={
            "order_code": code,
            "category": category,
            "description": "Hàng bị vỡ khi nhận, hộp móp.",
            "desired_outcome": "refund",
            "claimed_amount": 250000,
        },
        headers=bearer(consumer),
    )
    assert case.status_code == 201, case.text
    case_id = case.json()["case_id"]
    ptoken = platform.token()
    offer = httpx.post(
        f"{complaints}/v1/cases/{case_id}/offers",
        json={"kind": "partial_refund", "amount": 100000, "terms": "Hoàn một phần"},
        headers=bearer(ptoken),
    )
    assert offer.status_code == 201, offer.text
    evidence = httpx.post(
        f"{complaints}/v1/cases/{case_id}/evidence",
        files={"file": ("anh.png", PNG, "image/png")},
        headers=bearer(consumer),
    )
    assert evidence.status_code == 201, evidence.text
    # Real neutrals, routed by mediation: only this side's case category is theirs.
    mediation = stack.url("mediation")
    neutral_tokens: dict[str, str] = {}
    neutral_ids: dict[str, str] = {}
    for role in ("mediator", "arbitrator"):
        email, password = new_email(f"{role}{tag}"), f"mat-khau-{uuid.uuid4().hex}"
        r = httpx.post(
            f"{mediation}/v1/neutrals",
            json={
                "name": f"Trọng Tài {tag}",
                "email": email,
                "phone": new_phone(),
                "password": password,
                "roles": [role],
                "categories": [category],
                "languages": ["vi"],
            },
            headers=admin(),
        )
        assert r.status_code == 201, r.text
        neutral_ids[role] = r.json()["neutral_id"]
        login = httpx.post(
            f"{mediation}/v1/auth/login", json={"email": email, "password": password}
        )
        assert login.status_code == 200, login.text
        neutral_tokens[role] = login.json()["access_token"]
    # The consumer rejects the offer and escalates: mediation assigns the mediator; the
    # mediator refers the case to arbitration: mediation assigns the arbitrator.
    rejected = httpx.post(
        f"{complaints}/v1/cases/{case_id}/offers/{offer.json()['offer_id']}/reject",
        json={"reason": "không đủ"},
        headers=bearer(consumer),
    )
    assert rejected.status_code == 200, rejected.text
    escalated = httpx.post(
        f"{complaints}/v1/cases/{case_id}/escalate",
        json={"reason": "không thỏa thuận được"},
        headers=bearer(consumer),
    )
    assert escalated.status_code == 200, escalated.text
    med_token, arb_token = neutral_tokens["mediator"], neutral_tokens["arbitrator"]
    wait_for(
        lambda: (
            httpx.get(f"{mediation}/v1/cases/{case_id}", headers=bearer(med_token)).status_code
            == 200
        ),
        timeout_s=90,
    )
    referred = httpx.post(
        f"{mediation}/v1/cases/{case_id}/escalate",
        json={"reason": "cần trọng tài quyết định"},
        headers=bearer(med_token),
    )
    assert referred.status_code == 200, referred.text
    wait_for(
        lambda: (
            httpx.get(f"{mediation}/v1/cases/{case_id}", headers=bearer(arb_token)).status_code
            == 200
            and httpx.get(f"{complaints}/v1/cases/{case_id}", headers=bearer(arb_token)).status_code
            == 200
        ),
        timeout_s=90,
    )
    inbound_id = rs.scalar(
        "gateway",
        "SELECT max(id) FROM inbound_deliveries WHERE platform_id = :p",
        p=platform.platform_id,
    )
    return Side(
        platform.platform_id,
        code,
        case_id,
        offer.json()["offer_id"],
        evidence.json()["evidence_id"],
        int(inbound_id),
        {"consumer": consumer, "platform": ptoken, "mediator": med_token, "arbitrator": arb_token},
        neutral_ids,
    )


def endpoints(
    rs: ReliabilityStack, s: Side
) -> list[tuple[str, str, str, dict[str, Any], set[str]]]:
    """(service, method, path, request kwargs, roles of s that may reach it) for side s."""
    c, cid = "complaints", s.case_id
    reason = {"json": {"reason": "thử quyền"}}
    case_roles = {"consumer", "platform", "mediator", "arbitrator"}
    out: list[tuple[str, str, str, dict[str, Any], set[str]]] = [
        (
            c,
            "GET",
            f"/v1/orders/{s.code}",
            {"params": {"platform_id": s.platform_id}},
            {"consumer", "platform"},
        ),
        (c, "GET", f"/v1/orders/{s.code}", {}, {"consumer", "platform"}),
        (c, "GET", f"/v1/cases/{cid}", {}, case_roles),
        (c, "GET", f"/v1/cases/{cid}/messages", {}, case_roles),
        (c, "POST", f"/v1/cases/{cid}/messages", {"json": {"text": "xin chào"}}, case_roles),
        (c, "GET", f"/v1/cases/{cid}/evidence", {}, case_roles),
        (c, "GET", f"/v1/cases/{cid}/evidence/{s.evidence_id}", {}, case_roles),
        (
            c,
            "POST",
            f"/v1/cases/{cid}/evidence",
            {"files": {"file": ("b.png", PNG, "image/png")}},
            case_roles,
        ),
        (c, "POST", f"/v1/cases/{cid}/offers", {"json": {"kind": "replacement"}}, case_roles),
        (c, "POST", f"/v1/cases/{cid}/offers/{s.offer_id}/accept", reason, case_roles),
        (c, "POST", f"/v1/cases/{cid}/offers/{s.offer_id}/reject", reason, case_roles),
        (c, "POST", f"/v1/cases/{cid}/proposals/prop-x/accept", reason, case_roles),
        (c, "POST", f"/v1/cases/{cid}/proposals/prop-x/reject", reason, case_roles),
        (c, "POST", f"/v1/cases/{cid}/escalate", reason, case_roles),
        (c, "POST", f"/v1/cases/{cid}/withdraw", reason, case_roles),
    ]
    g, pid = "gateway", s.platform_id
    out += [
        (g, "GET", f"/v1/platforms/{pid}", {}, {"platform"}),
        (g, "PATCH", f"/v1/platforms/{pid}", {"json": {"name": "Đổi tên"}}, {"platform"}),
        (g, "POST", f"/v1/platforms/{pid}/rotate-secret", {}, {"platform"}),
        (g, "GET", f"/v1/platforms/{pid}/clients", {}, set()),
        (g, "POST", f"/v1/platforms/{pid}/clients", {}, set()),
        (g, "GET", f"/v1/platforms/{pid}/inbound-deliveries", {}, {"platform"}),
        (g, "GET", f"/v1/platforms/{pid}/inbound-deliveries/{s.inbound_id}", {}, {"platform"}),
        (
            g,
            "POST",
            f"/v1/platforms/{pid}/inbound-deliveries/{s.inbound_id}/replay",
            {},
            {"platform"},
        ),
        (g, "GET", f"/v1/platforms/{pid}/deliveries", {}, {"platform"}),
        (g, "POST", f"/v1/platforms/{pid}/deliveries/msg_x/replay", {}, {"platform"}),
        (
            g,
            "PUT",
            f"/v1/platforms/{pid}/orders/{s.code}",
            {"json": order(s.code, "delivered", 31, new_phone(), new_email("put"))},
            {"platform"},
        ),
    ]
    m, med, arb = "mediation", s.neutral_ids["mediator"], s.neutral_ids["arbitrator"]
    neutrals = {"mediator", "arbitrator"}
    out += [
        (m, "GET", f"/v1/cases/{cid}", {}, neutrals),
        (m, "GET", f"/v1/cases/{cid}/routing", {}, set()),
        (
            m,
            "POST",
            f"/v1/cases/{cid}/proposals",
            {"json": {"outcome": "replacement", "terms": "Đổi hàng mới"}},
            neutrals,
        ),
        (m, "POST", f"/v1/cases/{cid}/messages", {"json": {"body": "xin chào"}}, neutrals),
        (m, "POST", f"/v1/cases/{cid}/escalate", {"json": {"reason": "thử quyền"}}, neutrals),
        (
            m,
            "POST",
            f"/v1/cases/{cid}/decision",
            {"json": {"outcome": "claim_rejected", "reasons": "Thử quyền truy cập của người lạ."}},
            neutrals,
        ),
        (m, "GET", f"/v1/neutrals/{med}", {}, {"mediator"}),
        (m, "GET", f"/v1/neutrals/{arb}", {}, {"arbitrator"}),
        (m, "PATCH", f"/v1/neutrals/{med}", {"json": {"on_leave": True}}, set()),
    ]
    return out


def mediation_state(rs: ReliabilityStack) -> tuple[Any, ...]:
    """Every mediation table's row count (a stranger's call must add nothing)."""
    return tuple(
        (t, rs.scalar("mediation", f'SELECT count(*) FROM "{t}"'))  # noqa: S608 - table names
        for t in rs.tables("mediation")
        if t not in ("inbox_events", "rate_limit_windows")
    )


def case_state(rs: ReliabilityStack, case_id: str) -> tuple[Any, ...]:
    status = rs.one("complaints", "SELECT status FROM cases WHERE id = :c", c=case_id)
    timeline = rs.scalar(
        "complaints", "SELECT count(*) FROM case_timeline WHERE case_id = :c", c=case_id
    )
    offers = sorted(
        rs.rows("complaints", "SELECT status FROM case_offers WHERE case_id = :c", c=case_id)
    )
    evidence = rs.scalar(
        "complaints", "SELECT count(*) FROM case_evidence WHERE case_id = :c", c=case_id
    )
    platform = rs.one(
        "gateway",
        "SELECT name, signing_secret_enc FROM platforms p JOIN (SELECT platform_id FROM "
        "order_snapshots WHERE order_id LIKE :o LIMIT 1) o ON o.platform_id = p.id",
        o=f"%:{case_id}",
    )
    return (status, timeline, offers, evidence, platform)


def test_access_matrix_every_stranger_gets_404(rstack: ReliabilityStack) -> None:
    a, b = setup_side(rstack, "A", "damaged"), setup_side(rstack, "B", "not_as_described")
    calls = 0
    refused: dict[str, int] = {}
    leaks: list[str] = []
    forbidden_403 = 0
    for owner, stranger in ((a, b), (b, a)):
        # Let the events of the set-up settle before taking the snapshot.
        before, mediation_before = None, None
        for _ in range(30):
            now = (case_state(rstack, owner.case_id), mediation_state(rstack))
            if now == (before, mediation_before):
                break
            before, mediation_before = now
            time.sleep(1.5)
        platform_before = rstack.one(
            "gateway",
            "SELECT name, signing_secret_enc FROM platforms WHERE id = :p",
            p=owner.platform_id,
        )
        for service, method, path, kwargs, _roles in endpoints(rstack, owner):
            url = rstack.stack.url(service) + path
            for role, tok in stranger.tokens.items():
                r = httpx.request(method, url, headers=bearer(tok), timeout=30, **kwargs)
                calls += 1
                if r.status_code == 404:
                    refused[role] = refused.get(role, 0) + 1
                    continue
                if r.status_code == 403:
                    # A role check, not an object check: only fine if a made-up id answers the
                    # same (no oracle), and nothing changed (checked below).
                    fake = path.replace(owner.case_id, "case-x").replace(owner.platform_id, "pf_x")
                    for nid in owner.neutral_ids.values():
                        fake = fake.replace(nid, "ntr-x")
                    r2 = httpx.request(
                        method,
                        rstack.stack.url(service) + fake,
                        headers=bearer(tok),
                        timeout=30,
                        **kwargs,
                    )
                    if r2.status_code == 403:
                        forbidden_403 += 1
                        refused[role] = refused.get(role, 0) + 1
                        continue
                leaks.append(f"{role} of the other side: {method} {path} -> {r.status_code}")
        # Nothing a stranger did changed the owner's case or platform.
        assert case_state(rstack, owner.case_id) == before
        assert mediation_state(rstack) == mediation_before
        assert (
            rstack.one(
                "gateway",
                "SELECT name, signing_secret_enc FROM platforms WHERE id = :p",
                p=owner.platform_id,
            )
            == platform_before
        )
        # Owners' reads work (the matrix would prove nothing if everyone got 404).
        for service, method, path, kwargs, roles in endpoints(rstack, owner):
            if method != "GET":
                continue
            for role in roles:
                r = httpx.request(
                    method,
                    rstack.stack.url(service) + path,
                    headers=bearer(owner.tokens[role]),
                    timeout=30,
                    **kwargs,
                )
                calls += 1
                assert r.status_code == 200, (role, path, r.status_code, r.text[:200])
            r = httpx.request(
                method, rstack.stack.url(service) + path, headers=admin(), timeout=30, **kwargs
            )
            calls += 1
            assert r.status_code in (200, 400), (path, r.status_code)

    # Lists: nobody's list shows the other side's case or order.
    lists = 0
    for owner, stranger in ((a, b), (b, a)):
        for role, tok in stranger.tokens.items():
            r = httpx.get(f"{rstack.stack.url('complaints')}/v1/cases", headers=bearer(tok))
            lists += 1
            assert r.status_code in (200, 403), r.text
            if r.status_code == 200:
                assert owner.case_id not in r.text, role
            if role in ("mediator", "arbitrator"):
                r = httpx.get(
                    f"{rstack.stack.url('mediation')}/v1/assignments", headers=bearer(tok)
                )
                lists += 1
                assert r.status_code == 200, r.text
                assert owner.case_id not in r.text, role
            r = httpx.get(
                f"{rstack.stack.url('notifications')}/v1/deliveries",
                params={"case_id": owner.case_id},
                headers=bearer(tok),
            )
            lists += 1
            assert r.status_code in (200, 403), r.text
            if r.status_code == 200:
                assert r.json() == [], role
    # The owner's consumer does see its case's deliveries (masked).
    mine = wait_for(
        lambda: httpx.get(
            f"{rstack.stack.url('notifications')}/v1/deliveries",
            params={"case_id": a.case_id},
            headers=bearer(a.tokens["consumer"]),
        ).json(),
        timeout_s=60,
    )
    assert all(d["case_id"] == a.case_id for d in mine)
    record(
        "access_matrix",
        endpoints_per_side=len(endpoints(rstack, a)),
        roles=[*sorted(a.tokens), "admin"],
        calls=calls + lists,
        strangers_refused=sum(refused.values()),
        refused_by_role=refused,
        of_which_403_role_checks=forbidden_403,
        list_checks=lists,
        leaks=len(leaks),
    )
    assert leaks == [], "\n".join(leaks)


# -- JWT negative suite -----------------------------------------------------------------------


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _claims(**over: Any) -> dict[str, Any]:
    now = int(time.time())
    claims = {
        "iss": "odr-platform",
        "aud": "odr-api",
        "sub": "attacker",
        "iat": now,
        "nbf": now,
        "exp": now + 600,
        "jti": uuid.uuid4().hex,
        "role": "admin",
    }
    claims.update(over)
    return {k: v for k, v in claims.items() if v is not None}


def _hand_signed(header: dict[str, Any], claims: dict[str, Any], key: bytes | None) -> str:
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
    sig = b"" if key is None else hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(sig)}"


def forged_tokens() -> dict[str, str]:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    secret = DEV_JWT_SECRET
    genuine = token("consumer", order_id="pf_x:DH1", platform_id="pf_x")
    head, payload, sig = genuine.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["role"] = "admin"
    tampered = f"{head}.{_b64(json.dumps(claims).encode())}.{sig}"
    past = datetime.now(UTC) - timedelta(hours=2)
    return {
        "alg_none": _hand_signed({"alg": "none", "typ": "JWT"}, _claims(), None),
        "alg_None_case": _hand_signed({"alg": "None", "typ": "JWT"}, _claims(), None),
        "rs256_attacker_key": jwt.encode(_claims(), pem, algorithm="RS256"),
        "rs_header_hmac_with_public_key": _hand_signed(
            {"alg": "RS256", "typ": "JWT"}, _claims(), public_pem
        ),
        "rs_header_hmac_with_secret": _hand_signed(
            {"alg": "RS256", "typ": "JWT"}, _claims(), secret.encode()
        ),
        "hs512_right_secret": jwt.encode(_claims(), secret, algorithm="HS512"),
        "wrong_secret": jwt.encode(_claims(), "not-the-secret-" * 4, algorithm="HS256"),
        "wrong_aud": jwt.encode(_claims(aud="another-api"), secret, algorithm="HS256"),
        "wrong_iss": jwt.encode(_claims(iss="evil-issuer"), secret, algorithm="HS256"),
        "expired": jwt.encode(
            _claims(
                iat=int(past.timestamp()), nbf=int(past.timestamp()), exp=int(past.timestamp()) + 60
            ),
            secret,
            algorithm="HS256",
        ),
        "missing_exp": jwt.encode(_claims(exp=None), secret, algorithm="HS256"),
        "missing_sub": jwt.encode(_claims(sub=None), secret, algorithm="HS256"),
        "not_yet_valid": jwt.encode(
            _claims(nbf=int(time.time()) + 3600), secret, algorithm="HS256"
        ),
        "unknown_role": jwt.encode(_claims(role="superuser"), secret, algorithm="HS256"),
        "tampered_payload": tampered,
        "truncated_signature": genuine[:-6],
        "garbage": "not.a.jwt",
    }


def test_every_forged_token_is_401_on_every_service(rstack: ReliabilityStack) -> None:
    stack = rstack.stack
    targets = {
        "gateway": "/v1/platforms",
        "complaints": "/v1/cases",
        "notifications": "/v1/deliveries",
        "mediation": "/v1/queue",
    }
    # The targets answer a genuine admin token (so 401 below is the token's fault).
    for service, path in targets.items():
        assert httpx.get(stack.url(service) + path, headers=admin()).status_code == 200, service
    results: dict[str, dict[str, int]] = {}
    for name, tok in forged_tokens().items():
        for service, path in targets.items():
            r = httpx.get(stack.url(service) + path, headers=bearer(tok))
            results.setdefault(name, {})[service] = r.status_code
    for service, path in targets.items():
        for label, headers in (
            ("no_header", {}),
            ("empty_bearer", {"Authorization": "Bearer"}),
            ("basic_auth", {"Authorization": "Basic YWRtaW46YWRtaW4="}),
        ):
            r = httpx.get(stack.url(service) + path, headers=headers)
            results.setdefault(label, {})[service] = r.status_code
    bad = {n: r for n, r in results.items() if set(r.values()) != {401}}
    record(
        "jwt_negative",
        forged_kinds=len(results),
        services=len(targets),
        requests=sum(len(r) for r in results.values()),
        answered_401=sum(1 for r in results.values() for s in r.values() if s == 401),
        not_401=bad,
    )
    assert bad == {}
