"""On the running stack (what `make run` starts): commands and case events reach the local SMS
sink over HTTP and the local SMTP sink (aiosmtpd) as real messages, once each."""

from __future__ import annotations

import json
import time
import uuid
from email import message_from_bytes, policy
from pathlib import Path

import httpx
import pytest
from kafka import KafkaProducer
from notifications_testkit import CONSUMER_VI, case_event, otp_command, token

from odr_cli.stack import Stack
from odr_shared.events import CASES_TOPIC, NOTIFICATIONS_TOPIC

pytestmark = pytest.mark.e2e


def wait_for(check, timeout_s: float = 60):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.2)
    raise AssertionError("condition not met in time")


def sms_to(var: Path, phone: str) -> list[dict[str, str]]:
    path = var / "sms" / "messages.jsonl"
    if not path.exists():
        return []
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    return [r for r in rows if r["to"] == phone]


def mail_to(var: Path, address: str) -> list[object]:
    folder = var / "mail"
    if not folder.exists():
        return []
    messages = [
        message_from_bytes(p.read_bytes(), policy=policy.default) for p in folder.glob("*.eml")
    ]
    return [m for m in messages if m["To"] == address]


def test_otp_and_case_messages_reach_the_local_sinks_once(stack: Stack) -> None:
    producer = KafkaProducer(bootstrap_servers=stack.bootstrap, acks="all", enable_idempotence=True)
    suffix = f"{uuid.uuid4().int % 10_000_000:07d}"
    phone, email = f"+8491{suffix}", f"buyer.{suffix}@example.vn"
    otp = otp_command(phone, code="246810")
    consumer = CONSUMER_VI.model_copy(update={"phone": phone, "email": email})
    opened = case_event("case.opened", consumer=consumer)
    try:
        for _ in range(2):  # redelivered: still one message each
            producer.send(NOTIFICATIONS_TOPIC, key=phone.encode(), value=otp.to_json_bytes())
            producer.send(
                CASES_TOPIC, key=opened.data.case_id.encode(), value=opened.to_json_bytes()
            )
        producer.flush(timeout=15)
    finally:
        producer.close()

    var = stack.var
    texts = wait_for(lambda: len(sms_to(var, phone)) >= 2 and sms_to(var, phone))
    mails = wait_for(lambda: mail_to(var, email))
    base = stack.url("notifications")

    def all_sent() -> list[dict[str, object]] | None:
        rows = httpx.get(
            f"{base}/v1/deliveries", params={"recipient": phone}, headers=token("admin")
        ).json()
        return rows if len(rows) == 2 and {r["status"] for r in rows} == {"sent"} else None

    wait_for(all_sent)
    time.sleep(1.0)  # give a duplicate, were there one, the chance to arrive
    assert len(sms_to(var, phone)) == 2
    assert len(mail_to(var, email)) == 1
    assert any("246810" in t["text"] for t in texts)
    assert mails[0]["Subject"] == f"[{opened.data.reference}] Khiếu nại của bạn đã được tiếp nhận"
