"""Notifications tables: deliveries, the case-contact projection, preferences, outbox, inbox.

Contact data (phone numbers, email addresses) and message bodies are encrypted at rest; a keyed
lookup hash stands in for the address wherever it must be matched or unique.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, Index, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from odr_shared.db import TYPE_ANNOTATION_MAP, new_metadata
from odr_shared.inbox import inbox_table
from odr_shared.outbox import outbox_table


class Base(DeclarativeBase):
    metadata = new_metadata()
    type_annotation_map = TYPE_ANNOTATION_MAP


outbox_table(Base.metadata)
inbox_table(Base.metadata)


class Delivery(Base):
    """One message to one recipient over one channel, and how sending it went."""

    __tablename__ = "deliveries"
    __table_args__ = (
        # A redelivered event finds its delivery already there: one per (event, recipient, channel).
        Index(
            "ux_delivery_event_recipient_channel",
            "event_id",
            "recipient_hash",
            "channel",
            unique=True,
        ),
        Index("ix_deliveries_due", "status", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    channel: Mapped[str] = mapped_column(String(10))
    recipient_hash: Mapped[str] = mapped_column(String(64), index=True)
    recipient_enc: Mapped[str] = mapped_column(Text)
    recipient_masked: Mapped[str] = mapped_column(String(100))
    template: Mapped[str] = mapped_column(String(100))
    language: Mapped[str] = mapped_column(String(10))
    category: Mapped[str] = mapped_column(String(20))  # order_status | case | otp | command
    urgent: Mapped[bool] = mapped_column(Boolean, default=False)
    # What was sent (SMS text or subject + text + HTML), encrypted: it may hold a one-time code.
    content_enc: Mapped[str] = mapped_column(Text)
    # The same body with secrets redacted and contacts masked, for the admin API.
    body: Mapped[str] = mapped_column(Text)
    # pending | sending | sent | failed | suppressed (opted out)
    status: Mapped[str] = mapped_column(String(20), index=True)
    attempts: Mapped[int] = mapped_column(default=0)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    provider_id: Mapped[str | None] = mapped_column(String(200), nullable=True)
    event_id: Mapped[str] = mapped_column(String(100))
    event_type: Mapped[str] = mapped_column(String(100))
    source_topic: Mapped[str] = mapped_column(String(200))
    case_id: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    order_id: Mapped[str | None] = mapped_column(String(200), nullable=True, index=True)
    platform_id: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    created_at: Mapped[datetime]
    # pending: not before this; sending: the claim's lease ends then (a crashed sender's
    # delivery is picked up again).
    next_attempt_at: Mapped[datetime | None] = mapped_column(nullable=True)
    sent_at: Mapped[datetime | None] = mapped_column(nullable=True, index=True)
    dead_lettered_at: Mapped[datetime | None] = mapped_column(nullable=True)


class CaseContact(Base):
    """case_id -> the consumer's contact, from cases.events (mediation.events carry none)."""

    __tablename__ = "case_contacts"

    case_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    reference: Mapped[str] = mapped_column(String(64))
    order_id: Mapped[str] = mapped_column(String(200))
    order_code: Mapped[str] = mapped_column(String(100))
    platform_id: Mapped[str] = mapped_column(String(64))
    consumer_enc: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[datetime]


class RecipientPreference(Base):
    """A recipient's choices, keyed by the lookup hash of one address (phone or email)."""

    __tablename__ = "recipient_preferences"

    recipient_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    order_status_opt_out: Mapped[bool] = mapped_column(Boolean, default=False)
    updated_at: Mapped[datetime]


class UnsubscribeLink(Base):
    """A short random token in order-status messages: whoever holds it may turn them off."""

    __tablename__ = "unsubscribe_links"

    token: Mapped[str] = mapped_column(String(32), primary_key=True)
    recipient_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime]
