"""Routers deciding at once on PostgreSQL: nobody waits on another's pick, capacity always holds.

What SQLite cannot show (it has one writer at a time): these tests run on PostgreSQL only.
"""

from __future__ import annotations

import multiprocessing
import threading
import uuid
from collections import Counter

import pytest
from mediation_testkit import case_event, make_settings, route_escalations
from sqlalchemy import func, insert, select, text
from sqlalchemy.orm import Session, sessionmaker

from mediation import SERVICE_ROOT, service
from mediation.models import Assignment, MediationCase, Neutral, NeutralSkill
from odr_shared.db import make_engine, make_session_factory, utcnow
from odr_shared.migrate import upgrade

pytestmark = pytest.mark.postgres


def _neutrals(sessions: sessionmaker[Session], capacities: list[int]) -> list[str]:
    """Neutrals who can all take the test cases (mediators, not_delivered, vi), no load yet."""
    ids = [f"ntr_{uuid.uuid4().hex[:10]}" for _ in capacities]
    now = utcnow()
    with sessions() as s, s.begin():
        s.execute(
            insert(Neutral),
            [
                {
                    "neutral_id": nid,
                    "name": "N",
                    "email": f"{nid}@x.vn",
                    "phone": "0900000000",
                    "password_hash": "-",
                    "primary_role": "mediator",
                    "roles": "mediator",
                    "max_active_cases": cap,
                    "active_cases": 0,
                    "on_leave": False,
                    "created_at": now,
                }
                for nid, cap in zip(ids, capacities, strict=True)
            ],
        )
        s.execute(
            insert(NeutralSkill),
            [
                {"kind": kind, "value": value, "neutral_id": nid}
                for nid in ids
                for kind, value in (
                    ("role", "mediator"),
                    ("category", "not_delivered"),
                    ("language", "vi"),
                )
            ],
        )
    return ids


@pytest.fixture
def pg(postgres_url: str):
    upgrade(SERVICE_ROOT, postgres_url)
    engine = make_engine(postgres_url, pool_size=4)
    yield postgres_url, make_session_factory(engine)
    engine.dispose()


def _mediator(sessions: sessionmaker[Session], case_id: str) -> str | None:
    with sessions() as s:
        case = s.get(MediationCase, case_id)
        assert case is not None
        return case.mediator_id


def test_a_second_router_does_not_wait_for_the_first_routers_pick(pg) -> None:
    url, sessions = pg
    settings = make_settings(url)
    _neutrals(sessions, [3, 3, 3])
    first, second = case_event(), case_event()
    with sessions() as a, a.begin():
        service.take_escalated_case(a, first, utcnow(), settings)
        # The first router holds its neutral's row (uncommitted). The second must not wait for
        # it: a lock wait here fails the statement after 2 s instead of passing slowly.
        with sessions() as b, b.begin():
            b.execute(text("SET LOCAL lock_timeout = '2s'"))
            service.take_escalated_case(b, second, utcnow(), settings)
    one, two = _mediator(sessions, first.case_id), _mediator(sessions, second.case_id)
    assert one is not None
    assert two is not None
    assert one != two  # the second stepped past the first's pick to the next best


def test_the_last_free_seat_is_waited_for_rather_than_the_case_queued(pg) -> None:
    url, sessions = pg
    settings = make_settings(url)
    (only,) = _neutrals(sessions, [2])
    first, second = case_event(), case_event()
    done = threading.Event()

    def second_router() -> None:
        with sessions() as b, b.begin():
            service.take_escalated_case(b, second, utcnow(), settings)
        done.set()

    with sessions() as a, a.begin():
        service.take_escalated_case(a, first, utcnow(), settings)
        t = threading.Thread(target=second_router)
        t.start()
        # Its only candidate is locked by us: it waits (room may remain once we commit).
        assert not done.wait(0.5)
    t.join(30)
    assert done.is_set()
    assert _mediator(sessions, first.case_id) == only
    assert _mediator(sessions, second.case_id) == only
    with sessions() as s:
        assert s.get(Neutral, only).active_cases == 2


def test_eight_router_processes_never_exceed_capacity_and_staff_each_case_once(pg) -> None:
    url, sessions = pg
    # 20 neutrals with 60 seats in all; 8 routers bring 96 cases: 60 staffed, 36 queued.
    capacities = [1, 2, 3, 4, 5] * 4
    ids = _neutrals(sessions, capacities)
    per_router = 12
    batches = [
        [f"case_{r}_{i}_{uuid.uuid4().hex[:6]}" for i in range(per_router)] for r in range(8)
    ]
    # fork: the routers start at once with the code already imported (each opens its own engine).
    ctx = multiprocessing.get_context("fork")
    start = ctx.Event()
    procs = [ctx.Process(target=route_escalations, args=(url, b, start)) for b in batches]
    for p in procs:
        p.start()
    start.set()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0] * 8
    all_cases = [c for b in batches for c in b]
    with sessions() as s:
        cases = {c.case_id: c for c in s.execute(select(MediationCase)).scalars()}
        active = list(s.execute(select(Assignment).where(Assignment.status == "active")).scalars())
        neutrals = {n.neutral_id: n for n in s.execute(select(Neutral)).scalars()}
        decisions = s.execute(
            text("SELECT case_id, count(*) FROM routing_decisions GROUP BY case_id")
        ).all()
        waiting = s.execute(
            select(func.count()).select_from(MediationCase).where(MediationCase.stage == "waiting")
        ).scalar_one()
    assert sorted(cases) == sorted(all_cases)
    per_case = Counter(a.case_id for a in active)
    per_neutral = Counter(a.neutral_id for a in active)
    # Every case has exactly one mediator, or none and waits; one decision recorded per case.
    for cid, case in cases.items():
        if case.stage == "mediation":
            assert per_case[cid] == 1
            assert case.mediator_id == next(a.neutral_id for a in active if a.case_id == cid)
        else:
            assert case.stage == "waiting"
            assert per_case[cid] == 0
            assert case.mediator_id is None
    assert dict(Counter(cid for cid, _ in decisions)) == {c: 1 for c in all_cases}
    # Capacity holds, and the counter agrees with the assignments.
    for nid in ids:
        assert per_neutral[nid] <= neutrals[nid].max_active_cases
        assert neutrals[nid].active_cases == per_neutral[nid]
    # No case waits while an eligible neutral has room: all 60 seats are filled.
    assert sum(per_neutral.values()) == sum(capacities) == 60
    assert waiting == len(all_cases) - 60
