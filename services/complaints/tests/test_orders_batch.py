"""apply_order_events (a poll's order events, set-based) ends exactly where applying the same
events one by one ends: orders, history, inbox and outbox, on SQLite and PostgreSQL."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel
from sqlalchemy import delete, event, func, select

from complaints.consumer import GROUP_ID, batch_handlers, handlers
from complaints.models import Order, OrderStatusChange
from complaints.orders import apply_order_events
from complaints.service import Deps
from odr_shared.db import utcnow
from odr_shared.events import CloudEvent, OrderStatusChangedV1, build_event, order_id
from odr_shared.inbox import INBOX_TABLE
from odr_shared.kafka import EventConsumer
from odr_shared.outbox import OUTBOX_TABLE
from odr_shared.testing import sample_order

T0 = datetime(2026, 11, 20, 3, tzinfo=UTC)
STATUSES = ["created", "paid", "shipped", "delivered", "completed", "return_requested"]


@dataclass(frozen=True)
class Record:
    topic: str
    key: bytes | None
    value: bytes
    offset: int


def order_event(
    code: str,
    status: str,
    hours: float,
    items: bool = True,
    email: str | None = "an.nguyen@example.vn",
    name: str = "Nguyễn Văn An",
    phone: str = "0912345678",
    total: int = 300000,
) -> CloudEvent[BaseModel]:
    order = sample_order(code, status=status, status_at=(T0 + timedelta(hours=hours)).isoformat())
    order["buyer"] = {"name": name, "phone": phone, "email": email}
    order["total_amount"] = total
    if not items:
        order["items"] = []
    data = OrderStatusChangedV1.model_validate(
        {**order, "order_id": order_id("plat-a", code), "platform_id": "plat-a"}
    )
    return build_event(
        source="test", event_type="order.status_changed", subject=data.order_id, data=data
    )


def records(events: list[CloudEvent[BaseModel]]) -> list[Record]:
    return [
        Record("orders.events", e.subject.encode() if e.subject else None, e.to_json_bytes(), i)
        for i, e in enumerate(events)
    ]


def consumer(deps: Deps, batched: bool) -> EventConsumer:
    return EventConsumer(
        settings=deps.settings,
        group_id=GROUP_ID,
        handlers=handlers(deps),
        batch_handlers=batch_handlers(deps) if batched else None,
        topics=["orders.events"],
        session_factory=deps.sessions,
    )


def state(deps: Deps, since: datetime) -> dict[str, Any]:
    """Everything the events leave behind; ciphertexts decrypted (Fernet is randomised) and of
    the wall-clock columns only whether the order was written after `since`."""
    cipher = deps.cipher
    with deps.sessions() as s:
        orders = [
            (
                o.id,
                o.platform_id,
                o.order_code,
                o.status,
                o.status_at,
                cipher.decrypt(o.buyer_name_enc),
                cipher.decrypt(o.buyer_phone_enc),
                o.buyer_phone_hash,
                cipher.decrypt(o.buyer_email_enc) if o.buyer_email_enc else None,
                o.seller_id,
                o.seller_name,
                o.items,
                o.total_amount,
                o.currency,
                o.updated_at >= since,
            )
            for o in s.execute(select(Order).order_by(Order.id)).scalars()
        ]
        history = [
            (h.order_id, h.status, h.status_at, h.event_id)
            for h in s.execute(select(OrderStatusChange).order_by(OrderStatusChange.id)).scalars()
        ]
        inbox = Order.metadata.tables[INBOX_TABLE]
        outbox = Order.metadata.tables[OUTBOX_TABLE]
        processed = set(s.execute(select(inbox.c.event_id)).scalars())
        published = s.execute(
            select(outbox.c.topic, outbox.c.key, outbox.c.event_type).order_by(outbox.c.id)
        ).all()
    return {"orders": orders, "history": history, "inbox": processed, "outbox": published}


def reset(deps: Deps) -> None:
    with deps.sessions.begin() as s:
        for table in (
            OrderStatusChange.__table__,
            Order.__table__,
            Order.metadata.tables[INBOX_TABLE],
            Order.metadata.tables[OUTBOX_TABLE],
        ):
            s.execute(delete(table))


def both_ways(
    deps: Deps, before: list[CloudEvent[BaseModel]], polls: list[list[CloudEvent[BaseModel]]]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The state after `before` (applied one by one) then `polls`, one by one and batched."""
    out = []
    for batched in (False, True):
        reset(deps)
        consumer(deps, batched=False).process_batch(records(before))
        since = utcnow()
        c = consumer(deps, batched)
        for poll in polls:
            c.process_batch(records(poll))
        assert c.stats.dead_lettered == 0, c.stats.errors
        out.append(state(deps, since))
    return out[0], out[1]


def test_the_rules_of_one_by_one_hold_within_a_batch(deps: Deps) -> None:
    known = order_event("A1", "paid", 1)
    stale = order_event("D1", "delivered", 5)
    before = [known, stale, order_event("E1", "shipped", 2, email=None)]
    shipped = order_event("A1", "shipped", 2, items=False, phone="+84912345678")
    poll = [
        # A known order: moved twice, an older event in between, one redelivered, and a tie.
        shipped,
        order_event("A1", "paid", 0, name="Trần Thị Bình"),
        order_event("A1", "delivered", 3, total=250000),
        shipped,
        order_event("A1", "completed", 3, items=False, email=None),
        # A new order created without items, then an older event with items, then one without.
        order_event("B1", "paid", 2, items=False),
        order_event("B1", "created", 1),
        order_event("B1", "shipped", 3, items=False, total=1),
        # A new order whose first event is its newest.
        order_event("C1", "delivered", 3),
        order_event("C1", "paid", 1),
        # A known order with only older events: history, nothing else.
        order_event("D1", "shipped", 4, name="Lê Văn Cường"),
        order_event("D1", "paid", 3),
        # A known order moved once, gaining an email.
        order_event("E1", "delivered", 4),
        # Redelivered from an earlier poll.
        known,
    ]
    one_by_one, batched = both_ways(deps, before, [poll])
    assert batched == one_by_one
    orders = {o[0]: o for o in batched["orders"]}
    assert orders["plat-a:A1"][3] == "completed"
    assert orders["plat-a:A1"][11] != []  # the items of the last event that had some
    assert orders["plat-a:B1"][3] == "shipped"
    assert orders["plat-a:B1"][11] == []
    assert orders["plat-a:C1"][3] == "delivered"
    assert orders["plat-a:D1"][3] == "delivered"
    assert orders["plat-a:D1"][-1] is False  # not written by the poll
    assert orders["plat-a:E1"][-1] is True
    assert len(batched["history"]) == len(before) + len(poll) - 2


def test_random_streams_end_in_the_same_state(deps: Deps) -> None:
    rng = random.Random(15)
    codes = [f"R{i}" for i in range(25)]

    def random_event() -> CloudEvent[BaseModel]:
        return order_event(
            rng.choice(codes),
            rng.choice(STATUSES),
            rng.choice([0, 1, 2, 3, 4, 4, 5]),  # ties and older events on purpose
            items=rng.random() < 0.6,
            email=rng.choice([None, "a@example.vn", "b@example.vn"]),
            name=rng.choice(["An", "Bình", "Cường"]),
            total=rng.randrange(0, 10) * 1000,
        )

    before = [random_event() for _ in range(20)]
    stream = [random_event() for _ in range(300)]
    # Redeliveries, some within a poll and some across polls.
    for _ in range(30):
        stream.insert(rng.randrange(len(stream)), rng.choice(stream))
    polls = [stream[i : i + 70] for i in range(0, len(stream), 70)]
    one_by_one, batched = both_ways(deps, before, polls)
    assert batched == one_by_one
    assert len(batched["inbox"]) == len({e.id for e in before + stream})


def test_a_batch_takes_one_locking_select_and_bulk_statements(deps: Deps) -> None:
    before = [order_event(f"S{i}", "paid", 1) for i in range(10)]
    poll = [order_event(f"S{i}", "shipped", 2) for i in range(10)]  # 10 moves
    poll += [order_event(f"S{i}", "created", 0) for i in range(5)]  # 5 older: history only
    poll += [order_event(f"N{i}", "paid", 1) for i in range(20)]  # 20 new orders
    reset(deps)
    consumer(deps, batched=False).process_batch(records(before))
    statements: list[tuple[str, int]] = []

    def spy(_c: Any, _cur: Any, statement: str, params: Any, _ctx: Any, many: bool) -> None:
        statements.append((statement.split()[0].upper(), len(params) if many else 1))

    engine = deps.sessions.kw["bind"]
    event.listen(engine, "before_cursor_execute", spy)
    try:
        with deps.sessions.begin() as s:
            apply_order_events(s, poll, deps.cipher, subject_of=deps.subject_of)
    finally:
        event.remove(engine, "before_cursor_execute", spy)
    # One locking SELECT; then the new orders, the moved ones and every event's history row,
    # each one statement run for many rows (executemany).
    assert [st for st in statements if st[0] != "BEGIN"] == [
        ("SELECT", 1),
        ("INSERT", 20),
        ("UPDATE", 10),
        ("INSERT", len(poll)),
    ]
    with deps.sessions() as s:
        assert s.execute(select(func.count()).select_from(Order)).scalar_one() == 30
        history = s.execute(select(func.count()).select_from(OrderStatusChange)).scalar_one()
        assert history == 10 + len(poll)


def test_orders_loaded_in_the_session_are_reloaded_after_a_batch(deps: Deps) -> None:
    reset(deps)
    consumer(deps, batched=False).process_batch(records([order_event("L1", "paid", 1)]))
    with deps.sessions.begin() as s:
        order = s.get(Order, "plat-a:L1")
        assert order is not None
        assert order.status == "paid"
        apply_order_events(
            s, [order_event("L1", "shipped", 2)], deps.cipher, subject_of=deps.subject_of
        )
        assert order.status == "shipped"
        assert [h.status for h in order.history] == ["paid", "shipped"]
