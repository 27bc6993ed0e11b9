"""Abuse: one-time-code and complaint flooding from one phone or one address, webhook floods."""

from __future__ import annotations

import time
import uuid

import httpx
import pytest
from reliability_kit import (
    STACK_ENV,
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

pytestmark = [pytest.mark.reliability, pytest.mark.e2e]


def test_otp_flooding_from_one_phone_or_address_is_429_and_sms_stay_under_the_cap(
    rstack: ReliabilityStack,
) -> None:
    stack = rstack.stack
    complaints = stack.url("complaints")
    per_phone = int(STACK_ENV["COMPLAINTS_OTP_PER_PHONE_PER_HOUR"])
    per_ip = int(STACK_ENV["COMPLAINTS_OTP_PER_IP_PER_HOUR"])
    platform = make_platform(stack, "Sàn Bị Spam")
    code, phone = f"RS{uuid.uuid4().hex[:8].upper()}", new_phone()
    assert platform.post(order(code, "delivered", 40, phone, new_email("otp"))).status_code == 202
    wait_for(
        lambda: (
            httpx.get(
                f"{complaints}/v1/orders/{code}",
                params={"platform_id": platform.platform_id},
                headers=admin(),
            ).status_code
            == 200
        )
    )
    # One phone, written every way a person (or a script) might write it.
    spellings = [
        phone,
        "+84" + phone[1:],
        "84" + phone[1:],
        f"{phone[:4]} {phone[4:7]} {phone[7:]}",
    ]
    phone_answers: list[int] = []
    retry_after: list[int] = []
    for i in range(8):
        r = httpx.post(f"{complaints}/v1/otp", json={"order_code": code, "phone": spellings[i % 4]})
        phone_answers.append(r.status_code)
        if r.status_code == 429:
            retry_after.append(int(r.headers["Retry-After"]))
    assert phone_answers == [202] * per_phone + [429] * (8 - per_phone)
    # One address, many phones: the per-address window fills up (it counted the 8 above too).
    ip_answers = []
    for _ in range(per_ip):
        r = httpx.post(f"{complaints}/v1/otp", json={"order_code": code, "phone": new_phone()})
        ip_answers.append(r.status_code)
        if r.status_code == 429:
            retry_after.append(int(r.headers["Retry-After"]))
    assert ip_answers == [202] * (per_ip - 8) + [429] * 8
    assert all(0 < s <= 3600 for s in retry_after)
    # Verification guessing: wrong codes never yield a token.
    guesses = [
        httpx.post(
            f"{complaints}/v1/otp/verify",
            json={"order_code": code, "phone": phone, "code": f"{n:06d}"},
        ).status_code
        for n in range(10)
    ]
    assert 200 not in guesses

    target = "+84" + phone[1:]
    wait_for(lambda: [m for m in rstack.sms_lines() if m["to"] == target], timeout_s=60)
    time.sleep(3)  # anything beyond the cap would have arrived by now
    sms = [m for m in rstack.sms_lines() if m["to"] == target]
    record(
        "otp_flood",
        per_phone_cap=per_phone,
        per_ip_cap=per_ip,
        phone_requests=len(phone_answers),
        phone_429=phone_answers.count(429),
        ip_requests=len(ip_answers),
        ip_429=ip_answers.count(429),
        retry_after_s=sorted(set(retry_after))[:1] + sorted(set(retry_after))[-1:],
        verify_guesses=len(guesses),
        verify_answers=sorted(set(guesses)),
        sms_sent_to_the_phone=len(sms),
    )
    assert 1 <= len(sms) <= per_phone


def test_complaint_flooding_opens_one_case(rstack: ReliabilityStack) -> None:
    stack = rstack.stack
    complaints = stack.url("complaints")
    platform = make_platform(stack, "Sàn Nhiều Khiếu Nại")
    code = f"RC{uuid.uuid4().hex[:8].upper()}"
    assert platform.post(order(code, "delivered", 41, new_phone(), new_email("flood"))).status_code
    consumer = token(
        "consumer", order_id=f"{platform.platform_id}:{code}", platform_id=platform.platform_id
    )
    wait_for(
        lambda: (
            httpx.get(f"{complaints}/v1/orders/{code}", headers=bearer(consumer)).status_code == 200
        )
    )
    body = {
        "order_code": code,
        "category": "not_received",
        "description": "Chưa nhận được hàng sau hai tuần.",
        "desired_outcome": "refund",
    }
    answers = [
        httpx.post(f"{complaints}/v1/cases", json=body, headers=bearer(consumer)) for _ in range(25)
    ]
    codes = [r.status_code for r in answers]
    refs = {r.json().get("reference") for r in answers if r.status_code == 201}
    conflict_refs = {r.text.count(next(iter(refs))) > 0 for r in answers if r.status_code == 409}
    cases = rstack.scalar(
        "complaints",
        "SELECT count(*) FROM cases WHERE order_id = :o",
        o=f"{platform.platform_id}:{code}",
    )
    record(
        "complaint_flood",
        posts=len(codes),
        created=codes.count(201),
        conflict_409=codes.count(409),
        cases_in_db=cases,
    )
    assert codes == [201] + [409] * 24
    assert conflict_refs == {True}  # each 409 names the open case's reference
    assert cases == 1


def test_webhook_flooding_one_platform_is_429(rstack: ReliabilityStack) -> None:
    stack = rstack.stack
    limit = int(STACK_ENV["GATEWAY_WEBHOOK_RATE_LIMIT"])
    platform = make_platform(stack, "Sàn Lũ Webhook")
    url = f"{stack.url('gateway')}/v1/webhooks/{platform.platform_id}"
    answers = []
    retry_after = set()
    with httpx.Client() as client:
        # A fixed window may turn over mid-run: go on until 20 requests were throttled.
        while answers.count(429) < 20 and len(answers) < 2 * limit + 20:
            r = client.post(url, content=b"{}", headers={"content-type": "application/json"})
            answers.append(r.status_code)
            if r.status_code == 429:
                retry_after.add(r.headers.get("Retry-After"))
    record(
        "webhook_flood",
        limit_per_window=limit,
        requests=len(answers),
        refused_401=answers.count(401),
        throttled_429=answers.count(429),
    )
    assert answers.count(429) == 20
    assert set(answers) == {401, 429}
    assert None not in retry_after
