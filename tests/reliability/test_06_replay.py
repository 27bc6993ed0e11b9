"""Replay: every consumer group sought back to the beginning changes nothing and sends nothing."""

from __future__ import annotations

import signal
import time
from typing import Any

import pytest
from kafka import KafkaAdminClient
from kafka.structs import OffsetAndMetadata
from reliability_kit import (
    GROUP_WORKERS,
    ReliabilityStack,
    committed,
    end_offsets,
    record,
    wait_for,
)

pytestmark = [pytest.mark.reliability, pytest.mark.e2e]


def snapshot(rs: ReliabilityStack) -> dict[str, Any]:
    cases = sorted(rs.rows("complaints", "SELECT id, status FROM cases"))
    complaints = {
        t: rs.scalar("complaints", f"SELECT count(*) FROM {t}")  # noqa: S608 - fixed names
        for t in (
            "orders",
            "order_status_history",
            "case_transitions",
            "case_timeline",
            "case_neutrals",
            "outbox_messages",
        )
    }
    orders = sorted(rs.rows("complaints", "SELECT id, status, status_at FROM orders"))
    deliveries = rs.scalar("notifications", "SELECT count(*) FROM deliveries")
    notif_outbox = rs.scalar("notifications", "SELECT count(*) FROM outbox_messages")
    outbound = rs.scalar("gateway", "SELECT count(*) FROM outbound_deliveries")
    gw_outbox = rs.scalar("gateway", "SELECT count(*) FROM outbox_messages")
    return {
        "cases": cases,
        "orders": orders,
        "complaints": complaints,
        "deliveries": deliveries,
        "notifications_outbox": notif_outbox,
        "gateway_outbound": outbound,
        "gateway_outbox": gw_outbox,
        "sms": len(rs.sms_lines()),
        "mail": rs.mail_count(),
        "received_webhooks": rs.receiver.count,
    }


def quiet(rs: ReliabilityStack) -> dict[str, Any]:
    """Wait until two snapshots a few seconds apart agree (in-flight work has finished)."""
    before = snapshot(rs)
    for _ in range(20):
        time.sleep(3)
        now = snapshot(rs)
        if now == before:
            return now
        before = now
    raise AssertionError("the platform never went quiet")


def test_every_group_replayed_from_the_beginning_changes_nothing(rstack: ReliabilityStack) -> None:
    stack, bootstrap = rstack.stack, rstack.stack.bootstrap
    before = quiet(rstack)
    groups = {g: committed(bootstrap, g) for g in GROUP_WORKERS}
    groups = {g: offs for g, offs in groups.items() if offs}
    assert {"complaints", "notifications", "gateway"} <= set(groups)
    replayed = {g: sum(offs.values()) for g, offs in groups.items()}

    # Stop the workers cleanly (they leave their groups), then move every group to offset 0.
    for group in groups:
        stack.kill(GROUP_WORKERS[group], signal.SIGTERM)
    admin_client = KafkaAdminClient(bootstrap_servers=[bootstrap])
    try:
        for group, offs in groups.items():
            admin_client.alter_group_offsets(
                group, {tp: OffsetAndMetadata(0, "", -1) for tp in offs}
            )
    finally:
        admin_client.close()
    for group, offs in groups.items():
        assert set(committed(bootstrap, group).values()) <= {0}, group
        assert set(offs) <= set(committed(bootstrap, group)) or not any(offs.values())
    for group in groups:
        stack.restart(GROUP_WORKERS[group])

    # Re-consumed: each group's committed offsets are back at the ends of its partitions.
    for group, offs in groups.items():
        ends = end_offsets(bootstrap, list(offs))
        wait_for(
            lambda g=group, ends=ends: all(
                committed(bootstrap, g).get(tp, -1) >= end for tp, end in ends.items()
            ),
            timeout_s=180,
            interval=1.0,
        )
    after = quiet(rstack)
    changed = sorted(k for k in before if before[k] != after[k])
    record(
        "replay",
        groups=sorted(groups),
        messages_replayed=sum(replayed.values()),
        messages_replayed_per_group=replayed,
        new_rows_or_changes=changed,
        sms_before=before["sms"],
        email_before=before["mail"],
        outbound_webhooks_before=before["received_webhooks"],
        deliveries_before=before["deliveries"],
        new_sms=after["sms"] - before["sms"],
        new_email=after["mail"] - before["mail"],
        new_outbound_webhooks=after["received_webhooks"] - before["received_webhooks"],
        cases_checked=len(before["cases"]),
        orders_checked=len(before["orders"]),
    )
    assert changed == []
