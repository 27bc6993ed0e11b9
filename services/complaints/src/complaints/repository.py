"""Complaints queries: the SQL the use cases need, in one place."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from complaints.domain import MERCHANT_PHASE
from complaints.models import (
    CaseNeutral,
    CaseRecord,
    CaseTransition,
    Order,
    ReferenceCounter,
    TimelineEntry,
)
from odr_shared.auth import Party


def next_reference(session: Session, year: int) -> str:
    """KN-<year>-<6 digits>, sequential per year; one atomic upsert, safe under concurrency."""
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    stmt = (
        insert(ReferenceCounter)
        .values(year=year, last_value=1)
        .on_conflict_do_update(
            index_elements=[ReferenceCounter.year],
            set_={"last_value": ReferenceCounter.last_value + 1},
        )
        .returning(ReferenceCounter.last_value)
    )
    number = int(session.execute(stmt).scalar_one())
    return f"KN-{year}-{number:06d}"


def find_orders(session: Session, order_code: str, platform_id: str | None) -> list[Order]:
    q = select(Order).where(Order.order_code == order_code)
    if platform_id is not None:
        q = q.where(Order.platform_id == platform_id)
    return list(session.execute(q).scalars())


def open_case_for_order(session: Session, order_id: str) -> CaseRecord | None:
    return session.execute(
        select(CaseRecord).where(CaseRecord.open_order_id == order_id)
    ).scalar_one_or_none()


def cases_for_order(session: Session, order_id: str) -> list[CaseRecord]:
    return list(
        session.execute(
            select(CaseRecord).where(CaseRecord.order_id == order_id).order_by(CaseRecord.opened_at)
        ).scalars()
    )


def active_neutral_ids(session: Session, case_id: str) -> set[str]:
    return set(
        session.execute(
            select(CaseNeutral.neutral_id).where(
                CaseNeutral.case_id == case_id, CaseNeutral.active.is_(True)
            )
        ).scalars()
    )


def cases_for_party(
    session: Session, party: Party, platform_id: str | None, status: str | None
) -> Sequence[CaseRecord]:
    q = select(CaseRecord).order_by(CaseRecord.opened_at.desc())
    if party.role == "admin":
        if platform_id:
            q = q.where(CaseRecord.platform_id == platform_id)
    elif party.role == "platform":
        q = q.where(CaseRecord.platform_id == party.platform_id)
    elif party.role == "consumer":
        q = q.where(CaseRecord.order_id == party.order_id)
    elif party.neutral_id:
        q = q.join(CaseNeutral, CaseNeutral.case_id == CaseRecord.id).where(
            CaseNeutral.neutral_id == party.neutral_id, CaseNeutral.active.is_(True)
        )
    else:
        return []
    if status:
        q = q.where(CaseRecord.status == status)
    return list(session.execute(q.limit(500)).scalars().unique())


def cases_past_merchant_deadline(session: Session, now: datetime) -> list[str]:
    return list(
        session.execute(
            select(CaseRecord.id).where(
                CaseRecord.status.in_([s.value for s in MERCHANT_PHASE]),
                CaseRecord.waiting_on_consumer_since.is_(None),
                CaseRecord.merchant_response_due_at < now,
            )
        ).scalars()
    )


def transitions(session: Session, case_id: str) -> list[CaseTransition]:
    return list(
        session.execute(
            select(CaseTransition)
            .where(CaseTransition.case_id == case_id)
            .order_by(CaseTransition.id)
        ).scalars()
    )


def timeline(session: Session, case_id: str) -> list[TimelineEntry]:
    return list(
        session.execute(
            select(TimelineEntry).where(TimelineEntry.case_id == case_id).order_by(TimelineEntry.id)
        ).scalars()
    )
