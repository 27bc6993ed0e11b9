"""Two complaints workers in one consumer group share orders.events: the second joins and the
first crashes mid-stream, and every order status change is projected exactly once."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pydantic import BaseModel
from sqlalchemy import select

from complaints import SERVICE_ROOT
from complaints.consumer import GROUP_ID, handlers
from complaints.deps import build_deps
from complaints.models import Order, OrderStatusChange
from complaints.settings import ComplaintsSettings
from odr_shared.db import make_engine
from odr_shared.events import (
    MEDIATION_TOPIC,
    ORDERS_TOPIC,
    CloudEvent,
    OrderStatusChangedV1,
    build_event,
    order_id,
)
from odr_shared.group_drill import run_group_drill
from odr_shared.migrate import upgrade
from odr_shared.testing import sample_order

pytestmark = [pytest.mark.kafka, pytest.mark.postgres]

# Each order goes through these, in this order, on its own key (so on one partition).
STATUSES = ("paid", "shipped", "delivered")
T0 = datetime(2026, 11, 20, 3, 0, tzinfo=UTC)


def order_status_changes(run: str) -> Callable[[int], tuple[str, CloudEvent[BaseModel]]]:
    def next_event(i: int) -> tuple[str, CloudEvent[BaseModel]]:
        code = f"DHG{run}{i // len(STATUSES):05d}"
        step = i % len(STATUSES)
        order = sample_order(
            code, STATUSES[step], status_at=(T0 + timedelta(minutes=step)).isoformat()
        )
        data = OrderStatusChangedV1.model_validate(
            {**order, "order_id": order_id("plat-a", code), "platform_id": "plat-a"}
        )
        event = build_event(
            source="urn:odr:gateway",
            event_type="order.status_changed",
            subject=data.order_id,
            data=data,
        )
        return ORDERS_TOPIC, event

    return next_event


def test_two_workers_project_each_order_event_once_through_a_join_and_a_crash(
    postgres_url: str, tmp_path: Path
) -> None:
    upgrade(SERVICE_ROOT, postgres_url)
    settings = ComplaintsSettings(  # type: ignore[call-arg]
        database_url=postgres_url, storage_dir=str(tmp_path / "evidence"), environment="test"
    )
    engine = make_engine(postgres_url, pool_size=4)
    deps = build_deps(settings, engine)
    try:
        report = run_group_drill(
            settings=settings,
            group_id=GROUP_ID,
            topics=[ORDERS_TOPIC, MEDIATION_TOPIC],  # the worker's subscription
            handlers=lambda: handlers(deps),
            session_factory=deps.sessions,
            next_event=order_status_changes(uuid.uuid4().hex[:4].upper()),
            leave="crash",
        )
        with deps.sessions() as session:
            history = session.execute(select(OrderStatusChange.event_id)).scalars().all()
            orders = {o.id: o.status for o in session.execute(select(Order)).scalars()}
        # One status-history row per event.
        assert sorted(history) == sorted(e.id for e in report.events)
        latest: dict[str, str] = {}
        for event in report.events:
            data = event.data
            assert isinstance(data, OrderStatusChangedV1)
            latest[data.order_id] = data.status.value
        # One order row each, at its latest status: per key, events were applied in order.
        assert orders == latest
    finally:
        engine.dispose()
