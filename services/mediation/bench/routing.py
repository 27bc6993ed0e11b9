"""Routing latency with 1,000 neutrals and many open cases: p50/p99 of routing one case.

    .venv/bin/python services/mediation/bench/routing.py [DATABASE_URL]

Without a URL it runs on a temporary SQLite file and on a throwaway PostgreSQL database. The
platform's benchmark (bench/routing.py) seeds through `seed` here and draws its escalations from
`escalation`, so both measure the same data.
"""

from __future__ import annotations

import random
import sys
import tempfile
import time
import uuid
from datetime import timedelta
from pathlib import Path

from sqlalchemy import bindparam, text

from mediation import SERVICE_ROOT, service
from mediation.models import Assignment, MediationCase, Neutral, NeutralSkill
from mediation.settings import MediationSettings
from odr_shared.db import make_engine, make_session_factory, utcnow
from odr_shared.events import Actor, CaseEventV1, CaseStatus
from odr_shared.migrate import upgrade

CATEGORIES = [f"category-{i}" for i in range(12)]
LANGUAGES = ["vi", "en", "hmn", "km", "tay", "th"]

# Open cases: half with their mediator (an active assignment, counted in the neutral's load),
# half waiting in the queue. Server-side from a row series (a recursive CTE, the same SQL on
# both databases): 100,000 cases take seconds, not minutes.
_OPEN_CASES = text(
    "WITH RECURSIVE g(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM g WHERE i + 1 < :n)"
    " INSERT INTO mediation_cases (case_id, reference, order_id, order_code,"
    " platform_id, seller_id, category, language, claimed_amount, currency, stage,"
    " waiting_role, queued_at, mediator_id, escalated_at, updated_at)"
    " SELECT 'bench-open-' || i, 'KN-BENCH', 'o', 'o', 'plt_bench', 's',"
    " 'category-' || ((i * 7919) % 12), 'vi', 1, 'VND',"
    " CASE WHEN i % 2 = 1 THEN 'mediation' ELSE 'waiting' END,"
    " CASE WHEN i % 2 = 1 THEN NULL ELSE 'mediator' END,"
    " CASE WHEN i % 2 = 1 THEN NULL ELSE :now END,"
    " CASE WHEN i % 2 = 1 THEN 'ntr_bench_' || ((i / 2) % :neutrals) ELSE NULL END,"
    " :now, :now FROM g"
).bindparams(bindparam("now", type_=MediationCase.__table__.c.escalated_at.type))
_ASSIGNMENTS = text(
    "INSERT INTO assignments (assignment_id, case_id, neutral_id, role, status, assigned_at,"
    " due_at) SELECT 'asg-bench-' || case_id, case_id, mediator_id, 'mediator', 'active', :now,"
    " :due FROM mediation_cases WHERE stage = 'mediation' AND case_id LIKE 'bench-open-%'"
).bindparams(
    bindparam("now", type_=Assignment.__table__.c.assigned_at.type),
    bindparam("due", type_=Assignment.__table__.c.due_at.type),
)
_LOADS = text(
    "UPDATE neutrals SET active_cases = (SELECT count(*) FROM assignments a"
    " WHERE a.neutral_id = neutrals.neutral_id AND a.status = 'active')"
    " WHERE neutral_id LIKE 'ntr_bench_%'"
)


def seed(url: str, neutrals: int = 1000, open_cases: int = 10_000) -> None:
    """Neutrals with skills and room, and `open_cases` open cases whose load they carry.

    Each neutral: mediator and arbitrator, 3 of 12 categories, Vietnamese plus up to 2 other
    languages, 10% on leave, a capacity of (open cases per neutral) + 60..140 so the benchmark's
    decisions find room; `active_cases` is the count of its active assignments.
    """
    rng = random.Random(7)
    now = utcnow()
    per_neutral = open_cases // max(1, neutrals) // 2
    engine = make_engine(url)
    try:
        with make_session_factory(engine)() as s, s.begin():
            rows, skills = [], []
            for i in range(neutrals):
                nid = f"ntr_bench_{i}"
                rows.append(
                    {
                        "neutral_id": nid,
                        "name": "Bench",
                        "email": f"{nid}@bench.vn",
                        "phone": "0900000000",
                        "password_hash": "-",
                        "primary_role": "mediator",
                        "roles": "mediator,arbitrator",
                        "regions": "",
                        "language": "vi",
                        "max_active_cases": per_neutral + rng.randint(60, 140),
                        "active_cases": 0,
                        "on_leave": rng.random() < 0.1,
                        "created_at": now,
                        "last_assigned_at": None,
                    }
                )
                skills += [
                    {"kind": "role", "value": r, "neutral_id": nid}
                    for r in ("mediator", "arbitrator")
                ]
                skills += [
                    {"kind": "category", "value": c, "neutral_id": nid}
                    for c in rng.sample(CATEGORIES, 3)
                ]
                skills += [
                    {"kind": "language", "value": lang, "neutral_id": nid}
                    for lang in sorted({"vi", *rng.sample(LANGUAGES, 2)})
                ]
            s.execute(Neutral.__table__.insert(), rows)
            s.execute(NeutralSkill.__table__.insert(), skills)
            if open_cases:
                params = {"n": open_cases, "now": now, "neutrals": neutrals}
                s.execute(_OPEN_CASES, params)
                s.execute(_ASSIGNMENTS, {"now": now, "due": now + timedelta(days=3)})
                s.execute(_LOADS)
    finally:
        engine.dispose()


def escalation(rng: random.Random, case_id: str | None = None) -> CaseEventV1:
    """One escalated case: any category, mostly Vietnamese, some minority languages (fewer
    eligible neutrals)."""
    return CaseEventV1(
        case_id=case_id or f"bench-{uuid.uuid4().hex[:12]}",
        reference="KN-BENCH",
        order_id="o",
        platform_id="plt_bench",
        order_code="o",
        seller_id="s",
        status=CaseStatus.ESCALATED,
        category=rng.choice(CATEGORIES),
        language=rng.choice(["vi"] * 8 + ["hmn", "km"]),
        actor=Actor(role="system"),
    )


def measure(url: str, runs: int = 300, warmup: int = 10) -> list[float]:
    """Milliseconds per routing decision, one router in-process: one escalated case taken and
    routed in one committed transaction."""
    settings = MediationSettings(database_url=url, environment="test", log_level="WARNING")
    engine = make_engine(url)
    sessions = make_session_factory(engine)
    rng = random.Random(11)
    timings = []
    try:
        for i in range(warmup + runs):
            data = escalation(rng)
            start = time.perf_counter()
            with sessions() as s, s.begin():
                service.take_escalated_case(s, data, utcnow(), settings)
            if i >= warmup:
                timings.append((time.perf_counter() - start) * 1000)
    finally:
        engine.dispose()
    return timings


def run(url: str) -> None:
    upgrade(SERVICE_ROOT, url)
    seed(url)
    timings = sorted(measure(url))
    p50, p99 = timings[len(timings) // 2], timings[int(len(timings) * 0.99)]
    print(f"{url.split(':')[0]}: route one escalated case p50 {p50:.1f} ms, p99 {p99:.1f} ms")


def main() -> None:
    if len(sys.argv) > 1:
        run(sys.argv[1])
        return
    with tempfile.TemporaryDirectory() as tmp:
        run(f"sqlite:///{Path(tmp) / 'bench.db'}")
    from odr_shared.testing import postgres_available, temporary_postgres_database

    if postgres_available():
        with temporary_postgres_database("odr_rt_bench") as url:
            run(url)


if __name__ == "__main__":
    main()
