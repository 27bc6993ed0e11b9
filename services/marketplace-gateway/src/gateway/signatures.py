"""Webhook signature recipes, compared in constant time over the raw request bytes."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Iterable, Mapping


class SignatureError(Exception):
    """The delivery is not authentic or not fresh: answer 401."""


def standard_webhooks_key(secret: str) -> bytes:
    """A Standard Webhooks secret is `whsec_` + base64 of the key bytes."""
    raw = secret.removeprefix("whsec_")
    try:
        return base64.b64decode(raw, validate=True)
    except ValueError as exc:
        raise ValueError("a whsec_ secret must be base64") from exc


def standard_webhooks_sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    key = standard_webhooks_key(secret)
    signed = f"{msg_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


def verify_standard_webhooks(
    secrets: Iterable[str],
    headers: Mapping[str, str],
    body: bytes,
    *,
    tolerance_s: int = 300,
    now: float | None = None,
) -> str:
    """Verify `webhook-id`, `webhook-timestamp`, `webhook-signature`; returns the message id."""
    msg_id = headers.get("webhook-id")
    ts_raw = headers.get("webhook-timestamp")
    sig_header = headers.get("webhook-signature")
    if not msg_id or not ts_raw or not sig_header:
        raise SignatureError("missing webhook-id, webhook-timestamp or webhook-signature")
    try:
        ts = int(ts_raw)
    except ValueError as exc:
        raise SignatureError("webhook-timestamp is not an integer") from exc
    now = time.time() if now is None else now
    if abs(now - ts) > tolerance_s:
        raise SignatureError("webhook-timestamp outside the tolerance window")
    offered = [
        s.split(",", 1)[1].encode()
        for s in sig_header.split(" ")
        if s.startswith("v1,") and "," in s
    ]
    if not offered:
        raise SignatureError("no v1 signature")
    matched = False
    for secret in secrets:
        try:
            expected = standard_webhooks_sign(secret, msg_id, ts, body).split(",", 1)[1].encode()
        except ValueError:
            continue
        # Compare against every offered signature without stopping early.
        for candidate in offered:
            matched |= hmac.compare_digest(expected, candidate)
    if matched:
        return msg_id
    raise SignatureError("no signature matches")


def hmac_sha256(secret: str, message: bytes) -> bytes:
    return hmac.new(secret.encode(), message, hashlib.sha256).digest()


def _matches_any(expected: Iterable[bytes], offered: bytes) -> bool:
    # Check every candidate secret without stopping early: the time taken does not say which
    # secret (current or previous) matched, or how far a guess got.
    matched = False
    for candidate in expected:
        matched |= hmac.compare_digest(candidate, offered)
    return matched


def verify_hex_hmac(
    secrets: Iterable[str], message: bytes, offered: str | None, header: str
) -> None:
    """Shopee, Lazada, TikTok Shop: lowercase hex HMAC-SHA256 of a recipe-specific message."""
    if not offered:
        raise SignatureError(f"missing {header} header")
    expected = [hmac_sha256(s, message).hex().encode() for s in secrets]
    if not _matches_any(expected, offered.strip().lower().encode()):
        raise SignatureError(f"{header} does not match the body")


def verify_base64_hmac(
    secrets: Iterable[str], body: bytes, offered: str | None, header: str
) -> None:
    """Shopify, Haravan, Sapo: base64 HMAC-SHA256 of the raw body."""
    if not offered:
        raise SignatureError(f"missing {header} header")
    expected = [base64.b64encode(hmac_sha256(s, body)) for s in secrets]
    if not _matches_any(expected, offered.strip().encode()):
        raise SignatureError(f"{header} does not match the body")


def standard_webhooks_headers(
    secrets: Iterable[str], msg_id: str, timestamp: int, body: bytes
) -> dict[str, str]:
    """Headers for an outbound delivery; during a rotation it carries one signature per secret."""
    signatures = " ".join(standard_webhooks_sign(s, msg_id, timestamp, body) for s in secrets)
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signatures,
        "content-type": "application/json",
    }
