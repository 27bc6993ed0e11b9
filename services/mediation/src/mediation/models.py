"""Mediation tables: cases escalated to mediation awaiting routing, outbox, inbox."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import String
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


class MediationCase(Base):
    """A case handed to mediation, as complaints described it when it escalated."""

    __tablename__ = "mediation_cases"

    case_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    reference: Mapped[str] = mapped_column(String(40))
    platform_id: Mapped[str] = mapped_column(String(40), index=True)
    seller_id: Mapped[str | None] = mapped_column(String(100), nullable=True)
    category: Mapped[str] = mapped_column(String(60))
    language: Mapped[str] = mapped_column(String(10))
    claimed_amount: Mapped[int | None] = mapped_column(nullable=True)
    state: Mapped[str] = mapped_column(String(20), index=True)  # waiting | assigned | ...
    escalated_at: Mapped[datetime]
