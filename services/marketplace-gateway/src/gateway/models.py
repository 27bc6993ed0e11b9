"""Gateway tables: platforms, API clients, inbound log, order snapshots, outbound deliveries."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, Integer, LargeBinary, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from odr_shared.db import TYPE_ANNOTATION_MAP, new_metadata
from odr_shared.inbox import inbox_table
from odr_shared.outbox import outbox_table
from odr_shared.privacy import subject_keys_table
from odr_shared.ratelimit import rate_limit_table


class Base(DeclarativeBase):
    metadata = new_metadata()
    type_annotation_map = TYPE_ANNOTATION_MAP


outbox_table(Base.metadata)
inbox_table(Base.metadata)
rate_limit_table(Base.metadata)
# The data keys of the buyers whose order events the gateway seals (odr_shared.privacy).
subject_keys_table(Base.metadata)


class Platform(Base):
    __tablename__ = "platforms"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(20))
    # Secrets are Fernet-encrypted; a *_previous secret stays valid until its *_until time.
    signing_secret_enc: Mapped[str] = mapped_column(Text)
    signing_secret_previous_enc: Mapped[str | None] = mapped_column(Text, nullable=True)
    signing_secret_previous_until: Mapped[datetime | None] = mapped_column(nullable=True)
    outbound_secret_enc: Mapped[str] = mapped_column(Text)
    outbound_secret_previous_enc: Mapped[str | None] = mapped_column(Text, nullable=True)
    outbound_secret_previous_until: Mapped[datetime | None] = mapped_column(nullable=True)
    app_key: Mapped[str | None] = mapped_column(String(200), nullable=True)
    push_url: Mapped[str | None] = mapped_column(String(500), nullable=True)
    outbound_url: Mapped[str | None] = mapped_column(String(500), nullable=True)
    outbound_enabled: Mapped[bool] = mapped_column(default=True)
    outbound_disabled_reason: Mapped[str | None] = mapped_column(String(500), nullable=True)
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
    """Every webhook delivery that reached a known platform, accepted or rejected.

    The raw body is kept encrypted (it carries buyer phone numbers) so it can be replayed.
    """

    __tablename__ = "inbound_deliveries"
    __table_args__ = (
        Index("ux_inbound_platform_delivery", "platform_id", "delivery_key", unique=True),
        Index("ix_inbound_platform_received", "platform_id", "received_at"),
        Index("ix_inbound_platform_status", "platform_id", "status"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    platform_id: Mapped[str] = mapped_column(String(40))
    # The marketplace's delivery id (webhook-id, msg_id ...) or a digest of the body; NULL for
    # rejected deliveries and replays, which must never block a later valid delivery.
    delivery_key: Mapped[str | None] = mapped_column(String(200), nullable=True)
    source: Mapped[str] = mapped_column(String(20), default="webhook")  # webhook|batch|api|replay
    # accepted | held | ignored | stale | duplicate | rejected
    status: Mapped[str] = mapped_column(String(20))
    http_status: Mapped[int]
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    headers: Mapped[dict[str, str]] = mapped_column(JSON)
    body_enc: Mapped[bytes] = mapped_column(LargeBinary)
    body_size: Mapped[int] = mapped_column(default=0)
    summary: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    order_id: Mapped[str | None] = mapped_column(String(200), nullable=True)
    event_id: Mapped[str | None] = mapped_column(String(100), nullable=True)
    replay_of: Mapped[int | None] = mapped_column(nullable=True)
    received_at: Mapped[datetime]
    # The data subject (odr_shared.privacy.subject_for_phone of the buyer) when every order in
    # the delivery is one buyer's: erasure and export find the delivery by it.
    subject_id: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)


class InboundEvent(Base):
    """One marketplace event (order, status, its time) seen once per platform: the dedup key."""

    __tablename__ = "inbound_events"

    platform_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    event_key: Mapped[str] = mapped_column(String(200), primary_key=True)
    delivery_id: Mapped[int]
    order_id: Mapped[str] = mapped_column(String(200))
    event_id: Mapped[str | None] = mapped_column(String(100), nullable=True)
    received_at: Mapped[datetime]


class OrderSnapshot(Base):
    """What the gateway knows of an order, merged into pushes that carry only a status."""

    __tablename__ = "order_snapshots"

    order_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    platform_id: Mapped[str] = mapped_column(String(40), index=True)
    order_code: Mapped[str] = mapped_column(String(100))
    status: Mapped[str] = mapped_column(String(30))
    status_at: Mapped[datetime]
    # Buyer name/phone/email: personal data, encrypted at rest.
    buyer_enc: Mapped[str | None] = mapped_column(Text, nullable=True)
    seller: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    items: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON, nullable=True)
    total_amount: Mapped[int | None] = mapped_column(nullable=True)
    currency: Mapped[str | None] = mapped_column(String(3), nullable=True)
    updated_at: Mapped[datetime]
    # The buyer's data subject; NULL once erased (or for an order whose buyer is not known).
    subject_id: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)


class OutboundDelivery(Base):
    """One case or mediation event to deliver to a platform's outbound_url."""

    __tablename__ = "outbound_deliveries"
    __table_args__ = (
        Index("ux_outbound_platform_event", "platform_id", "event_id", unique=True),
        Index("ix_outbound_due", "status", "next_attempt_at"),
        Index("ix_outbound_platform_created", "platform_id", "created_at"),
    )

    id: Mapped[str] = mapped_column(String(60), primary_key=True)  # the webhook-id
    platform_id: Mapped[str] = mapped_column(String(40))
    event_id: Mapped[str] = mapped_column(String(100))
    event_type: Mapped[str] = mapped_column(String(100))
    case_id: Mapped[str | None] = mapped_column(String(100), nullable=True)
    # The exact JSON body sent (consumer contact already stripped).
    payload: Mapped[bytes] = mapped_column(LargeBinary)
    # pending | delivering | delivered | failed | disabled
    status: Mapped[str] = mapped_column(String(20))
    attempts: Mapped[int] = mapped_column(default=0)
    # Index into the retry schedule; a replay starts the schedule again.
    schedule_step: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime]
    lease_until: Mapped[datetime | None] = mapped_column(nullable=True)
    last_status_code: Mapped[int | None] = mapped_column(nullable=True)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime]
    delivered_at: Mapped[datetime | None] = mapped_column(nullable=True)
    # The consumer of the case, where known: its order's buyer.
    subject_id: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)


class OutboundAttempt(Base):
    """The delivery log: one row per HTTP attempt."""

    __tablename__ = "outbound_attempts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    delivery_id: Mapped[str] = mapped_column(ForeignKey("outbound_deliveries.id"), index=True)
    attempt: Mapped[int]
    attempted_at: Mapped[datetime]
    status_code: Mapped[int | None] = mapped_column(nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    retry_after_s: Mapped[int | None] = mapped_column(nullable=True)
    duration_ms: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(nullable=True)
