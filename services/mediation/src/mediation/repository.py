"""Mediation queries. Routing reads indexed ranges only: no scan of all neutrals or cases."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, time

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

    counts: dict[str, int]  # neutrals removed by each rule, plus "_total"
    # Those passing every rule the database checks, best first, as profiles projected onto this
    # case: each holds exactly the facts the rules ask about it (its role, category and language
    # if it has them, a conflict if it has one), so the pure rules judge them as they would the
    # full profile.
    ranked: list[NeutralProfile]

    @property
    def ranked_ids(self) -> list[str]:
        return [p.neutral_id for p in self.ranked]


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
        total, with_role_n = int(rows[0].total), int(rows[0].with_role)
    else:  # nobody offers the category: the totals alone
        total, with_role_n = (int(v) for v in session.execute(select(total_q, with_role_q)).one())
    with_category = [r for r in rows if r.has_role]
    with_language = [r for r in with_category if r.has_language]
    free = [r for r in with_language if not r.conflicted]
    present = [
        r
        for r in free
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
        "availability": len(free) - len(present),
        "capacity": len(present) - len(under_capacity),
        "excluded": len(under_capacity) - len(allowed),
    }
    ranked = [
        NeutralProfile(
            neutral_id=r.neutral_id,
            roles=frozenset({case.role}),
            categories=frozenset({case.category}),
            languages=frozenset({language_value}),
            max_active_cases=r.max_active_cases,
            active_cases=r.active_cases,
            on_leave=r.on_leave,
            work_start=_minute_to_time(r.work_start_minute),
            work_end=_minute_to_time(r.work_end_minute),
            last_assigned_at=r.last_assigned_at,
        )
        for r in allowed
    ]
    return RoutingPool(counts=counts, ranked=ranked)


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
