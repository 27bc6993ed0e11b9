"""Gateway tables: platforms, their API clients, the inbound webhook log, outbox and inbox."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, ForeignKey, Index, Integer, LargeBinary, String, Text
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


class Platform(Base):
    __tablename__ = "platforms"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(20))
    # Secrets are Fernet-encrypted; *_previous verifies during a rotation.
    signing_secret_enc: Mapped[str] = mapped_column(Text)
    signing_secret_previous_enc: Mapped[str | None] = mapped_column(Text, nullable=True)
    outbound_secret_enc: Mapped[str] = mapped_column(Text)
    app_key: Mapped[str | None] = mapped_column(String(200), nullable=True)
    push_url: Mapped[str | None] = mapped_column(String(500), nullable=True)
    outbound_url: Mapped[str | None] = mapped_column(String(500), nullable=True)
    outbound_enabled: Mapped[bool] = mapped_column(default=True)
    status_notifications: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime]


class ApiClient(Base):
    __tablename__ = "api_clients"

    client_id: Mapped[str] = mapped_column(String(60), primary_key=True)
    platform_id: Mapped[str] = mapped_column(ForeignKey("platforms.id"), index=True)
    secret_hash: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None] = mapped_column(nullable=True)


class InboundDelivery(Base):
    """Every webhook delivery that reached us, accepted or rejected, kept for inspection."""

    __tablename__ = "inbound_deliveries"
    __table_args__ = (
        Index("ux_inbound_platform_delivery", "platform_id", "delivery_key", unique=True),
        Index("ix_inbound_platform_received", "platform_id", "received_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    platform_id: Mapped[str] = mapped_column(String(40))
    # The marketplace's delivery id (webhook-id) or a digest of the body when it sends none;
    # NULL for rejected deliveries, which must never block a later valid one.
    delivery_key: Mapped[str | None] = mapped_column(String(200), nullable=True)
    status: Mapped[str] = mapped_column(String(20))  # accepted | rejected | duplicate
    http_status: Mapped[int]
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    headers: Mapped[dict[str, str]] = mapped_column(JSON)
    body: Mapped[bytes] = mapped_column(LargeBinary)
    order_id: Mapped[str | None] = mapped_column(String(200), nullable=True)
    event_id: Mapped[str | None] = mapped_column(String(100), nullable=True)
    received_at: Mapped[datetime]
