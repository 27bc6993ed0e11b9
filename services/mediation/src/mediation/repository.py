"""Mediation queries. Routing reads indexed ranges only: no scan of all neutrals or cases."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, time
from typing import Any

from sqlalchemy import String, and_, bindparam, exists, func, or_, select, text, update
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session

from mediation.domain import ARBITRATOR, MEDIATOR, Stage
from mediation.models import Assignment, MediationCase, Neutral, NeutralConflict, NeutralSkill
from mediation.routing import CaseNeeds, NeutralProfile, available


def _minute_to_time(m: int | None) -> time | None:
    return None if m is None else time(m // 60, m % 60)


@dataclass(frozen=True)
class RoutingPool:
    """What the database says about a case's candidates, before the pure rules run."""

    case: CaseNeeds
    counts: dict[str, int]  # neutrals removed by each rule, plus "_total"
    ranked_ids: list[str]  # those passing every rule the database checks, best first
    _rows: dict[str, tuple[Any, ...]]

    def profiles(self, ids: Sequence[str]) -> list[NeutralProfile]:
        """These candidates as profiles projected onto this case: each holds exactly the facts
        the rules ask about it (the case's role, category and language, which the database found
        it has; no conflict with the case's platform or seller), so the pure rules judge it as
        they would its full profile."""
        c = self.case
        roles, categories = frozenset({c.role}), frozenset({c.category})
        languages = frozenset({c.language.lower()})
        out = []
        for nid in ids:
            on_leave, active, most, last, start, end = self._rows[nid]
            out.append(
                NeutralProfile(
                    neutral_id=nid,
                    roles=roles,
                    categories=categories,
                    languages=languages,
                    max_active_cases=most,
                    active_cases=active,
                    on_leave=on_leave,
                    work_start=_minute_to_time(start),
                    work_end=_minute_to_time(end),
                    last_assigned_at=last,
                )
            )
        return out


def routing_pool(session: Session, case: CaseNeeds, now: datetime) -> RoutingPool:
    """Candidates for a case and how many each rule removed, in one statement.

    The statement starts from the case's category (the narrowest skill, one index range) and
    probes role, language and conflicts for those neutrals only by primary key: a few hundred
    index lookups, whatever the number of open cases (load is the `active_cases` counter kept
    with each assignment, never a count of cases). The two totals ride along as one-off
    subqueries.
    """
    skills = NeutralSkill.__table__
    conflicts = NeutralConflict.__table__
    neutrals = Neutral.__table__
    category = skills.alias("category")
    role = skills.alias("role")
    language = skills.alias("language")
    conflict = conflicts.alias("conflict")
    language_value = case.language.lower()
    total_q = select(func.count()).select_from(neutrals).scalar_subquery()
    with_role_q = (
        select(func.count())
        .select_from(skills)
        .where(skills.c.kind == "role", skills.c.value == case.role)
        .scalar_subquery()
    )
    clash = and_(conflict.c.kind == "platform", conflict.c.value == case.platform_id)
    if case.seller_id is not None:
        clash = or_(clash, and_(conflict.c.kind == "seller", conflict.c.value == case.seller_id))
    q = (
        select(
            neutrals.c.neutral_id,
            neutrals.c.on_leave,
            neutrals.c.active_cases,
            neutrals.c.max_active_cases,
            neutrals.c.last_assigned_at,
            neutrals.c.work_start_minute,
            neutrals.c.work_end_minute,
            exists()
            .where(
                role.c.kind == "role",
                role.c.value == case.role,
                role.c.neutral_id == neutrals.c.neutral_id,
            )
            .label("has_role"),
            exists()
            .where(
                language.c.kind == "language",
                language.c.value == language_value,
                language.c.neutral_id == neutrals.c.neutral_id,
            )
            .label("has_language"),
            exists()
            .where(conflict.c.neutral_id == neutrals.c.neutral_id, clash)
            .label("conflicted"),
            total_q.label("total"),
            with_role_q.label("with_role"),
        )
        .select_from(category.join(neutrals, neutrals.c.neutral_id == category.c.neutral_id))
        .where(category.c.kind == "category", category.c.value == case.category)
    )
    rows = session.execute(q).all()
    if rows:
        total, with_role_n = int(rows[0][10]), int(rows[0][11])
    else:  # nobody offers the category: the totals alone
        total, with_role_n = (int(v) for v in session.execute(select(total_q, with_role_q)).one())
    with_category = with_language = free = present = under_capacity = 0
    allowed: list[tuple[Any, ...]] = []
    for nid, on_leave, active, most, last, start, end, has_role, speaks, conflicted, *_ in rows:
        if not has_role:
            continue
        with_category += 1
        if not speaks:
            continue
        with_language += 1
        if conflicted:
            continue
        free += 1
        if not available(on_leave, _minute_to_time(start), _minute_to_time(end), now):
            continue
        present += 1
        if active >= most:
            continue
        under_capacity += 1
        if nid in case.excluded:
            continue
        allowed.append((nid, on_leave, active, most, last, start, end))
    allowed.sort(key=lambda r: (r[2], r[4].timestamp() if r[4] else float("-inf"), r[0]))
    counts = {
        "_total": total,
        "role": total - with_role_n,
        "category": with_role_n - with_category,
        "language": with_category - with_language,
        "conflict": with_language - free,
        "availability": free - present,
        "capacity": present - under_capacity,
        "excluded": under_capacity - len(allowed),
    }
    return RoutingPool(
        case=case,
        counts=counts,
        ranked_ids=[r[0] for r in allowed],
        _rows={r[0]: r[1:] for r in allowed},
    )


@dataclass(frozen=True)
class Taken:
    """A neutral whose capacity this transaction took, with what the assignment event needs."""

    neutral_id: str
    name: str
    email: str
    phone: str
    language: str


SKIP_LOCKED_SPARE = 16
_TAKE_SKIP_LOCKED = text(
    # The candidates in rank order; a row another router holds is skipped, not waited for, and
    # FOR UPDATE re-checks capacity and leave on the newest committed version of each row.
    "WITH pick AS ("
    " SELECT neutral_id FROM neutrals"
    " WHERE neutral_id = ANY(:ids) AND active_cases < max_active_cases AND NOT on_leave"
    " ORDER BY array_position(:ids, neutral_id)"
    " LIMIT :needed FOR UPDATE SKIP LOCKED)"
    " UPDATE neutrals AS n SET active_cases = n.active_cases + 1, last_assigned_at = :now"
    " FROM pick WHERE n.neutral_id = pick.neutral_id AND n.active_cases < n.max_active_cases"
    " RETURNING n.neutral_id, n.name, n.email, n.phone, n.language"
).bindparams(bindparam("ids", type_=ARRAY(String)))


def take_capacity(
    session: Session, ranked_ids: Sequence[str], needed: int, now: datetime, *, wait: bool = False
) -> list[Taken]:
    """Count one more active case for the first `needed` of these neutrals (best first) that are
    still under capacity; fewer come back if fewer could be taken.

    On PostgreSQL routers do not wait for each other here: one statement skips a candidate row
    another transaction holds (FOR UPDATE SKIP LOCKED) for the next one, and checks capacity on
    the row as locked. With `wait` (or on SQLite, where the transaction already holds the write
    lock) the candidates are tried in order with a conditional UPDATE, which waits for a row
    another router holds and then re-checks it.
    """
    if needed <= 0 or not ranked_ids:
        return []
    if not wait and session.get_bind().dialect.name == "postgresql":
        # The best few: enough to step past every other router's locked pick, few enough for
        # the statement to fetch them by primary key.
        ids = list(ranked_ids[: needed + SKIP_LOCKED_SPARE])
        order = {nid: i for i, nid in enumerate(ids)}
        rows = sorted(
            session.execute(_TAKE_SKIP_LOCKED, {"ids": ids, "needed": needed, "now": now}).all(),
            key=lambda r: order[r.neutral_id],
        )
        return [Taken(r.neutral_id, r.name, r.email, r.phone, r.language) for r in rows]
    taken: list[Taken] = []
    for nid in ranked_ids:
        row = session.execute(
            update(Neutral)
            .where(
                Neutral.neutral_id == nid,
                Neutral.active_cases < Neutral.max_active_cases,
                Neutral.on_leave.is_(False),
            )
            .values(active_cases=Neutral.active_cases + 1, last_assigned_at=now)
            .returning(
                Neutral.neutral_id, Neutral.name, Neutral.email, Neutral.phone, Neutral.language
            )
        ).one_or_none()
        if row is not None:
            taken.append(Taken(row.neutral_id, row.name, row.email, row.phone, row.language))
            if len(taken) == needed:
                break
    return taken


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
