"""Notifications tables: deliveries, the case-contact projection, preferences, outbox, inbox.

Contact data (phone numbers, email addresses) and message bodies are encrypted at rest; a keyed
lookup hash stands in for the address wherever it must be matched or unique. Each row holding a
person's data names its data subject (`subject_id`, odr_shared.privacy), so an erasure or an
access request finds it (notifications.privacy).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, Index, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from odr_shared.db import TYPE_ANNOTATION_MAP, new_metadata
from odr_shared.inbox import inbox_table
from odr_shared.outbox import outbox_table
from odr_shared.privacy import subject_keys_table


class Base(DeclarativeBase):
    metadata = new_metadata()
    type_annotation_map = TYPE_ANNOTATION_MAP


outbox_table(Base.metadata)
inbox_table(Base.metadata)
# The keys of what notifications would seal itself (its own events carry no personal data today),
# served to other services by the subject-keys endpoint and destroyed on erasure.
subject_keys_table(Base.metadata)


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
    # None once erased (notifications.privacy) or past retention.
    recipient_enc: Mapped[str | None] = mapped_column(Text, nullable=True)
    recipient_masked: Mapped[str] = mapped_column(String(100))
    # The recipient as a data subject (odr_shared.privacy.subject_for_phone); None when unknown
    # (an email-only neutral) and once erased.
    subject_id: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    template: Mapped[str] = mapped_column(String(100))
    language: Mapped[str] = mapped_column(String(10))
    category: Mapped[str] = mapped_column(String(20))  # order_status | case | otp | command
    urgent: Mapped[bool] = mapped_column(Boolean, default=False)
    # What was sent (SMS text or subject + text + HTML), encrypted: it may hold a one-time code.
    # None once erased or past the bodies' retention (RETENTION_DELIVERY_BODIES_DAYS).
    content_enc: Mapped[str | None] = mapped_column(Text, nullable=True)
    # The same body with secrets redacted and contacts masked, for the admin API: encrypted too,
    # as it still holds names and free text (reasons, terms). Decrypted on read.
    body_enc: Mapped[str | None] = mapped_column(Text, nullable=True)
    # pending | sending | sent | failed | suppressed (opted out) | cancelled (recipient erased)
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
    created_at: Mapped[datetime] = mapped_column(index=True)
    # pending: not before this; sending: the claim's lease ends then (a crashed sender's
    # delivery is picked up again).
    next_attempt_at: Mapped[datetime | None] = mapped_column(nullable=True)
    sent_at: Mapped[datetime | None] = mapped_column(nullable=True, index=True)
    dead_lettered_at: Mapped[datetime | None] = mapped_column(nullable=True)
    # When the recipient's data was erased: the row keeps its facts for statistics only.
    erased_at: Mapped[datetime | None] = mapped_column(nullable=True)


class CaseContact(Base):
    """case_id -> the consumer's contact, from cases.events (mediation.events carry none)."""

    __tablename__ = "case_contacts"

    case_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    reference: Mapped[str] = mapped_column(String(64))
    order_id: Mapped[str] = mapped_column(String(200))
    order_code: Mapped[str] = mapped_column(String(100))
    platform_id: Mapped[str] = mapped_column(String(64))
    # None once the consumer was erased: the case stays known (mediation events for it still
    # reach the neutral), its consumer no longer.
    consumer_enc: Mapped[str | None] = mapped_column(Text, nullable=True)
    subject_id: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    updated_at: Mapped[datetime]


class RecipientPreference(Base):
    """A recipient's choices, keyed by the lookup hash of one address (phone or email)."""

    __tablename__ = "recipient_preferences"

    recipient_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    order_status_opt_out: Mapped[bool] = mapped_column(Boolean, default=False)
    subject_id: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    updated_at: Mapped[datetime]


class UnsubscribeLink(Base):
    """A short random token in order-status messages: whoever holds it may turn them off."""

    __tablename__ = "unsubscribe_links"

    token: Mapped[str] = mapped_column(String(32), primary_key=True)
    recipient_hash: Mapped[str] = mapped_column(String(64), unique=True)
    subject_id: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    created_at: Mapped[datetime]
    # Each message that carries the link renews it; retention counts from the last one.
    last_used_at: Mapped[datetime] = mapped_column(index=True)
