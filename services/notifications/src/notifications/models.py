"""Notifications tables: deliveries (one per event, recipient and channel), outbox, inbox."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Index, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from odr_shared.db import TYPE_ANNOTATION_MAP, new_metadata
from odr_shared.inbox import inbox_table
from odr_shared.outbox import outbox_table
from odr_shared.ratelimit import rate_limit_table


class Base(DeclarativeBase):
    metadata = new_metadata()
    type_annotation_map = TYPE_ANNOTATION_MAP


outbox_table(Base.metadata)
inbox_table(Base.metadata)
rate_limit_table(Base.metadata)


class Delivery(Base):
    __tablename__ = "deliveries"
    __table_args__ = (
        Index(
            "ux_delivery_event_recipient_channel", "event_id", "recipient", "channel", unique=True
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    channel: Mapped[str] = mapped_column(String(10))
    recipient: Mapped[str] = mapped_column(String(254), index=True)
    template: Mapped[str] = mapped_column(String(100))
    language: Mapped[str] = mapped_column(String(10))
    body: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(20), index=True)  # pending | sent | failed | ...
    attempts: Mapped[int] = mapped_column(default=0)
    event_id: Mapped[str] = mapped_column(String(100))
    case_id: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    created_at: Mapped[datetime]
    sent_at: Mapped[datetime | None] = mapped_column(nullable=True)
