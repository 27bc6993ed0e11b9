"""Group commit: deliveries stored together still fail, dedupe and count one by one."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from concurrent.futures import Future
from dataclasses import replace
from typing import Any

import pytest
from sqlalchemy import select, text

from gateway.ingest import Ingestor, Pending, Receipt
from gateway.models import InboundDelivery, InboundEvent
from gateway.store import StoreProcess
from odr_shared.outbox import pending_count
from odr_shared.problems import Problem
from odr_shared.testing import sample_order, standard_order_body, standard_webhook_headers


def _pending(
    ing: Ingestor, platform_id: str, secret: str, order: dict[str, Any], msg_id: str
) -> Pending:
    body = standard_order_body(order)
    return ing.prepare(platform_id, standard_webhook_headers(secret, body, msg_id=msg_id), body)


def _commit(ing: Ingestor, pendings: list[Pending]) -> list[Future[Receipt]]:
    group: list[tuple[Pending, Future[Receipt]]] = [(p, Future()) for p in pendings]
    ing.commit_group(group)
    return [f for _p, f in group]


@pytest.fixture(params=["in-process", "store-process"])
def commit(request: pytest.FixtureRequest, ingestor: Any, store_commit: Any) -> Iterator[Any]:
    """A group stored by the writer's own thread, or by a store process (gateway/store.py):
    the same outcomes either way, problems included."""
    ing = ingestor[0]
    if request.param == "in-process":
        yield lambda pendings: _commit(ing, pendings)
        return
    store = StoreProcess(ing.settings)
    store.start()
    assert store.pid is not None
    assert store.pid != os.getpid()
    try:
        yield lambda pendings: store_commit(store, pendings)
    finally:
        store.stop()


def test_a_bad_item_fails_alone_twins_answer_as_duplicates_and_the_rate_limit_counts_each(
    ingestor, commit
) -> None:
    ing, platform_id, secret = ingestor
    good_id = f"msg_{uuid.uuid4().hex}"
    good = _pending(ing, platform_id, secret, sample_order("GRP-1"), good_id)
    incomplete = _pending(
        ing,
        platform_id,
        secret,
        {"order_code": "GRP-2", "status": "paid", "status_at": "2026-11-21T03:00:00Z"},
        f"msg_{uuid.uuid4().hex}",
    )
    twin = _pending(ing, platform_id, secret, sample_order("GRP-1"), good_id)
    over = _pending(ing, platform_id, secret, sample_order("GRP-3"), f"msg_{uuid.uuid4().hex}")

    first, bad, copy, limited = commit([good, incomplete, twin, over])

    receipt = first.result()
    assert receipt.status == "accepted"
    assert len(receipt.event_ids) == 1
    with pytest.raises(Problem) as exc:
        bad.result()
    assert exc.value.status == 422
    assert [e["field"] for e in exc.value.extensions["errors"]] == [
        "data.buyer",
        "data.seller",
        "data.total_amount",
    ]
    assert copy.result().duplicate
    assert copy.result().delivery_id == receipt.delivery_id
    # Limit 3 per window: the good one, the incomplete one and the twin counted; not the 4th.
    with pytest.raises(Problem) as exc:
        limited.result()
    assert exc.value.status == 429
    assert int(exc.value.headers["Retry-After"]) >= 1
    with ing.factory() as s:
        rows = (
            s.execute(select(InboundDelivery.status).order_by(InboundDelivery.id)).scalars().all()
        )
        assert rows == ["accepted", "rejected"]
        assert pending_count(s) == 1


@pytest.mark.parametrize("keyless", [False, True], ids=["keyed", "one-keyless"])
def test_a_group_stores_each_delivery_with_its_own_event_and_answer(ingestor, keyless) -> None:
    """Each answer, stored row, seen-event row and published event name the same delivery.

    Keyed groups insert their rows in one statement and match ids back by delivery key; a
    group with a keyless delivery takes the ordered insert. Either way nothing is crossed.
    """
    ing, platform_id, secret = ingestor
    ing.limit = type(ing.limit)("webhooks", 100, 60)
    msg_ids = [f"msg_{uuid.uuid4().hex}" for _ in range(5)]
    pendings = [
        _pending(ing, platform_id, secret, sample_order(f"GRP-A{i}"), msg_ids[i]) for i in range(5)
    ]
    if keyless:
        pendings[2] = replace(pendings[2], mapping=replace(pendings[2].mapping, delivery_key=""))
    receipts = [f.result() for f in _commit(ing, pendings)]
    assert [r.status for r in receipts] == ["accepted"] * 5
    assert len({r.delivery_id for r in receipts}) == 5
    with ing.factory() as s:
        for i, r in enumerate(receipts):
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


def test_the_writer_survives_a_closed_event_loop_and_keeps_storing(ingestor) -> None:
    """A request's loop that closed before its group was stored (shutdown) loses nothing."""
    import asyncio

    ing, platform_id, secret = ingestor
    ing.limit = type(ing.limit)("webhooks", 100, 60)

    async def submit_then_leave() -> None:
        p = _pending(ing, platform_id, secret, sample_order("GRP-L1"), f"msg_{uuid.uuid4().hex}")
        ing.writer.submit_async(p)  # the loop closes without awaiting it

    asyncio.run(submit_then_leave())
    later = _pending(ing, platform_id, secret, sample_order("GRP-L2"), f"msg_{uuid.uuid4().hex}")
    receipt = ing.writer.submit(later).result(timeout=30)
    assert receipt.status == "accepted"
    with ing.factory() as s:
        codes = s.execute(select(InboundDelivery.order_id)).scalars().all()
    assert sorted(codes) == [f"{platform_id}:GRP-L1", f"{platform_id}:GRP-L2"]
