"""Routing against the database: per-rule counts from indexed reads, ranking, the sweeper."""

from __future__ import annotations

from datetime import timedelta

from mediation_testkit import PASSWORD, case_event
from sqlalchemy import update

from mediation import repository as repo
from mediation import service
from mediation.models import MediationCase, Neutral
from mediation.routing import CaseNeeds
from mediation.sweeper import Sweeper
from odr_shared.db import utcnow


def _add(session, email: str, **kw) -> str:
    values = {
        "name": "N",
        "email": email,
        "phone": "0900000000",
        "password": PASSWORD,
        "roles": ["mediator"],
        "categories": ["not_delivered"],
        "languages": ["vi"],
        "max_active_cases": 2,
    }
    values.update(kw)
    return service.register_neutral(session, service.NeutralSpec(**values))


NEEDS = CaseNeeds(
    case_id="c",
    role="mediator",
    category="not_delivered",
    language="vi",
    platform_id="plt_1",
    seller_id="seller-1",
)


def test_each_rule_is_counted_and_only_the_eligible_are_ranked(sessions, settings) -> None:
    with sessions() as s, s.begin():
        ok_busy = _add(s, "busy@x.vn")
        ok_idle = _add(s, "idle@x.vn")
        _add(s, "arb@x.vn", roles=["arbitrator"])
        _add(s, "cat@x.vn", categories=["counterfeit"])
        _add(s, "lang@x.vn", languages=["en"])
        _add(s, "conf@x.vn", conflict_seller_ids=["seller-1"])
        leave = _add(s, "leave@x.vn")
        full = _add(s, "full@x.vn")
        excluded = _add(s, "excl@x.vn")
        s.execute(update(Neutral).where(Neutral.neutral_id == leave).values(on_leave=True))
        s.execute(update(Neutral).where(Neutral.neutral_id == full).values(active_cases=2))
        s.execute(update(Neutral).where(Neutral.neutral_id == ok_busy).values(active_cases=1))
    needs = CaseNeeds(**{**NEEDS.__dict__, "excluded": frozenset({excluded})})
    with sessions() as s:
        pool = repo.routing_pool(s, needs, utcnow())
        outcome = service.plan_routing(s, needs, 1, utcnow())
    assert pool.counts == {
        "_total": 9,
        "role": 1,
        "category": 1,
        "language": 1,
        "conflict": 1,
        "availability": 1,
        "capacity": 1,
        "excluded": 1,
    }
    assert pool.ranked_ids == [ok_idle, ok_busy]
    assert [n.neutral_id for n in outcome.chosen] == [ok_idle]
    assert outcome.excluded_by["capacity"] == 1


def test_the_sweeper_moves_the_queue_when_leave_ends_without_an_event(sessions, settings) -> None:
    with sessions() as s, s.begin():
        nid = _add(s, "back@x.vn")
        s.execute(update(Neutral).where(Neutral.neutral_id == nid).values(on_leave=True))
    data = case_event()
    with sessions() as s, s.begin():
        service.take_escalated_case(s, data, utcnow(), settings)
    with sessions() as s:
        assert s.get(MediationCase, data.case_id).stage == "waiting"
    sweeper = Sweeper(sessions, settings)
    assert sweeper.sweep_once() == (0, 0)
    with sessions() as s, s.begin():
        s.execute(update(Neutral).where(Neutral.neutral_id == nid).values(on_leave=False))
    assert sweeper.sweep_once() == (0, 1)
    with sessions() as s:
        case = s.get(MediationCase, data.case_id)
        assert case.stage == "mediation"
        assert case.mediator_id == nid
        # Nobody acts: the next sweep after the SLA replaces them (and the case waits again).
        assert len(repo.overdue_assignments(s, utcnow() + timedelta(days=10), 10)) == 1
