"""Complaints' Kafka handlers: event -> use case."""

from __future__ import annotations

from functools import partial

from complaints.orders import apply_order_event
from odr_shared.crypto import DataCipher
from odr_shared.kafka import EventHandler

GROUP_ID = "complaints"


def handlers(cipher: DataCipher) -> dict[str, EventHandler]:
    return {"order.status_changed": partial(apply_order_event, cipher=cipher)}
