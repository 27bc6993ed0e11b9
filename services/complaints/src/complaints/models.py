"""Complaints tables: the order projection (buyer data encrypted), status history, outbox, inbox."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

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


class Order(Base):
    __tablename__ = "orders"
    __table_args__ = (Index("ux_orders_platform_code", "platform_id", "order_code", unique=True),)

    id: Mapped[str] = mapped_column(String(200), primary_key=True)  # {platform_id}:{order_code}
    platform_id: Mapped[str] = mapped_column(String(40))
    order_code: Mapped[str] = mapped_column(String(100), index=True)
    status: Mapped[str] = mapped_column(String(30))
    status_at: Mapped[datetime]
    buyer_name_enc: Mapped[str] = mapped_column(Text)
    buyer_phone_enc: Mapped[str] = mapped_column(Text)
    buyer_phone_hash: Mapped[str] = mapped_column(String(64), index=True)
    buyer_email_enc: Mapped[str | None] = mapped_column(Text, nullable=True)
    seller_id: Mapped[str] = mapped_column(String(100))
    seller_name: Mapped[str] = mapped_column(String(200))
    items: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    total_amount: Mapped[int]
    currency: Mapped[str] = mapped_column(String(3))
    first_seen_at: Mapped[datetime]
    updated_at: Mapped[datetime]

    history: Mapped[list[OrderStatusChange]] = relationship(
        order_by="OrderStatusChange.status_at", lazy="selectin"
    )


class OrderStatusChange(Base):
    __tablename__ = "order_status_history"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    order_id: Mapped[str] = mapped_column(ForeignKey("orders.id"), index=True)
    status: Mapped[str] = mapped_column(String(30))
    status_at: Mapped[datetime]
    event_id: Mapped[str] = mapped_column(String(100), unique=True)
    recorded_at: Mapped[datetime]
