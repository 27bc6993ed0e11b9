"""A buyer's data rights across the running platform (issue 16), on SQLite and on PostgreSQL.

Two buyers buy on one marketplace. The first proves her phone with the SMS code, files a case and
withdraws it, downloads her data (every order and case of hers, nothing of the other buyer), then
has it erased. Afterwards a scan of all four services' databases and of every topic, read from
offset 0, finds her phone, email, name and free text nowhere in clear, no encrypted column that
still opens to them, and no key left anywhere that opens a sealed event of hers. The second buyer's
erasure waits while his case is open, and completes when he withdraws it; meanwhile his data is
untouched by the first erasure.
"""

from __future__ import annotations

import contextlib
import json
import re
import uuid
from collections.abc import Iterator
from datetime import timedelta
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest
from journey_support import bearer, eventually, sms_to
from kafka import KafkaConsumer, TopicPartition
from sqlalchemy import MetaData, create_engine, select

from odr_cli.stack import Stack
from odr_shared.auth import TokenService
from odr_shared.crypto import DataCipher
from odr_shared.events import TOPICS, dead_letter_topic
from odr_shared.privacy import subject_for_phone
from odr_shared.settings import ServiceSettings
from odr_shared.testing import sample_order, standard_webhook_headers

pytestmark = pytest.mark.e2e
SERVICES = ("gateway", "complaints", "mediation", "notifications")
# Four services answer an erasure one after the other: more time than one step of a journey.
eventually = partial(eventually, timeout_s=90)


def sms_code(var: Path, phone_e164: str) -> str | None:
    texts = sms_to(var, phone_e164)
    found = re.search(r"\b(\d{6})\b", texts[-1]) if texts else None
    return found.group(1) if found else None


class Buyer:
    def __init__(self, suffix: str, tag: str, first_digit: str) -> None:
        digits = f"{int(suffix, 16) % 10_000_000:07d}"
        self.local = f"09{first_digit}{digits}"
        self.e164 = f"+849{first_digit}{digits}"
        self.national = self.e164[3:]
        self.name = f"Phạm Thị {tag} {suffix}"
        self.email = f"{tag.lower()}.{suffix}@example.vn"
        self.note = f"ghi-chu-rieng-{tag.lower()}-{suffix}"
        self.token: dict[str, str] = {}

    @property
    def secrets(self) -> list[str]:
        return [self.local, self.e164, self.national, self.name, self.email, self.note]


def order_in(gw: str, platform: dict[str, Any], code: str, buyer: Buyer) -> None:
    order = sample_order(
        code, buyer={"name": buyer.name, "phone": buyer.local, "email": buyer.email}
    )
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


def prove_phone(stack: Stack, code: str, buyer: Buyer) -> dict[str, str]:
    complaints = stack.url("complaints")
    before = sms_code(stack.var, buyer.e164)
    r = httpx.post(f"{complaints}/v1/otp", json={"order_code": code, "phone": buyer.local})
    assert r.status_code == 202, r.text
    otp = eventually(lambda: (c := sms_code(stack.var, buyer.e164)) != before and c, "the SMS code")
    r = httpx.post(
        f"{complaints}/v1/otp/verify", json={"order_code": code, "phone": buyer.e164, "code": otp}
    )
    assert r.status_code == 200, r.text
    return bearer(r.json()["access_token"])


def file_case(complaints: str, code: str, buyer: Buyer) -> str:
    r = httpx.post(
        f"{complaints}/v1/cases",
        json={
            "order_code": code,
            "category": "damaged",
            "description": f"Hàng bị hỏng. {buyer.note}. Gọi tôi: {buyer.local}",
            "desired_outcome": "refund",
            "claimed_amount": 300000,
        },
        headers=buyer.token,
    )
    assert r.status_code == 201, r.text
    return str(r.json()["case_id"])


def request(complaints: str, buyer: Buyer, kind: str) -> dict[str, Any]:
    r = httpx.post(f"{complaints}/v1/privacy/requests", json={"kind": kind}, headers=buyer.token)
    assert r.status_code == 202, r.text
    doc = r.json()
    assert doc["kind"] == kind
    assert doc["acknowledged_at"]
    assert doc["due_at"] > doc["acknowledged_at"]
    return doc  # type: ignore[no-any-return]


def status_of(complaints: str, buyer: Buyer, request_id: str) -> dict[str, Any]:
    r = httpx.get(f"{complaints}/v1/privacy/requests/{request_id}", headers=buyer.token)
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


def cells(database_url: str) -> Iterator[tuple[str, str, Any]]:
    """Every value of every row of every table: (table, column, value)."""
    engine = create_engine(database_url)
    try:
        md = MetaData()
        md.reflect(engine)
        with engine.connect() as conn:
            for table in md.sorted_tables:
                for row in conn.execute(select(table)).mappings():
                    for column, value in row.items():
                        if value is not None:
                            yield table.name, column, value
    finally:
        engine.dispose()


def as_text(value: Any) -> str:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).decode("utf-8", "replace")
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def readable_text(value: Any, cipher: DataCipher) -> str:
    """The value as text, and whatever Fernet ciphertext inside it opens to with the data key."""
    text = as_text(value)
    opened = [text]
    for token in re.findall(r"gAAAAA[A-Za-z0-9_\-=]+", text):
        try:
            opened.append(cipher.decrypt(token))
        except ValueError:
            continue
    if isinstance(value, (bytes, bytearray, memoryview)) and bytes(value).startswith(b"gAAAAA"):
        with contextlib.suppress(ValueError):
            opened.append(cipher.decrypt_bytes(bytes(value)).decode("utf-8", "replace"))
    return "\n".join(opened)


def sealed_kids(text: str, subject: str) -> set[str]:
    """The key ids of sealed events (JSON) about `subject` found in a text."""
    kids = set()
    for match in re.finditer(r'"kid":\s*"(k_[0-9a-f]+)"', text):
        kids.add(match.group(1))
    return kids if subject in text else set()


def all_messages(bootstrap: str) -> list[bytes]:
    topics = [*TOPICS, *(dead_letter_topic(t) for t in TOPICS)]
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        consumer_timeout_ms=3000,
        request_timeout_ms=10000,
    )
    try:
        available = consumer.topics()
        parts = [
            TopicPartition(t, p)
            for t in topics
            if t in available
            for p in consumer.partitions_for_topic(t) or ()
        ]
        consumer.assign(parts)
        consumer.seek_to_beginning(*parts)
        return [m.value for m in consumer if m.value is not None]
    finally:
        consumer.close()


def test_a_buyer_downloads_then_erases_her_data_and_nothing_of_her_is_left(stack: Stack) -> None:
    gw, complaints = stack.url("gateway"), stack.url("complaints")
    settings = ServiceSettings()  # the stack's defaults: its data key and subject key
    admin = bearer(
        TokenService(settings).issue(role="admin", subject="e2e-privacy", ttl=timedelta(minutes=30))
    )
    suffix = uuid.uuid4().hex[:6]
    hong, minh = Buyer(suffix, "Hong", "4"), Buyer(suffix, "Minh", "6")
    platform = httpx.post(
        f"{gw}/v1/platforms",
        json={"name": f"Sàn riêng tư {suffix}", "kind": "standard"},
        headers=admin,
    ).json()
    codes = {"hong": [f"PA{suffix}1", f"PA{suffix}2"], "minh": [f"PB{suffix}1"]}
    for code in codes["hong"]:
        order_in(gw, platform, code, hong)
    order_in(gw, platform, codes["minh"][0], minh)
    for code in [*codes["hong"], *codes["minh"]]:
        eventually(
            lambda c=code: (
                httpx.get(
                    f"{complaints}/v1/orders/{c}",
                    params={"platform_id": platform["platform_id"]},
                    headers=admin,
                ).status_code
                == 200
            ),
            f"order {code} in complaints",
        )

    # She files a case and withdraws it; he files one and keeps it open.
    hong.token = prove_phone(stack, codes["hong"][0], hong)
    hong_case = file_case(complaints, codes["hong"][0], hong)
    r = httpx.post(
        f"{complaints}/v1/cases/{hong_case}/withdraw",
        json={"reason": "Đã tự giải quyết"},
        headers=hong.token,
    )
    assert r.status_code == 200, r.text
    minh.token = prove_phone(stack, codes["minh"][0], minh)
    minh_case = file_case(complaints, codes["minh"][0], minh)

    # 1. Access: her export holds both her orders and her case, nothing of his.
    access = request(complaints, hong, "access")
    assert (
        httpx.get(
            f"{complaints}/v1/privacy/requests/{access['request_id']}", headers=minh.token
        ).status_code
        == 404
    )
    done = eventually(
        lambda: (
            (s := status_of(complaints, hong, access["request_id"]))["status"] == "completed" and s
        ),
        "the access export",
    )
    export_url = done["export_url"]
    if export_url.startswith("/"):
        export_url = complaints + export_url
    assert httpx.get(export_url, headers=minh.token).status_code == 404
    exported = httpx.get(export_url, headers=hong.token)
    assert exported.status_code == 200, exported.text
    text = json.dumps(exported.json(), ensure_ascii=False)
    for code in codes["hong"]:
        assert code in text, code
    assert hong_case in text
    assert hong.name in text
    assert hong.email in text
    for secret in [*minh.secrets, codes["minh"][0], minh_case]:
        assert secret not in text, secret
    for service in ("gateway", "mediation", "notifications"):
        assert service in exported.json().get("services", exported.json()), service

    # The operator's queue shows both requests with their due dates.
    queue = httpx.get(f"{complaints}/v1/privacy/requests", headers=admin)
    assert queue.status_code == 200, queue.text
    assert access["request_id"] in queue.text

    # 2. His erasure waits for his open case; hers completes across all four services.
    his = request(complaints, minh, "erasure")
    deferred = eventually(
        lambda: (s := status_of(complaints, minh, his["request_id"]))["status"] == "deferred" and s,
        "his deferred erasure",
    )
    assert deferred["reason"]
    erasure = request(complaints, hong, "erasure")
    eventually(
        lambda: status_of(complaints, hong, erasure["request_id"])["status"] == "completed",
        "her erasure in every service",
    )

    # 3. The scan: nothing of her in clear, nothing that opens, no key that opens her events.
    cipher = DataCipher(settings.data_encryption_key)
    subject = subject_for_phone(hong.local, settings)
    kids_seen: set[str] = set()
    keys_held: dict[str, set[str]] = {}
    minh_seen = False
    for service in SERVICES:
        held = keys_held.setdefault(service, set())
        for table, column, value in cells(stack.database_url(service)):
            text = readable_text(value, cipher)
            for secret in hong.secrets:
                assert secret not in text, f"{service}.{table}.{column} still holds {secret!r}"
            kids_seen |= sealed_kids(text, subject)
            if table == "subject_keys" and column == "kid":
                held.add(str(value))
            minh_seen = minh_seen or minh.name in text
    assert minh_seen, "his data must be untouched by her erasure"
    for service, held in keys_held.items():
        assert not (kids_seen & held), f"{service} still holds a key of hers"
    messages = all_messages(stack.bootstrap)
    assert messages
    for value in messages:
        text = value.decode("utf-8", "replace")
        for secret in hong.secrets:
            assert secret not in text, f"a message still carries {secret!r}"
        kids_seen |= sealed_kids(text, subject)
    assert kids_seen, "her events were sealed, so some carried her subject id"
    for service, held in keys_held.items():
        assert not (kids_seen & held), f"{service} still holds a key of hers"

    # 4. His case closes: his deferred erasure completes by itself.
    r = httpx.post(
        f"{complaints}/v1/cases/{minh_case}/withdraw",
        json={"reason": "Không cần nữa"},
        headers=minh.token,
    )
    assert r.status_code == 200, r.text
    eventually(
        lambda: status_of(complaints, minh, his["request_id"])["status"] == "completed",
        "his erasure after his case closed",
    )
