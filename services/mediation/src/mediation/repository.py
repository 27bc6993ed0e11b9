"""Mediation queries. Routing reads indexed ranges only: no scan of all neutrals or cases."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime, time
from typing import Any

from sqlalchemy import and_, exists, func, select, update
from sqlalchemy.orm import Session, aliased
from sqlalchemy.sql import Select

from mediation.domain import ARBITRATOR, MEDIATOR, Stage
from mediation.models import Assignment, MediationCase, Neutral, NeutralConflict, NeutralSkill
from mediation.routing import CaseNeeds, NeutralProfile


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


def _with_skill(query: Select[Any], kind: str, value: str) -> Select[Any]:
    s = aliased(NeutralSkill)
    return query.join(s, and_(s.neutral_id == Neutral.neutral_id, s.kind == kind, s.value == value))


def _conflict_free(case: CaseNeeds) -> list[object]:
    conds: list[object] = [
        ~exists().where(
            NeutralConflict.kind == "platform",
            NeutralConflict.value == case.platform_id,
            NeutralConflict.neutral_id == Neutral.neutral_id,
        )
    ]
    if case.seller_id is not None:
        conds.append(
            ~exists().where(
                NeutralConflict.kind == "seller",
                NeutralConflict.value == case.seller_id,
                NeutralConflict.neutral_id == Neutral.neutral_id,
            )
        )
    return conds


def rule_counts(session: Session, case: CaseNeeds) -> dict[str, int]:
    """How many neutrals each rule (in order) removes, counted with indexed joins."""

    def count(
        *,
        cat: bool = False,
        lang: bool = False,
        conflict: bool = False,
        leave: bool = False,
        capacity: bool = False,
        excluded: bool = False,
    ) -> int:
        q = _with_skill(select(func.count(Neutral.neutral_id)), "role", case.role)
        if cat:
            q = _with_skill(q, "category", case.category)
        if lang:
            q = _with_skill(q, "language", case.language.lower())
        if conflict:
            q = q.where(*_conflict_free(case))  # type: ignore[arg-type]
        if leave:
            q = q.where(Neutral.on_leave.is_(False))
        if capacity:
            q = q.where(Neutral.active_cases < Neutral.max_active_cases)
        if excluded and case.excluded:
            q = q.where(Neutral.neutral_id.not_in(sorted(case.excluded)))
        return int(session.execute(q).scalar_one())

    total = int(session.execute(select(func.count(Neutral.neutral_id))).scalar_one())
    steps = [
        count(),
        count(cat=True),
        count(cat=True, lang=True),
        count(cat=True, lang=True, conflict=True),
        count(cat=True, lang=True, conflict=True, leave=True),
        count(cat=True, lang=True, conflict=True, leave=True, capacity=True),
        count(cat=True, lang=True, conflict=True, leave=True, capacity=True, excluded=True),
    ]
    rules = ["role", "category", "language", "conflict", "availability", "capacity", "excluded"]
    counts: dict[str, int] = {"_total": total}
    prev = total
    for rule, n in zip(rules, steps, strict=True):
        counts[rule] = prev - n
        prev = n
    return counts


def candidate_ids(session: Session, case: CaseNeeds, limit: int, offset: int = 0) -> list[str]:
    """Neutrals passing the indexable rules, best ranked first (working hours checked later)."""
    q = _with_skill(select(Neutral.neutral_id), "role", case.role)
    q = _with_skill(q, "category", case.category)
    q = _with_skill(q, "language", case.language.lower())
    q = q.where(
        *_conflict_free(case),  # type: ignore[arg-type]
        Neutral.on_leave.is_(False),
        Neutral.active_cases < Neutral.max_active_cases,
    )
    if case.excluded:
        q = q.where(Neutral.neutral_id.not_in(sorted(case.excluded)))
    q = q.order_by(
        Neutral.active_cases, Neutral.last_assigned_at.asc().nulls_first(), Neutral.neutral_id
    )
    return list(session.execute(q.limit(limit).offset(offset)).scalars())


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
