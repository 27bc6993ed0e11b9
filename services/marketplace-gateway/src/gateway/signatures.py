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
    for secret in secrets:
        expected = standard_webhooks_sign(secret, msg_id, ts, body).split(",", 1)[1].encode()
        # Compare against every offered signature without stopping early.
        matched = False
        for candidate in offered:
            matched |= hmac.compare_digest(expected, candidate)
        if matched:
            return msg_id
    raise SignatureError("no signature matches")
