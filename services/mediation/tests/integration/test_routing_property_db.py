"""Property: routing through the database picks exactly what the pure rules pick."""

from __future__ import annotations

import tempfile
from datetime import UTC, datetime, time
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete

from mediation import SERVICE_ROOT, service
from mediation.models import Neutral, NeutralConflict, NeutralSkill
from mediation.routing import CaseNeeds, NeutralProfile, choose, failed_rule
from odr_shared.db import make_engine, make_session_factory
from odr_shared.migrate import upgrade

_DIR = tempfile.mkdtemp(prefix="mediation-prop-")
_URL = f"sqlite:///{Path(_DIR) / 'routing.db'}"
upgrade(SERVICE_ROOT, _URL)
_ENGINE = make_engine(_URL)
_SESSIONS = make_session_factory(_ENGINE)

CATS = ["not_delivered", "counterfeit"]
LANGS = ["vi", "hmn", "km"]

profiles = st.lists(
    st.fixed_dictionaries(
        {
            "roles": st.sets(st.sampled_from(["mediator", "arbitrator"]), min_size=1),
            "categories": st.sets(st.sampled_from(CATS)),
            "languages": st.sets(st.sampled_from(LANGS)),
            "max": st.integers(1, 3),
            "active": st.integers(0, 3),
            "on_leave": st.booleans(),
            "hours": st.none() | st.tuples(st.integers(0, 23), st.integers(0, 23)),
            "last": st.none() | st.integers(0, 10_000),
            "conf_platform": st.booleans(),
            "conf_seller": st.booleans(),
        }
    ),
    max_size=10,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    pool=profiles,
    role=st.sampled_from(["mediator", "arbitrator"]),
    category=st.sampled_from(CATS),
    language=st.sampled_from(LANGS),
    excluded=st.sets(st.integers(0, 9), max_size=2),
    needed=st.integers(1, 3),
    hour=st.integers(0, 23),
)
def test_database_routing_agrees_with_the_pure_rules(
    pool: list[dict],
    role: str,
    category: str,
    language: str,
    excluded: set[int],
    needed: int,
    hour: int,
) -> None:
    now = datetime(2026, 11, 18, hour, 30, tzinfo=UTC)  # a Wednesday
    expected: list[NeutralProfile] = []
    with _SESSIONS() as s, s.begin():
        for table in (NeutralSkill, NeutralConflict, Neutral):
            s.execute(delete(table))
        for i, p in enumerate(pool):
            nid = f"n{i}"
            last = datetime.fromtimestamp(1_700_000_000 + p["last"], UTC) if p["last"] else None
            hours = p["hours"]
            s.add(
                Neutral(
                    neutral_id=nid,
                    name="N",
                    email=f"{nid}@x.vn",
                    phone="0900000000",
                    password_hash="-",
                    primary_role="mediator",
                    roles="mediator",
                    max_active_cases=p["max"],
                    active_cases=p["active"],
                    on_leave=p["on_leave"],
                    work_start_minute=hours[0] * 60 if hours else None,
                    work_end_minute=hours[1] * 60 if hours else None,
                    last_assigned_at=last,
                    created_at=now,
                )
            )
            s.flush()
            for kind, values in (
                ("role", p["roles"]),
                ("category", p["categories"]),
                ("language", p["languages"]),
            ):
                for v in values:
                    s.add(NeutralSkill(kind=kind, value=v, neutral_id=nid))
            if p["conf_platform"]:
                s.add(NeutralConflict(kind="platform", value="plt_1", neutral_id=nid))
            if p["conf_seller"]:
                s.add(NeutralConflict(kind="seller", value="seller-1", neutral_id=nid))
            expected.append(
                NeutralProfile(
                    neutral_id=nid,
                    roles=frozenset(p["roles"]),
                    categories=frozenset(p["categories"]),
                    languages=frozenset(p["languages"]),
                    max_active_cases=p["max"],
                    active_cases=p["active"],
                    on_leave=p["on_leave"],
                    work_start=time(hours[0]) if hours else None,
                    work_end=time(hours[1]) if hours else None,
                    last_assigned_at=last,
                    conflict_platform_ids=frozenset({"plt_1"} if p["conf_platform"] else set()),
                    conflict_seller_ids=frozenset({"seller-1"} if p["conf_seller"] else set()),
                )
            )
    needs = CaseNeeds(
        case_id="c",
        role=role,
        category=category,
        language=language,
        platform_id="plt_1",
        seller_id="seller-1",
        excluded=frozenset(f"n{i}" for i in excluded),
    )
    with _SESSIONS() as s:
        outcome = service.plan_routing(s, needs, needed, now)
    pure = choose(needs, expected, now, needed=needed)
    assert [n.neutral_id for n in outcome.chosen] == [n.neutral_id for n in pure.chosen]
    assert outcome.excluded_by == pure.excluded_by
    by_id = {n.neutral_id: n for n in expected}
    for n in outcome.chosen:
        assert failed_rule(by_id[n.neutral_id], needs, now) is None
