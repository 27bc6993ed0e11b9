"""Routing latency with 1,000 neutrals and 10,000 open cases: p50/p99 of routing one case.

    .venv/bin/python services/mediation/bench/routing.py [DATABASE_URL]

Without a URL it runs on a temporary SQLite file and on a throwaway PostgreSQL database.
"""

from __future__ import annotations

import random
import sys
import tempfile
import time
import uuid
from pathlib import Path

from mediation import SERVICE_ROOT, service
from mediation.models import MediationCase, Neutral, NeutralSkill
from mediation.settings import MediationSettings
from odr_shared.db import make_engine, make_session_factory, utcnow
from odr_shared.events import Actor, CaseEventV1, CaseStatus
from odr_shared.migrate import upgrade

CATEGORIES = [f"category-{i}" for i in range(12)]
LANGUAGES = ["vi", "en", "hmn", "km", "tay", "th"]


def seed(url: str, neutrals: int = 1000, open_cases: int = 10_000) -> None:
    rng = random.Random(7)
    now = utcnow()
    engine = make_engine(url)
    with make_session_factory(engine)() as s, s.begin():
        rows, skills = [], []
        for i in range(neutrals):
            nid = f"ntr_bench_{i:05d}"
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
                    "max_active_cases": rng.randint(5, 15),
                    "active_cases": rng.randint(0, 12),
                    "on_leave": rng.random() < 0.1,
                    "created_at": now,
                    "last_assigned_at": None,
                }
            )
            skills += [
                {"kind": "role", "value": r, "neutral_id": nid} for r in ("mediator", "arbitrator")
            ]
            skills += [
                {"kind": "category", "value": c, "neutral_id": nid}
                for c in rng.sample(CATEGORIES, 3)
            ]
            skills += [
                {"kind": "language", "value": lang, "neutral_id": nid}
                for lang in {"vi", *rng.sample(LANGUAGES, 2)}
            ]
        s.execute(Neutral.__table__.insert(), rows)
        s.execute(NeutralSkill.__table__.insert(), skills)
        s.execute(
            MediationCase.__table__.insert(),
            [
                {
                    "case_id": f"bench-open-{i}",
                    "reference": "KN-BENCH",
                    "order_id": "o",
                    "order_code": "o",
                    "platform_id": "plt_bench",
                    "seller_id": "s",
                    "category": rng.choice(CATEGORIES),
                    "language": "vi",
                    "claimed_amount": 1,
                    "currency": "VND",
                    "stage": "mediation" if i % 2 else "waiting",
                    "waiting_role": None if i % 2 else "mediator",
                    "queued_at": now,
                    "escalated_at": now,
                    "updated_at": now,
                }
                for i in range(open_cases)
            ],
        )
    engine.dispose()


def measure(url: str, runs: int = 300) -> tuple[float, float]:
    settings = MediationSettings(database_url=url, environment="test", log_level="WARNING")
    engine = make_engine(url)
    sessions = make_session_factory(engine)
    rng = random.Random(11)
    timings = []
    for _ in range(runs):
        data = CaseEventV1(
            case_id=f"bench-{uuid.uuid4().hex[:12]}",
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
        start = time.perf_counter()
        with sessions() as s, s.begin():
            service.take_escalated_case(s, data, utcnow(), settings)
        timings.append((time.perf_counter() - start) * 1000)
    engine.dispose()
    timings.sort()
    return timings[len(timings) // 2], timings[int(len(timings) * 0.99)]


def run(url: str) -> None:
    upgrade(SERVICE_ROOT, url)
    seed(url)
    p50, p99 = measure(url)
    print(f"{url.split(':')[0]}: route one escalated case p50 {p50:.1f} ms, p99 {p99:.1f} ms")


def main() -> None:
    if len(sys.argv) > 1:
        run(sys.argv[1])
        return
    with tempfile.TemporaryDirectory() as tmp:
        run(f"sqlite:///{Path(tmp) / 'bench.db'}")
    from odr_shared.testing import postgres_available, temporary_postgres_database

    if postgres_available():
        with temporary_postgres_database("odr_bench") as url:
            run(url)


if __name__ == "__main__":
    main()
