"""Crash safety: workers SIGKILLed mid-flow, the API killed before the relay, the broker paused."""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

import httpx
import pytest
from reliability_kit import (
    ReliabilityStack,
    make_platform,
    new_email,
    new_phone,
    order,
    record,
    wait_for,
)

pytestmark = [pytest.mark.reliability, pytest.mark.e2e]

WORKERS = ["gateway-worker", "complaints-worker", "notifications-worker", "mediation-worker"]
STATUSES = ["created", "paid", "shipped", "delivered"]


def history_rows(rs: ReliabilityStack, *platform_ids: str) -> tuple[int, int]:
    """(rows, distinct order/status/time) in complaints' order status history."""
    row = rs.one(
        "complaints",
        "SELECT count(*), count(DISTINCT h.order_id || '|' || h.status || '|' || h.status_at) "
        "FROM order_status_history h JOIN orders o ON o.id = h.order_id "
        "WHERE o.platform_id IN :platform_ids",
        platform_ids=list(platform_ids),
    )
    assert row is not None
    return int(row[0]), int(row[1])


def published_outbox(rs: ReliabilityStack, service: str, prefix: str) -> tuple[int, int]:
    """(all, unpublished) outbox rows whose key starts with prefix."""
    row = rs.one(
        service,
        "SELECT count(*), count(*) - count(published_at) FROM outbox_messages "
        "WHERE key LIKE :prefix",
        prefix=f"{prefix}%",
    )
    assert row is not None
    return int(row[0]), int(row[1])


def test_workers_sigkilled_while_events_flow_lose_and_duplicate_nothing(
    rstack: ReliabilityStack,
) -> None:
    stack = rstack.stack
    # One platform asks for order-status SMS (so notifications' effect is a real SMS), one not.
    loud = make_platform(stack, "Sàn Ồn Ào", status_notifications=True)
    quiet = make_platform(stack, "Sàn Yên Lặng")
    rstack.platforms.update(loud=loud, quiet=quiet)
    loud_orders = [
        (f"RL{uuid.uuid4().hex[:8].upper()}", new_phone(), new_email("loud")) for _ in range(100)
    ]
    quiet_orders = [
        (f"RQ{uuid.uuid4().hex[:8].upper()}", new_phone(), new_email("quiet")) for _ in range(500)
    ]
    batches: list[tuple[Any, list[dict[str, Any]]]] = []
    for step, status in enumerate(STATUSES):
        batches.append((loud, [order(c, status, step, p, e) for c, p, e in loud_orders]))
        for i in range(0, len(quiet_orders), 250):
            chunk = quiet_orders[i : i + 250]
            batches.append((quiet, [order(c, status, step, p, e) for c, p, e in chunk]))
    events = sum(len(b) for _p, b in batches)
    answers: list[int] = []

    def send() -> None:
        for platform, datas in batches:
            answers.append(platform.post_batch(datas).status_code)
            time.sleep(0.7)

    sender = threading.Thread(target=send)
    sender.start()
    kills: dict[str, int] = dict.fromkeys(WORKERS, 0)
    i = 0
    # Kill while events flow, then a few more times while the backlog drains.
    while sender.is_alive() or i < 8:
        time.sleep(1.5)
        name = WORKERS[i % len(WORKERS)]
        stack.restart(name)  # SIGKILL to the process group, then a fresh worker
        kills[name] += 1
        i += 1
    sender.join()
    assert answers == [202] * len(batches)

    expected_sms = len(loud_orders) * len(STATUSES)

    def settled() -> bool:
        rows, _ = history_rows(rstack, loud.platform_id, quiet.platform_id)
        sent = rstack.scalar(
            "notifications",
            "SELECT count(*) FROM deliveries WHERE platform_id = :p AND status = 'sent'",
            p=loud.platform_id,
        )
        return rows >= events and sent >= expected_sms

    try:
        wait_for(settled, timeout_s=180, interval=1.0)
    except AssertionError:
        states = rstack.rows(
            "notifications",
            "SELECT status, count(*) FROM deliveries WHERE platform_id = :p GROUP BY status",
            p=loud.platform_id,
        )
        rows, _ = history_rows(rstack, loud.platform_id, quiet.platform_id)
        raise AssertionError(f"not settled: history {rows}/{events}, deliveries {states}") from None
    time.sleep(2)  # anything late would be a duplicate: give it the chance to show up
    assert not stack.dead()

    rows, distinct = history_rows(rstack, loud.platform_id, quiet.platform_id)
    orders = rstack.scalar(
        "complaints",
        "SELECT count(*) FROM orders WHERE platform_id IN :ps",
        ps=[loud.platform_id, quiet.platform_id],
    )
    outbox_loud = published_outbox(rstack, "gateway", f"{loud.platform_id}:")
    outbox_quiet = published_outbox(rstack, "gateway", f"{quiet.platform_id}:")
    deliveries, delivery_events = rstack.one(
        "notifications",
        "SELECT count(*), count(DISTINCT event_id) FROM deliveries WHERE platform_id = :p",
        p=loud.platform_id,
    ) or (0, 0)
    loud_phones = {"+84" + p[1:] for _c, p, _e in loud_orders}
    sms = [m for m in rstack.sms_lines() if m["to"] in loud_phones]
    sms_refs = {m["reference"] for m in sms}
    record(
        "worker_kills",
        sigkills=sum(kills.values()),
        sigkills_per_worker=kills,
        events=events,
        gateway_outbox_rows=outbox_loud[0] + outbox_quiet[0],
        gateway_outbox_unpublished=outbox_loud[1] + outbox_quiet[1],
        complaints_orders=orders,
        complaints_history_rows=rows,
        complaints_lost=events - distinct,
        complaints_duplicated=rows - distinct,
        notifications_deliveries=deliveries,
        notifications_duplicated=deliveries - delivery_events,
        sms_sent=len(sms),
        sms_duplicated=len(sms) - len(sms_refs),
    )
    assert outbox_loud[0] + outbox_quiet[0] == events
    assert outbox_loud[1] + outbox_quiet[1] == 0
    assert orders == len(loud_orders) + len(quiet_orders)
    assert rows == distinct == events
    assert deliveries == delivery_events == expected_sms
    assert len(sms) == len(sms_refs) == expected_sms


def test_api_killed_after_commit_before_publish_still_publishes(rstack: ReliabilityStack) -> None:
    """The API only commits to the outbox; the worker's relay publishes. With the relay down,
    accepted deliveries wait in the outbox; SIGKILL the API; the relay's return publishes them."""
    stack = rstack.stack
    platform = make_platform(stack, "Sàn Sập Nguồn")
    stack.kill("gateway-worker")
    codes = [f"RK{uuid.uuid4().hex[:8].upper()}" for _ in range(40)]
    for n, code in enumerate(codes):
        r = platform.post(order(code, "delivered", n % 60, new_phone(), new_email("kill")))
        assert r.status_code == 202, r.text
    total, pending = published_outbox(rstack, "gateway", f"{platform.platform_id}:")
    assert (total, pending) == (len(codes), len(codes))
    stack.kill("gateway-api")  # SIGKILL: nothing in memory survives
    stack.restart("gateway-worker")
    stack.restart("gateway-api")
    wait_for(lambda: history_rows(rstack, platform.platform_id)[0] >= len(codes), timeout_s=90)
    time.sleep(1.5)
    rows, distinct = history_rows(rstack, platform.platform_id)
    total, pending = published_outbox(rstack, "gateway", f"{platform.platform_id}:")
    record(
        "api_killed_before_publish",
        accepted=len(codes),
        outbox_pending_when_api_killed=len(codes),
        published_after_restart=total - pending,
        complaints_rows=rows,
        lost=len(codes) - distinct,
        duplicated=rows - distinct,
    )
    assert pending == 0
    assert rows == distinct == len(codes)


def test_broker_paused_apis_keep_accepting_then_drain(rstack: ReliabilityStack) -> None:
    """Tansu keeps topics in memory, so 'stopping' it is a SIGSTOP pause: unreachable, not lost."""
    stack = rstack.stack
    platform = make_platform(stack, "Sàn Mất Mạng")
    codes = [f"RB{uuid.uuid4().hex[:8].upper()}" for _ in range(60)]
    rstack.pause("tansu")
    paused_at = time.monotonic()
    try:
        for n, code in enumerate(codes):
            r = platform.post(order(code, "shipped", n % 60, new_phone(), new_email("pause")))
            assert r.status_code == 202, r.text
        grown = published_outbox(rstack, "gateway", f"{platform.platform_id}:")
        # Keep the broker away a while longer: the relays keep failing and keep the rows.
        time.sleep(max(0.0, 8 - (time.monotonic() - paused_at)))
        still = published_outbox(rstack, "gateway", f"{platform.platform_id}:")
    finally:
        rstack.resume("tansu")
    paused_s = round(time.monotonic() - paused_at, 1)
    wait_for(lambda: history_rows(rstack, platform.platform_id)[0] >= len(codes), timeout_s=120)
    time.sleep(1.5)
    rows, distinct = history_rows(rstack, platform.platform_id)
    _total, pending = published_outbox(rstack, "gateway", f"{platform.platform_id}:")
    ready = {n: httpx.get(f"{stack.url(n)}/readyz").status_code for n in stack.ports.services}
    record(
        "broker_paused",
        paused_s=paused_s,
        accepted_while_paused=len(codes),
        outbox_pending_while_paused=still[1],
        outbox_pending_after=pending,
        complaints_rows=rows,
        lost=len(codes) - distinct,
        duplicated=rows - distinct,
    )
    assert grown == (len(codes), len(codes))
    assert still[1] == len(codes)
    assert pending == 0
    assert rows == distinct == len(codes)
    assert set(ready.values()) == {200}
