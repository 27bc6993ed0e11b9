"""Signing recipes: the published Standard Webhooks vector and each marketplace's HMAC."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest

from gateway.signatures import (
    SignatureError,
    standard_webhooks_headers,
    standard_webhooks_sign,
    verify_base64_hmac,
    verify_hex_hmac,
    verify_standard_webhooks,
)

# The test vector published with the Standard Webhooks reference libraries.
VECTOR_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
VECTOR_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
VECTOR_TS = 1614265330
VECTOR_BODY = b'{"test": 2432232314}'
VECTOR_SIG = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def vector_headers(signature: str = VECTOR_SIG, ts: int = VECTOR_TS) -> dict[str, str]:
    return {"webhook-id": VECTOR_ID, "webhook-timestamp": str(ts), "webhook-signature": signature}


def test_signing_reproduces_the_published_vector() -> None:
    assert standard_webhooks_sign(VECTOR_SECRET, VECTOR_ID, VECTOR_TS, VECTOR_BODY) == VECTOR_SIG


def test_the_published_vector_verifies() -> None:
    got = verify_standard_webhooks(
        [VECTOR_SECRET], vector_headers(), VECTOR_BODY, now=VECTOR_TS + 10
    )
    assert got == VECTOR_ID


def test_any_of_several_v1_signatures_may_match() -> None:
    header = f"v1,bm9wZQ== v1a,whatever {VECTOR_SIG}"
    verify_standard_webhooks([VECTOR_SECRET], vector_headers(header), VECTOR_BODY, now=VECTOR_TS)


@pytest.mark.parametrize("skew", [301, -301, 3600])
def test_a_timestamp_outside_five_minutes_is_stale(skew: int) -> None:
    with pytest.raises(SignatureError, match="tolerance"):
        verify_standard_webhooks(
            [VECTOR_SECRET], vector_headers(), VECTOR_BODY, now=VECTOR_TS + skew
        )


def test_five_minutes_exactly_is_still_fresh() -> None:
    verify_standard_webhooks([VECTOR_SECRET], vector_headers(), VECTOR_BODY, now=VECTOR_TS + 300)


@pytest.mark.parametrize(
    ("headers", "body", "reason"),
    [
        (vector_headers(), b'{"test": 2432232315}', "no signature matches"),
        (vector_headers("v1,AAAA" + VECTOR_SIG[7:]), VECTOR_BODY, "no signature matches"),
        (vector_headers("v2," + VECTOR_SIG[3:]), VECTOR_BODY, "no v1 signature"),
        ({"webhook-id": VECTOR_ID, "webhook-timestamp": str(VECTOR_TS)}, VECTOR_BODY, "missing"),
        (vector_headers(ts=VECTOR_TS + 1), VECTOR_BODY, "no signature matches"),
        ({**vector_headers(), "webhook-timestamp": "soon"}, VECTOR_BODY, "not an integer"),
    ],
    ids=["tampered-body", "tampered-sig", "wrong-version", "no-sig", "other-ts", "bad-ts"],
)
def test_tampered_or_incomplete_deliveries_fail(
    headers: dict[str, str], body: bytes, reason: str
) -> None:
    with pytest.raises(SignatureError, match=reason):
        verify_standard_webhooks([VECTOR_SECRET], headers, body, now=VECTOR_TS)


def test_a_previous_secret_still_verifies_during_rotation() -> None:
    new = "whsec_" + base64.b64encode(b"k" * 32).decode()
    verify_standard_webhooks([new, VECTOR_SECRET], vector_headers(), VECTOR_BODY, now=VECTOR_TS)
    with pytest.raises(SignatureError):
        verify_standard_webhooks([new], vector_headers(), VECTOR_BODY, now=VECTOR_TS)


def test_outbound_headers_carry_one_signature_per_secret() -> None:
    other = "whsec_" + base64.b64encode(b"o" * 32).decode()
    headers = standard_webhooks_headers([other, VECTOR_SECRET], VECTOR_ID, VECTOR_TS, VECTOR_BODY)
    sigs = headers["webhook-signature"].split(" ")
    assert len(sigs) == 2
    assert sigs[1] == VECTOR_SIG
    # A receiver holding either secret accepts the delivery.
    verify_standard_webhooks([other], headers, VECTOR_BODY, now=VECTOR_TS)
    verify_standard_webhooks([VECTOR_SECRET], headers, VECTOR_BODY, now=VECTOR_TS)


def _hex(secret: str, message: bytes) -> str:
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def test_hex_hmac_recipe_accepts_case_insensitive_hex_and_rejects_tampering() -> None:
    message = b"https://gw.example/v1/webhooks/p|" + b'{"code":3}'
    good = _hex("partner-key", message)
    verify_hex_hmac(["partner-key"], message, good, "Authorization")
    verify_hex_hmac(["partner-key"], message, good.upper(), "Authorization")
    with pytest.raises(SignatureError, match="does not match"):
        verify_hex_hmac(["partner-key"], message + b" ", good, "Authorization")
    with pytest.raises(SignatureError, match="does not match"):
        verify_hex_hmac(["other-key"], message, good, "Authorization")
    with pytest.raises(SignatureError, match="missing"):
        verify_hex_hmac(["partner-key"], message, None, "Authorization")


def test_base64_hmac_recipe() -> None:
    body = b'{"id": 1}'
    good = base64.b64encode(hmac.new(b"shop-secret", body, hashlib.sha256).digest()).decode()
    verify_base64_hmac(["shop-secret"], body, good, "X-Shopify-Hmac-Sha256")
    with pytest.raises(SignatureError):
        verify_base64_hmac(["shop-secret"], body + b"\n", good, "X-Shopify-Hmac-Sha256")
    with pytest.raises(SignatureError):
        # The hex form of the same HMAC is not what these platforms send.
        verify_base64_hmac(
            ["shop-secret"], body, _hex("shop-secret", body), "X-Shopify-Hmac-Sha256"
        )
