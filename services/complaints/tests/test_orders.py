"""The order projection: idempotent per event, never rolled back by an older event, history kept."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import select

from complaints.models import Order
from complaints.orders import apply_order_event
from complaints.service import Deps
from odr_shared.events import OrderStatusChangedV1, build_event
from odr_shared.inbox import already_processed, mark_processed
from odr_shared.testing import sample_order


def _event(status: str, at: str, phone: str = "0912345678") -> object:
    order = sample_order("DHO1", status=status, status_at=at)
    order["buyer"] = {**order["buyer"], "phone": phone}  # type: ignore[dict-item]
    data = OrderStatusChangedV1.model_validate(
        {**order, "order_id": "plat-a:DHO1", "platform_id": "plat-a"}
    )
    return build_event(source="t", event_type="order.status_changed", subject="x", data=data)


def _apply(deps: Deps, event: object) -> None:
    # What EventConsumer does: the inbox id in the same transaction as the effect.
    with deps.sessions.begin() as session:
        if already_processed(session, "complaints", event.id):  # type: ignore[attr-defined]
            return
        apply_order_event(session, event, deps.cipher, subject_of=deps.subject_of)  # type: ignore[arg-type]
        mark_processed(session, "complaints", event.id, "order.status_changed")  # type: ignore[attr-defined]


def test_projection_keeps_history_and_ignores_older_and_duplicate_events(deps: Deps) -> None:
    shipped = _event("shipped", "2026-11-19T03:00:00Z")
    delivered = _event("delivered", "2026-11-20T03:00:00Z", phone="+84912345678")
    _apply(deps, shipped)
    _apply(deps, delivered)
    _apply(deps, delivered)  # redelivered
    _apply(deps, _event("paid", "2026-11-18T03:00:00Z"))  # arrives late
    with deps.sessions() as session:
        (order,) = session.execute(select(Order)).scalars()
        assert order.status == "delivered"
        assert order.status_at == datetime(2026, 11, 20, 3, tzinfo=UTC)
        assert [h.status for h in order.history] == ["paid", "shipped", "delivered"]
        # Phone kept encrypted, looked up by the keyed hash of its canonical form.
        assert "912345678" not in order.buyer_phone_enc
        assert order.buyer_phone_hash == deps.cipher.lookup_hash("+84912345678")
        assert deps.cipher.decrypt(order.buyer_phone_enc) == "+84912345678"
