"""What the end-to-end journeys share: waiting for the platform, bearer headers, the SMS sink."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


def eventually(fn: Callable[[], T | None], what: str, timeout_s: float = 45) -> T:
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})")


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def sms_to(var: Path, phone_e164: str) -> list[str]:
    """The texts the stack's SMS sink received for one number, oldest first."""
    path = var / "sms" / "messages.jsonl"
    if not path.exists():
        return []
    texts = []
    for line in path.read_text(encoding="utf-8").splitlines():
        doc = json.loads(line)
        if doc["to"] == phone_e164:
            texts.append(doc["text"])
    return texts
