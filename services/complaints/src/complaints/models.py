"""Complaints tables: orders (buyer data encrypted), one-time codes, cases and their parts."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

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
subject_keys_table(Base.metadata)


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
    # The buyer as a data subject (keyed hash of the canonical phone, odr_shared.privacy); NULL
    # once the buyer's data was erased.
    subject_id: Mapped[str | None] = mapped_column(String(64), index=True)
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


class OtpChallenge(Base):
    """A one-time code sent to the buyer's phone; only its keyed hash is kept."""

    __tablename__ = "otp_challenges"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    order_id: Mapped[str] = mapped_column(ForeignKey("orders.id"), index=True)
    phone_hash: Mapped[str] = mapped_column(String(64), index=True)
    code_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    consumed_at: Mapped[datetime | None]


class ReferenceCounter(Base):
    """The last case number handed out in a year (KN-2026-000123)."""

    __tablename__ = "case_reference_counters"

    year: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    last_value: Mapped[int] = mapped_column(Integer)


class CaseRecord(Base):
    __tablename__ = "cases"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    reference: Mapped[str] = mapped_column(String(20), unique=True)
    order_id: Mapped[str] = mapped_column(ForeignKey("orders.id"), index=True)
    # Set while the case is open, NULL afterwards: the unique index allows one open case per
    # order on every backend (NULLs never collide), even when two requests race.
    open_order_id: Mapped[str | None] = mapped_column(String(200), unique=True)
    platform_id: Mapped[str] = mapped_column(String(40), index=True)
    order_code: Mapped[str] = mapped_column(String(100))
    # The buyer's data subject (copied from the order when the case opens; NULL once erased).
    subject_id: Mapped[str | None] = mapped_column(String(64), index=True)
    seller_id: Mapped[str] = mapped_column(String(100))
    category: Mapped[str] = mapped_column(String(40))
    description: Mapped[str] = mapped_column(Text)
    desired_outcome: Mapped[str] = mapped_column(String(40))
    claimed_amount: Mapped[int | None]
    currency: Mapped[str] = mapped_column(String(3))
    language: Mapped[str] = mapped_column(String(10))
    status: Mapped[str] = mapped_column(String(30), index=True)
    opened_at: Mapped[datetime]
    merchant_response_due_at: Mapped[datetime]
    first_response_at: Mapped[datetime | None]
    waiting_on_consumer_since: Mapped[datetime | None]
    offer_rejected: Mapped[bool] = mapped_column(Boolean, default=False)
    deadline_missed_at: Mapped[datetime | None]
    settled_by: Mapped[str | None] = mapped_column(String(20))
    decision: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    closed_at: Mapped[datetime | None]
    updated_at: Mapped[datetime]


class CaseTransition(Base):
    """The audit trail: every status change with its actor, time and reason."""

    __tablename__ = "case_transitions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    case_id: Mapped[str] = mapped_column(ForeignKey("cases.id"), index=True)
    from_status: Mapped[str | None] = mapped_column(String(30))
    to_status: Mapped[str] = mapped_column(String(30))
    actor_role: Mapped[str] = mapped_column(String(20))
    actor_id: Mapped[str | None] = mapped_column(String(200))
    reason: Mapped[str | None] = mapped_column(Text)
    at: Mapped[datetime]


class TimelineEntry(Base):
    """What the parties see happen on a case: messages, evidence, offers, proposals, notes."""

    __tablename__ = "case_timeline"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    entry_id: Mapped[str] = mapped_column(String(36), unique=True)
    case_id: Mapped[str] = mapped_column(ForeignKey("cases.id"), index=True)
    kind: Mapped[str] = mapped_column(String(40))
    actor_role: Mapped[str] = mapped_column(String(20))
    actor_id: Mapped[str | None] = mapped_column(String(200))
    at: Mapped[datetime]
    body: Mapped[dict[str, Any]] = mapped_column(JSON)


class Evidence(Base):
    __tablename__ = "case_evidence"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    case_id: Mapped[str] = mapped_column(ForeignKey("cases.id"), index=True)
    uploader_role: Mapped[str] = mapped_column(String(20))
    uploader_id: Mapped[str | None] = mapped_column(String(200))
    filename: Mapped[str] = mapped_column(String(255))
    content_type: Mapped[str] = mapped_column(String(100))
    size: Mapped[int]
    sha256: Mapped[str] = mapped_column(String(64))
    storage_key: Mapped[str] = mapped_column(String(100))
    uploaded_at: Mapped[datetime]
    # When the case closed: retention counts from here (complaints.retention).
    case_closed_at: Mapped[datetime | None] = mapped_column(index=True)


class Offer(Base):
    __tablename__ = "case_offers"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    case_id: Mapped[str] = mapped_column(ForeignKey("cases.id"), index=True)
    kind: Mapped[str] = mapped_column(String(30))
    amount: Mapped[int | None]
    currency: Mapped[str] = mapped_column(String(3))
    terms: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(20))  # pending accepted rejected superseded
    made_by: Mapped[str] = mapped_column(String(200))
    made_at: Mapped[datetime]
    answered_at: Mapped[datetime | None]
    answer_reason: Mapped[str | None] = mapped_column(Text)


class Proposal(Base):
    """A mediator's proposal; both parties answer it here."""

    __tablename__ = "case_proposals"

    id: Mapped[str] = mapped_column(String(100), primary_key=True)
    case_id: Mapped[str] = mapped_column(ForeignKey("cases.id"), index=True)
    outcome: Mapped[str | None] = mapped_column(String(100))
    amount: Mapped[int | None]
    terms: Mapped[str | None] = mapped_column(Text)
    made_by: Mapped[str | None] = mapped_column(String(200))
    made_at: Mapped[datetime]
    consumer_response: Mapped[str | None] = mapped_column(String(20))
    platform_response: Mapped[str | None] = mapped_column(String(20))
    status: Mapped[str] = mapped_column(String(20))  # pending accepted rejected


class CaseNeutral(Base):
    """Which neutrals may see a case (learnt from mediation.events)."""

    __tablename__ = "case_neutrals"
    __table_args__ = (UniqueConstraint("case_id", "neutral_id", "role"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    case_id: Mapped[str] = mapped_column(ForeignKey("cases.id"), index=True)
    neutral_id: Mapped[str] = mapped_column(String(100), index=True)
    role: Mapped[str] = mapped_column(String(20))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    assigned_at: Mapped[datetime]


class PrivacyRequest(Base):
    """A data subject's request (access or erasure) and how far each service got with it."""

    __tablename__ = "privacy_requests"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    kind: Mapped[str] = mapped_column(String(10))  # access erasure
    subject_id: Mapped[str | None] = mapped_column(String(64), index=True)
    source: Mapped[str] = mapped_column(String(10))  # consumer platform admin
    platform_id: Mapped[str | None] = mapped_column(String(40))  # platform: only its copies
    source_ref: Mapped[str | None] = mapped_column(String(200))  # the platform's delivery id
    requested_by: Mapped[str | None] = mapped_column(String(200))
    # The orders and cases the request covered when it was made (and when it was worked on).
    order_ids: Mapped[list[str]] = mapped_column(JSON)
    case_ids: Mapped[list[str]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(20), index=True)  # received in_progress ...
    reason: Mapped[str | None] = mapped_column(Text)
    until: Mapped[datetime | None]
    acknowledged_at: Mapped[datetime]
    due_at: Mapped[datetime] = mapped_column(index=True)
    completed_at: Mapped[datetime | None]
    export_expires_at: Mapped[datetime | None]
    # Per service: {"status", "reason", "until", "counts", "at"} as each reported.
    reports: Mapped[dict[str, Any]] = mapped_column(JSON)
    # The worker has something to do for it (set on creation, and when a deferral lifts).
    needs_work: Mapped[bool] = mapped_column(Boolean, default=True, index=True)
    next_attempt_at: Mapped[datetime | None]
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class PrivacyExport(Base):
    """An access request's export: one JSON document, encrypted, deleted once it expires."""

    __tablename__ = "privacy_exports"

    request_id: Mapped[str] = mapped_column(ForeignKey("privacy_requests.id"), primary_key=True)
    export_enc: Mapped[bytes] = mapped_column(LargeBinary)
    size: Mapped[int]
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime] = mapped_column(index=True)
