"""JWT issue/verify: pinned algorithm, iss/aud/exp, role scopes, and the attacks on them."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from datetime import timedelta

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jose import jwt

from odr_shared.auth import InvalidToken, TokenService
from odr_shared.settings import ServiceSettings

SECRET = "test-secret-0123456789abcdef0123456789abcdef"


def hs_service(**kw: str) -> TokenService:
    return TokenService(ServiceSettings(jwt_secret=SECRET, **kw))  # type: ignore[arg-type]


def b64(d: dict[str, object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(d).encode()).rstrip(b"=").decode()


def claims(**over: object) -> dict[str, object]:
    now = int(time.time())
    base: dict[str, object] = {
        "iss": "odr-platform",
        "aud": "odr-api",
        "sub": "admin-1",
        "iat": now,
        "exp": now + 60,
        "role": "admin",
    }
    base.update(over)
    return {k: v for k, v in base.items() if v is not None}


def test_issued_tokens_verify_with_their_scope() -> None:
    svc = hs_service()
    token = svc.issue(
        role="consumer",
        subject="+84912345678",
        ttl=timedelta(minutes=5),
        order_id="p1:DH1",
        platform_id="p1",
    )
    party = svc.verify(token)
    assert (party.role, party.order_id, party.platform_id) == ("consumer", "p1:DH1", "p1")


def test_alg_none_is_refused() -> None:
    token = f"{b64({'alg': 'none', 'typ': 'JWT'})}.{b64(claims())}."
    with pytest.raises(InvalidToken, match="algorithm"):
        hs_service().verify(token)


def test_rs_hs_confusion_is_refused() -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public_pem = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    private_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    rs = TokenService(
        ServiceSettings(
            jwt_algorithm="RS256", jwt_public_key=public_pem, jwt_private_key=private_pem
        )  # type: ignore[arg-type]
    )
    good = rs.issue(role="admin", subject="a", ttl=timedelta(minutes=1))
    assert rs.verify(good).role == "admin"
    # An attacker signs HS256 with the *public* key as the HMAC secret.
    header = b64({"alg": "HS256", "typ": "JWT"})
    body = b64(claims())
    sig = hmac.new(public_pem.encode(), f"{header}.{body}".encode(), hashlib.sha256).digest()
    forged = f"{header}.{body}.{base64.urlsafe_b64encode(sig).rstrip(b'=').decode()}"
    with pytest.raises(InvalidToken, match="algorithm"):
        rs.verify(forged)


@pytest.mark.parametrize(
    ("over", "reason"),
    [
        ({"aud": "someone-else"}, "audience"),
        ({"iss": "evil"}, "issuer"),
        ({"exp": int(time.time()) - 3600}, "expired"),
        ({"exp": None}, "exp"),
        ({"role": "superuser"}, "role"),
        ({"role": "consumer"}, "order"),
        ({"role": "platform"}, "platform"),
        ({"role": "mediator"}, "neutral"),
    ],
)
def test_bad_claims_are_refused(over: dict[str, object], reason: str) -> None:
    token = jwt.encode(claims(**over), SECRET, algorithm="HS256")
    with pytest.raises(InvalidToken, match=reason):
        hs_service().verify(token)


def test_tampered_payload_and_wrong_key_are_refused() -> None:
    svc = hs_service()
    token = svc.issue(role="platform", subject="c", ttl=timedelta(minutes=1), platform_id="p1")
    header, _payload, sig = token.split(".")
    tampered = f"{header}.{b64(claims(role='platform', platform_id='p2'))}.{sig}"
    with pytest.raises(InvalidToken):
        svc.verify(tampered)
    other = jwt.encode(claims(), "another-secret-0123456789abcdef0123456789", algorithm="HS256")
    with pytest.raises(InvalidToken):
        svc.verify(other)


def test_production_refuses_placeholder_secrets() -> None:
    with pytest.raises(ValueError, match="JWT_SECRET"):
        ServiceSettings(environment="production")  # type: ignore[call-arg]
    with pytest.raises(ValueError, match="DATA_ENCRYPTION_KEY"):
        ServiceSettings(environment="production", jwt_secret=SECRET)  # type: ignore[call-arg]
    with pytest.raises(ValueError, match="PRIVACY_MASTER_KEY"):
        ServiceSettings(
            environment="production",
            jwt_secret=SECRET,
            data_encryption_key="k" * 44,  # type: ignore[call-arg]
        )
    with pytest.raises(ValueError, match="PRIVACY_SUBJECT_KEY"):
        ServiceSettings(
            environment="production",
            jwt_secret=SECRET,
            data_encryption_key="k" * 44,  # type: ignore[call-arg]
            privacy_master_key="m" * 44,
        )
    ok = ServiceSettings(
        environment="production",
        jwt_secret=SECRET,
        data_encryption_key="k" * 44,  # type: ignore[call-arg]
        privacy_master_key="m" * 44,
        privacy_subject_key="s" * 44,
    )
    assert ok.environment == "production"
