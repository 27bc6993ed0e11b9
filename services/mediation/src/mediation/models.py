"""Mediation tables: neutrals and their skills, cases, assignments, routing decisions, outcomes."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from odr_shared.db import TYPE_ANNOTATION_MAP, new_metadata, utcnow
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
# The data keys of the subjects whose personal data mediation seals into mediation.events.
subject_keys_table(Base.metadata)


class Neutral(Base):
    """A mediator and/or arbitrator. `active_cases` is a counter kept with each assignment."""

    __tablename__ = "neutrals"

    neutral_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    email: Mapped[str] = mapped_column(String(254), unique=True)
    phone: Mapped[str] = mapped_column(String(20))
    password_hash: Mapped[str] = mapped_column(String(200))
    primary_role: Mapped[str] = mapped_column(String(20))
    roles: Mapped[str] = mapped_column(String(60))  # comma separated, for display
    regions: Mapped[str] = mapped_column(String(500), default="")
    language: Mapped[str] = mapped_column(String(10), default="vi")  # for messages to them
    max_active_cases: Mapped[int] = mapped_column(Integer)
    active_cases: Mapped[int] = mapped_column(Integer, default=0)
    on_leave: Mapped[bool] = mapped_column(default=False)
    work_start_minute: Mapped[int | None] = mapped_column(Integer, nullable=True)
    work_end_minute: Mapped[int | None] = mapped_column(Integer, nullable=True)
    last_assigned_at: Mapped[datetime | None] = mapped_column(nullable=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    # No index holds the counters: routing finds candidates through the skills' indexes and
    # takes capacity by primary key, so each assignment's update can stay heap-only, in the
    # free space PostgreSQL's fillfactor leaves on each page (migration 0003).
    __table_args__ = ({"postgresql_with": {"fillfactor": 50}},)


class NeutralSkill(Base):
    """One (kind, value) a neutral offers: role, category, language or region.

    Keyed by (kind, value, neutral_id) so "who speaks hmn" is an index range, not a scan.
    """

    __tablename__ = "neutral_skills"

    kind: Mapped[str] = mapped_column(String(20), primary_key=True)
    value: Mapped[str] = mapped_column(String(60), primary_key=True)
    neutral_id: Mapped[str] = mapped_column(
        String(40), ForeignKey("neutrals.neutral_id", ondelete="CASCADE"), primary_key=True
    )

    # Per-neutral lookups (does this neutral have category X?) during routing.
    __table_args__ = (Index("ix_neutral_skills_neutral", "neutral_id", "kind", "value"),)


class NeutralConflict(Base):
    """A declared conflict of interest with a platform or a seller."""

    __tablename__ = "neutral_conflicts"

    kind: Mapped[str] = mapped_column(String(20), primary_key=True)  # platform | seller
    value: Mapped[str] = mapped_column(String(100), primary_key=True)
    neutral_id: Mapped[str] = mapped_column(
        String(40), ForeignKey("neutrals.neutral_id", ondelete="CASCADE"), primary_key=True
    )

    __table_args__ = (Index("ix_neutral_conflicts_neutral", "neutral_id", "kind", "value"),)


class MediationCase(Base):
    """A case handed to mediation, as complaints described it when it escalated."""

    __tablename__ = "mediation_cases"

    case_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    reference: Mapped[str] = mapped_column(String(40))
    order_id: Mapped[str] = mapped_column(String(200), default="")
    order_code: Mapped[str] = mapped_column(String(100), default="")
    platform_id: Mapped[str] = mapped_column(String(40), index=True)
    seller_id: Mapped[str | None] = mapped_column(String(100), nullable=True)
    category: Mapped[str] = mapped_column(String(60))
    language: Mapped[str] = mapped_column(String(10))
    claimed_amount: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    currency: Mapped[str] = mapped_column(String(3), default="VND")
    desired_outcome: Mapped[str | None] = mapped_column(String(60), nullable=True)
    consumer_name: Mapped[str | None] = mapped_column(String(200), nullable=True)  # masked
    consumer_phone: Mapped[str | None] = mapped_column(String(40), nullable=True)  # masked
    consumer_email: Mapped[str | None] = mapped_column(String(254), nullable=True)  # masked
    # The buyer as a data subject (odr_shared.privacy): their erasure and access requests find
    # the case by it, and the case's events are sealed under their key.
    subject_id: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    stage: Mapped[str] = mapped_column(String(20))  # mediation.domain.Stage
    # While waiting: which role it waits for and since when (the queue's order).
    waiting_role: Mapped[str | None] = mapped_column(String(20), nullable=True)
    queued_at: Mapped[datetime | None] = mapped_column(nullable=True)
    mediator_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    escalated_at: Mapped[datetime]
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (Index("ix_mediation_cases_queue", "stage", "queued_at"),)


class Assignment(Base):
    """A neutral on a case in a role, from assignment until replaced, released or done."""

    __tablename__ = "assignments"

    assignment_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    case_id: Mapped[str] = mapped_column(String(64), index=True)
    neutral_id: Mapped[str] = mapped_column(String(40))
    role: Mapped[str] = mapped_column(String(20))
    status: Mapped[str] = mapped_column(String(20))  # active | replaced | released
    assigned_at: Mapped[datetime]
    due_at: Mapped[datetime]  # act (message, proposal, escalation, vote) by then or be replaced
    acted_at: Mapped[datetime | None] = mapped_column(nullable=True)
    ended_at: Mapped[datetime | None] = mapped_column(nullable=True)
    end_reason: Mapped[str | None] = mapped_column(String(200), nullable=True)

    __table_args__ = (
        Index("ix_assignments_neutral_status", "neutral_id", "status", "due_at"),
        Index("ix_assignments_sla", "status", "acted_at", "due_at"),
    )


class RoutingDecision(Base):
    """One routing attempt: the outcome, who was chosen and why."""

    __tablename__ = "routing_decisions"

    decision_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    case_id: Mapped[str] = mapped_column(String(64), index=True)
    role: Mapped[str] = mapped_column(String(20))
    needed: Mapped[int] = mapped_column(Integer)
    outcome: Mapped[str] = mapped_column(String(20))  # assigned | queued
    trigger: Mapped[str] = mapped_column(String(40))  # escalated | retry | sla_breach | arbitration
    chosen_ids: Mapped[str] = mapped_column(String(200), default="")
    considered: Mapped[int] = mapped_column(Integer)
    explanation: Mapped[str] = mapped_column(Text)
    decided_at: Mapped[datetime]


class RoutingReason(Base):
    """How many candidates one rule excluded in one routing decision."""

    __tablename__ = "routing_reasons"

    decision_id: Mapped[str] = mapped_column(
        String(40),
        ForeignKey("routing_decisions.decision_id", ondelete="CASCADE"),
        primary_key=True,
    )
    rule: Mapped[str] = mapped_column(String(20), primary_key=True)
    excluded: Mapped[int] = mapped_column(Integer)


class Proposal(Base):
    """A settlement the mediator proposes; both parties answer through complaints."""

    __tablename__ = "proposals"

    proposal_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    case_id: Mapped[str] = mapped_column(String(64), index=True)
    mediator_id: Mapped[str] = mapped_column(String(40))
    outcome: Mapped[str] = mapped_column(String(40))
    amount: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    terms: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(20), default="open")  # open|accepted|rejected
    consumer_answer: Mapped[str | None] = mapped_column(String(20), nullable=True)
    platform_answer: Mapped[str | None] = mapped_column(String(20), nullable=True)
    created_at: Mapped[datetime]


class ArbitrationVote(Base):
    """One arbitrator's reasoned vote; a sole arbitrator's vote is the decision."""

    __tablename__ = "arbitration_votes"

    case_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    arbitrator_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    outcome: Mapped[str] = mapped_column(String(40))
    amount: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    reasons: Mapped[str] = mapped_column(Text)
    voted_at: Mapped[datetime]


class Decision(Base):
    """The arbitral decision on a case."""

    __tablename__ = "decisions"

    case_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    decision_id: Mapped[str] = mapped_column(String(40), unique=True)
    outcome: Mapped[str] = mapped_column(String(40))
    amount: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    reasons: Mapped[str] = mapped_column(Text)
    decided_by: Mapped[str] = mapped_column(String(200))  # comma separated arbitrator ids
    decided_at: Mapped[datetime]


class TimelineEntry(Base):
    """What happened to a case inside mediation, for the dashboard and the audit trail."""

    __tablename__ = "case_timeline"

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    case_id: Mapped[str] = mapped_column(String(64), index=True)
    at: Mapped[datetime]
    kind: Mapped[str] = mapped_column(String(60))
    actor_role: Mapped[str] = mapped_column(String(20))
    actor_id: Mapped[str | None] = mapped_column(String(100), nullable=True)
    summary: Mapped[str] = mapped_column(Text)


class PendingErasure(Base):
    """An erasure request deferred because one of the subject's cases was still open.

    When such a case leaves mediation (closed, decided) the request is applied again
    (mediation.privacy.resume_erasures), so the erasure completes without anyone asking twice,
    whichever of case.closed and the request arrives first.
    """

    __tablename__ = "pending_erasures"

    request_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    subject_id: Mapped[str] = mapped_column(String(64), index=True)
    platform_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    case_ids: Mapped[str] = mapped_column(Text, default="")  # comma separated
    order_ids: Mapped[str] = mapped_column(Text, default="")  # comma separated
    requested_at: Mapped[datetime]
    deferred_at: Mapped[datetime]
