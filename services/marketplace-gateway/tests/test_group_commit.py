"""Group commit: deliveries stored together still fail, dedupe and count one by one."""

from __future__ import annotations

import asyncio
import json
import threading
import uuid
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import pytest
from sqlalchemy import select, text

from gateway.ingest import Inbound, Ingestor, Item, Outcome, Prepared, Receipt
from gateway.intake import Intake
from gateway.models import InboundDelivery, InboundEvent
from odr_shared.outbox import pending_count
from odr_shared.problems import Problem
from odr_shared.testing import sample_order, standard_order_body, standard_webhook_headers


def _inbound(platform_id: str, secret: str, order: dict[str, Any], msg_id: str) -> Inbound:
    body = standard_order_body(order)
    return Inbound(platform_id, standard_webhook_headers(secret, body, msg_id=msg_id), body)


def _msg() -> str:
    return f"msg_{uuid.uuid4().hex}"


def test_a_bad_item_fails_alone_twins_answer_as_duplicates_and_the_rate_limit_counts_each(
    ingestor,
) -> None:
    ing, platform_id, secret = ingestor
    good_id = _msg()
    good = _inbound(platform_id, secret, sample_order("GRP-1"), good_id)
    incomplete = _inbound(
        platform_id,
        secret,
        {"order_code": "GRP-2", "status": "paid", "status_at": "2026-11-21T03:00:00Z"},
        _msg(),
    )
    twin = _inbound(platform_id, secret, sample_order("GRP-1"), good_id)
    over = _inbound(platform_id, secret, sample_order("GRP-3"), _msg())

    first, bad, copy, limited = ing.store([good, incomplete, twin, over])

    assert isinstance(first, Receipt)
    assert first.status == "accepted"
    assert len(first.event_ids) == 1
    assert isinstance(bad, Problem)
    assert bad.status == 422
    assert [e["field"] for e in bad.extensions["errors"]] == [
        "data.buyer",
        "data.seller",
        "data.total_amount",
    ]
    assert isinstance(copy, Receipt)
    assert copy.duplicate
    assert copy.delivery_id == first.delivery_id
    # Limit 3 per window: the good one, the incomplete one and the twin counted; not the 4th.
    assert isinstance(limited, Problem)
    assert limited.status == 429
    assert int(limited.headers["Retry-After"]) >= 1
    with ing.factory() as s:
        rows = s.execute(select(InboundDelivery.id, InboundDelivery.status)).all()
        assert sorted(status for _id, status in rows) == ["accepted", "rejected"]
        rejected = next(i for i, status in rows if status == "rejected")
        # The refusal names the row it was kept in, for inspection and replay.
        assert bad.extensions["delivery_id"] == rejected
        assert pending_count(s) == 1


def test_a_forged_signature_is_kept_and_refused_in_the_same_group(ingestor) -> None:
    ing, platform_id, secret = ingestor
    good = _inbound(platform_id, secret, sample_order("GRP-F1"), _msg())
    forged = replace(
        _inbound(platform_id, secret, sample_order("GRP-F2"), _msg()),
        body=standard_order_body(sample_order("GRP-F2-ALTERED")),
    )
    nowhere = _inbound("plt_missing", secret, sample_order("GRP-F3"), _msg())

    ok, refused, unknown = ing.store([good, forged, nowhere])

    assert isinstance(ok, Receipt)
    assert ok.status == "accepted"
    assert isinstance(refused, Problem)
    assert refused.status == 401
    assert isinstance(unknown, Problem)
    assert unknown.status == 404
    with ing.factory() as s:
        row = s.get(InboundDelivery, refused.extensions["delivery_id"])
        assert row is not None
        assert (row.status, row.http_status) == ("rejected", 401)
        assert row.error.startswith("signature rejected")


@pytest.mark.parametrize("keyless", [False, True], ids=["keyed", "one-keyless"])
def test_a_group_stores_each_delivery_with_its_own_event_and_answer(ingestor, keyless) -> None:
    """Each answer, stored row, seen-event row and published event name the same delivery.

    Keyed groups insert their rows in one statement and match ids back by delivery key; a
    group with a keyless delivery takes the ordered insert. Either way nothing is crossed.
    """
    ing, platform_id, secret = ingestor
    ing.limiter.limit = replace(ing.limiter.limit, max_hits=100)
    msg_ids = [_msg() for _ in range(5)]
    items: list[Item] = []
    for i in range(5):
        prepared = ing.prepare(_inbound(platform_id, secret, sample_order(f"GRP-A{i}"), msg_ids[i]))
        assert isinstance(prepared, Prepared)
        if keyless and i == 2:
            prepared = replace(prepared, mapping=replace(prepared.mapping, delivery_key=""))
        items.append(prepared)
    receipts = ing.store(items)
    assert all(isinstance(r, Receipt) for r in receipts)
    assert [r.status for r in receipts if isinstance(r, Receipt)] == ["accepted"] * 5
    assert len({r.delivery_id for r in receipts if isinstance(r, Receipt)}) == 5
    with ing.factory() as s:
        for i, r in enumerate(receipts):
            assert isinstance(r, Receipt)
            row = s.get(InboundDelivery, r.delivery_id)
            assert row is not None
            assert row.delivery_key == (None if keyless and i == 2 else msg_ids[i])
            assert row.order_id == f"{platform_id}:GRP-A{i}"
            assert row.status == "accepted"
            assert row.event_id == r.event_ids[0]
            assert row.summary == {"accepted": 1}
            seen = s.execute(
                select(InboundEvent).where(InboundEvent.event_id == r.event_ids[0])
            ).scalar_one()
            assert (seen.delivery_id, seen.order_id) == (r.delivery_id, row.order_id)
            payload = s.execute(
                text("SELECT payload FROM outbox_messages WHERE event_id = :e"),
                {"e": r.event_ids[0]},
            ).scalar_one()
            data = json.loads(bytes(payload))["data"]
            assert data["delivery_id"] == str(r.delivery_id)
            assert data["order_code"] == f"GRP-A{i}"
        assert pending_count(s) == 5


class _GatedStore:
    """Wraps Ingestor.store: records each group's size; the first group waits for a gate."""

    def __init__(self, ing: Ingestor) -> None:
        self.ing = ing
        self.sizes: list[int] = []
        self.gate = threading.Event()
        self.entered = threading.Event()

    def __call__(self, items: Sequence[Item]) -> list[Outcome]:
        self.sizes.append(len(items))
        if len(self.sizes) == 1:
            self.entered.set()
            assert self.gate.wait(30)
        return self.ing.store(items)


def test_the_intake_stores_what_waits_together_and_answers_each_request(ingestor) -> None:
    """While a group is being stored, later requests gather into the next group (one commit),
    and each request gets its own delivery's answer."""
    ing, platform_id, secret = ingestor
    ing.limiter.limit = replace(ing.limiter.limit, max_hits=100)
    store = _GatedStore(ing)
    intake = Intake(store, depth=1)

    async def run() -> list[Any]:
        first = asyncio.ensure_future(
            intake.submit(_inbound(platform_id, secret, sample_order("INT-0"), _msg()))
        )
        await asyncio.to_thread(store.entered.wait, 30)
        rest = [
            asyncio.ensure_future(
                intake.submit(_inbound(platform_id, secret, sample_order(f"INT-{i}"), _msg()))
            )
            for i in range(1, 9)
        ]
        signed = _inbound(platform_id, secret, sample_order("X"), _msg())
        forged = asyncio.ensure_future(intake.submit(replace(signed, body=signed.body + b" ")))
        await asyncio.sleep(0.05)
        store.gate.set()
        return await asyncio.gather(first, *rest, forged, return_exceptions=True)

    try:
        answers = asyncio.run(run())
    finally:
        intake.close()
    assert store.sizes == [1, 9]
    receipts = answers[:-1]
    assert all(isinstance(r, Receipt) and r.status == "accepted" for r in receipts)
    with ing.factory() as s:
        for i, r in enumerate(receipts):
            row = s.get(InboundDelivery, r.delivery_id)
            assert row is not None
            assert row.order_id == f"{platform_id}:INT-{i}"
    assert isinstance(answers[-1], Problem)
    assert answers[-1].status == 401


def test_the_intake_refuses_at_once_when_too_much_waits(ingestor) -> None:
    ing, platform_id, secret = ingestor
    store = _GatedStore(ing)
    intake = Intake(store, depth=1, max_waiting=2)

    async def run() -> list[Any]:
        first = asyncio.ensure_future(
            intake.submit(_inbound(platform_id, secret, sample_order("W-0"), _msg()))
        )
        await asyncio.to_thread(store.entered.wait, 30)
        queued = [
            asyncio.ensure_future(
                intake.submit(_inbound(platform_id, secret, sample_order(f"W-{i}"), _msg()))
            )
            for i in range(1, 4)
        ]
        await asyncio.sleep(0.05)
        store.gate.set()
        return await asyncio.gather(first, *queued, return_exceptions=True)

    try:
        answers = asyncio.run(run())
    finally:
        intake.close()
    refused = answers[3]
    assert isinstance(refused, Problem)
    assert refused.status == 503
    assert refused.headers["Retry-After"] == "1"
    assert [isinstance(a, Receipt) for a in answers[:3]] == [True, True, True]


def test_a_failing_group_fails_every_request_in_it_and_the_next_group_is_stored(ingestor) -> None:
    ing, platform_id, secret = ingestor
    calls: list[int] = []

    def flaky(items: Sequence[Item]) -> list[Outcome]:
        calls.append(len(items))
        if len(calls) == 1:
            raise RuntimeError("database went away")
        return ing.store(items)

    intake = Intake(flaky, depth=1)

    async def one(code: str) -> Any:
        try:
            return await intake.submit(_inbound(platform_id, secret, sample_order(code), _msg()))
        except Exception as exc:  # noqa: BLE001 - the answer under test
            return exc

    try:
        failed = asyncio.run(one("F-1"))
        stored = asyncio.run(one("F-2"))
    finally:
        intake.close()
    assert isinstance(failed, RuntimeError)
    assert isinstance(stored, Receipt)
    assert stored.status == "accepted"
