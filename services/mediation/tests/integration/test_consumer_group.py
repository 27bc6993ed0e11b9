"""Two mediation workers in one consumer group share cases.events: the second joins and the first
stops mid-stream, and each case enters and leaves mediation exactly once."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from mediation_testkit import case_event, make_settings
from pydantic import BaseModel
from sqlalchemy import select

from mediation import SERVICE_ROOT
from mediation.consumer import GROUP_ID, handlers
from mediation.models import MediationCase, TimelineEntry
from odr_shared.db import make_engine, make_session_factory
from odr_shared.events import CASES_TOPIC, CaseEventV1, CaseStatus, CloudEvent, build_event
from odr_shared.group_drill import run_group_drill
from odr_shared.migrate import upgrade

pytestmark = [pytest.mark.kafka, pytest.mark.postgres]


def escalations_then_resolutions() -> Callable[[int], tuple[str, CloudEvent[BaseModel]]]:
    """Case n is escalated (event 2n), then resolved (event 2n+1), keyed by its id."""
    cases: list[CaseEventV1] = []

    def next_event(i: int) -> tuple[str, CloudEvent[BaseModel]]:
        if i % 2 == 0:
            data = case_event()
            cases.append(data)
            event_type = "case.escalated"
        else:
            data = cases[-1].model_copy(
                update={"status": CaseStatus.RESOLVED, "previous_status": CaseStatus.IN_MEDIATION}
            )
            event_type = "case.resolved"
        event = build_event(
            source="urn:odr:complaints", event_type=event_type, subject=data.case_id, data=data
        )
        return CASES_TOPIC, event

    return next_event


def test_two_workers_take_each_case_once_through_a_join_and_a_leave(postgres_url: str) -> None:
    upgrade(SERVICE_ROOT, postgres_url)
    settings = make_settings(postgres_url)
    engine = make_engine(postgres_url, pool_size=4)
    sessions = make_session_factory(engine)
    try:
        report = run_group_drill(
            settings=settings,
            group_id=GROUP_ID,
            topics=[CASES_TOPIC],  # the worker's subscription
            handlers=lambda: handlers(settings),
            session_factory=sessions,
            next_event=escalations_then_resolutions(),
            leave="stop",
        )
        expected: dict[str, list[str]] = {}
        for event in report.events:
            data = event.data
            assert isinstance(data, CaseEventV1)
            expected.setdefault(data.case_id, []).append(event.type)
        with sessions() as session:
            stages = {c.case_id: c.stage for c in session.execute(select(MediationCase)).scalars()}
            timeline: dict[str, list[str]] = {}
            for entry in session.execute(
                select(TimelineEntry).order_by(TimelineEntry.id)
            ).scalars():
                if entry.kind in ("case.escalated", "case.resolved"):
                    timeline.setdefault(entry.case_id, []).append(entry.kind)
        # One mediation case per escalation; it entered once, and left once if it was resolved.
        assert timeline == expected
        assert stages == {
            case_id: "closed" if "case.resolved" in kinds else "waiting"
            for case_id, kinds in expected.items()
        }
    finally:
        engine.dispose()
