"""Mediation queries. Routing reads indexed ranges only: no scan of all neutrals or cases."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, time
from typing import Any

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.orm import Session

from mediation.domain import ARBITRATOR, MEDIATOR, Stage
from mediation.models import Assignment, MediationCase, Neutral, NeutralConflict, NeutralSkill
from mediation.routing import CaseNeeds, NeutralProfile, available


def _minute_to_time(m: int | None) -> time | None:
    return None if m is None else time(m // 60, m % 60)


def load_profiles(session: Session, ids: Sequence[str]) -> list[NeutralProfile]:
    """Profiles for these neutrals, in the order given (three indexed lookups in all)."""
    if not ids:
        return []
    neutrals = {
        n.neutral_id: n
        for n in session.execute(select(Neutral).where(Neutral.neutral_id.in_(ids))).scalars()
    }
    skills: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    for nid, kind, value in session.execute(
        select(NeutralSkill.neutral_id, NeutralSkill.kind, NeutralSkill.value).where(
            NeutralSkill.neutral_id.in_(ids)
        )
    ):
        skills[nid][kind].add(value)
    conflicts: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    for nid, kind, value in session.execute(
        select(NeutralConflict.neutral_id, NeutralConflict.kind, NeutralConflict.value).where(
            NeutralConflict.neutral_id.in_(ids)
        )
    ):
        conflicts[nid][kind].add(value)
    out: list[NeutralProfile] = []
    for nid in ids:
        n = neutrals.get(nid)
        if n is None:
            continue
        out.append(
            NeutralProfile(
                neutral_id=nid,
                roles=frozenset(skills[nid]["role"]),
                categories=frozenset(skills[nid]["category"]),
                languages=frozenset(skills[nid]["language"]),
                max_active_cases=n.max_active_cases,
                active_cases=n.active_cases,
                on_leave=n.on_leave,
                work_start=_minute_to_time(n.work_start_minute),
                work_end=_minute_to_time(n.work_end_minute),
                last_assigned_at=n.last_assigned_at,
                conflict_platform_ids=frozenset(conflicts[nid]["platform"]),
                conflict_seller_ids=frozenset(conflicts[nid]["seller"]),
            )
        )
    return out


@dataclass(frozen=True)
class RoutingPool:
    """What the database says about a case's candidates, before the pure rules run."""

    counts: dict[str, int]  # neutrals removed by each rule, plus "_total"
    ranked_ids: list[str]  # those passing every indexable rule, best first


def _ids_with(session: Session, table: Any, kind: str, value: str) -> set[str]:
    # An index range on (kind, value, neutral_id): no join for the planner to get wrong.
    return set(
        session.execute(
            select(table.c.neutral_id).where(table.c.kind == kind, table.c.value == value)
        ).scalars()
    )


def routing_pool(session: Session, case: CaseNeeds, now: datetime) -> RoutingPool:
    """Candidates for a case from index range reads, and how many each rule removed.

    Each skill is one range read on its (kind, value) index; the set work happens here on a
    few hundred ids, and only the surviving neutrals' rows are read (by primary key).
    """
    skills = NeutralSkill.__table__
    conflicts = NeutralConflict.__table__
    total = int(session.execute(select(func.count()).select_from(Neutral)).scalar_one())
    with_role_n = int(
        session.execute(
            select(func.count()).where(skills.c.kind == "role", skills.c.value == case.role)
        ).scalar_one()
    )
    # Start from the category (the narrowest skill), then probe role and language for those
    # neutrals only, on the (neutral_id, kind, value) index: a few hundred rows, not thousands.
    by_category = sorted(_ids_with(session, skills, "category", case.category))
    has: dict[str, set[str]] = defaultdict(set)
    language = case.language.lower()
    for i in range(0, len(by_category), 500):
        for nid, kind in session.execute(
            select(skills.c.neutral_id, skills.c.kind).where(
                skills.c.neutral_id.in_(by_category[i : i + 500]),
                or_(
                    and_(skills.c.kind == "role", skills.c.value == case.role),
                    and_(skills.c.kind == "language", skills.c.value == language),
                ),
            )
        ):
            has[nid].add(kind)
    with_category = {nid for nid in by_category if "role" in has[nid]}
    with_language = {nid for nid in with_category if "language" in has[nid]}
    conflicted = _ids_with(session, conflicts, "platform", case.platform_id)
    if case.seller_id is not None:
        conflicted |= _ids_with(session, conflicts, "seller", case.seller_id)
    free = with_language - conflicted
    rows: list[Any] = []
    ids = sorted(free)
    for i in range(0, len(ids), 500):
        rows += session.execute(
            select(
                Neutral.neutral_id,
                Neutral.on_leave,
                Neutral.active_cases,
                Neutral.max_active_cases,
                Neutral.last_assigned_at,
                Neutral.work_start_minute,
                Neutral.work_end_minute,
            ).where(Neutral.neutral_id.in_(ids[i : i + 500]))
        ).all()
    present = [
        r
        for r in rows
        if available(
            r.on_leave,
            _minute_to_time(r.work_start_minute),
            _minute_to_time(r.work_end_minute),
            now,
        )
    ]
    under_capacity = [r for r in present if r.active_cases < r.max_active_cases]
    allowed = [r for r in under_capacity if r.neutral_id not in case.excluded]
    allowed.sort(
        key=lambda r: (
            r.active_cases,
            r.last_assigned_at.timestamp() if r.last_assigned_at else float("-inf"),
            r.neutral_id,
        )
    )
    counts = {
        "_total": total,
        "role": total - with_role_n,
        "category": with_role_n - len(with_category),
        "language": len(with_category) - len(with_language),
        "conflict": len(with_language) - len(free),
        "availability": len(rows) - len(present),
        "capacity": len(present) - len(under_capacity),
        "excluded": len(under_capacity) - len(allowed),
    }
    return RoutingPool(counts=counts, ranked_ids=[r.neutral_id for r in allowed])


def take_capacity(session: Session, neutral_id: str, now: datetime) -> bool:
    """Count one more active case, only if still under capacity (safe against a racing router)."""
    result = session.execute(
        update(Neutral)
        .where(
            Neutral.neutral_id == neutral_id,
            Neutral.active_cases < Neutral.max_active_cases,
            Neutral.on_leave.is_(False),
        )
        .values(active_cases=Neutral.active_cases + 1, last_assigned_at=now)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def release_capacity(session: Session, neutral_id: str) -> None:
    session.execute(
        update(Neutral)
        .where(Neutral.neutral_id == neutral_id, Neutral.active_cases > 0)
        .values(active_cases=Neutral.active_cases - 1)
    )


def active_assignments(session: Session, case_id: str, role: str | None = None) -> list[Assignment]:
    q = select(Assignment).where(Assignment.case_id == case_id, Assignment.status == "active")
    if role:
        q = q.where(Assignment.role == role)
    return list(session.execute(q.order_by(Assignment.assigned_at)).scalars())


def case_exclusions(session: Session, case_id: str, role: str) -> frozenset[str]:
    """Who may not take this role on this case: replaced neutrals, and for arbitration its
    mediators and the arbitrators already on the panel."""
    rows = session.execute(
        select(Assignment.neutral_id, Assignment.role, Assignment.status).where(
            Assignment.case_id == case_id
        )
    ).all()
    out = set()
    for nid, r, status in rows:
        if status == "replaced":
            out.add(nid)
        if role == ARBITRATOR and (r == MEDIATOR or status == "active"):
            out.add(nid)
    return frozenset(out)


def neutral_assignment(session: Session, case_id: str, neutral_id: str) -> Assignment | None:
    """The caller's most relevant assignment on a case: active first, then a finished one."""
    rows = list(
        session.execute(
            select(Assignment).where(
                Assignment.case_id == case_id,
                Assignment.neutral_id == neutral_id,
                Assignment.status != "replaced",
            )
        ).scalars()
    )
    rows.sort(key=lambda a: (a.status != "active", -a.assigned_at.timestamp()))
    return rows[0] if rows else None


def my_queue(session: Session, neutral_id: str) -> list[tuple[Assignment, MediationCase]]:
    rows = session.execute(
        select(Assignment, MediationCase)
        .join(MediationCase, MediationCase.case_id == Assignment.case_id)
        .where(Assignment.neutral_id == neutral_id, Assignment.status == "active")
        .order_by(Assignment.due_at)
    ).all()
    return [(a, c) for a, c in rows]


def waiting_cases(
    session: Session,
    limit: int,
    *,
    roles: Sequence[str] | None = None,
    categories: Sequence[str] | None = None,
    languages: Sequence[str] | None = None,
) -> list[MediationCase]:
    """Oldest waiting cases first; narrowed to what a freed neutral could take."""
    q = select(MediationCase).where(MediationCase.stage == Stage.WAITING.value)
    if roles is not None:
        q = q.where(MediationCase.waiting_role.in_(roles))
    if categories is not None:
        q = q.where(MediationCase.category.in_(categories))
    if languages is not None:
        q = q.where(func.lower(MediationCase.language).in_(languages))
    return list(session.execute(q.order_by(MediationCase.queued_at).limit(limit)).scalars())


def overdue_assignments(session: Session, now: datetime, limit: int) -> list[Assignment]:
    return list(
        session.execute(
            select(Assignment)
            .where(
                Assignment.status == "active",
                Assignment.acted_at.is_(None),
                Assignment.due_at < now,
            )
            .order_by(Assignment.due_at)
            .limit(limit)
        ).scalars()
    )


def skills_of(session: Session, neutral_id: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = defaultdict(list)
    for kind, value in session.execute(
        select(NeutralSkill.kind, NeutralSkill.value)
        .where(NeutralSkill.neutral_id == neutral_id)
        .order_by(NeutralSkill.kind, NeutralSkill.value)
    ):
        out[kind].append(value)
    return dict(out)


def conflicts_of(session: Session, neutral_id: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = defaultdict(list)
    for kind, value in session.execute(
        select(NeutralConflict.kind, NeutralConflict.value)
        .where(NeutralConflict.neutral_id == neutral_id)
        .order_by(NeutralConflict.kind, NeutralConflict.value)
    ):
        out[kind].append(value)
    return dict(out)
