"""Two gateway workers in one consumer group share cases.events and mediation.events: the second
joins and the first stops mid-stream, and each event is queued for its platform exactly once."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from pydantic import BaseModel
from sqlalchemy import select

from gateway import SERVICE_ROOT
from gateway.models import OutboundDelivery
from gateway.outbound import handlers
from gateway.platforms import register_platform
from gateway.settings import GatewaySettings
from gateway.worker import CONSUMER_GROUP
from odr_shared.crypto import DataCipher
from odr_shared.db import make_engine, make_session_factory
from odr_shared.events import (
    CASES_TOPIC,
    MEDIATION_TOPIC,
    Actor,
    CaseEventV1,
    CaseStatus,
    CloudEvent,
    MediationEventV1,
    build_event,
)
from odr_shared.group_drill import run_group_drill
from odr_shared.migrate import upgrade

pytestmark = [pytest.mark.kafka, pytest.mark.postgres]


def case_and_mediation_events(
    platform_id: str,
) -> Callable[[int], tuple[str, CloudEvent[BaseModel]]]:
    """A case escalated on cases.events, then assigned on mediation.events, case after case."""

    def next_event(i: int) -> tuple[str, CloudEvent[BaseModel]]:
        case_id = f"case-{i // 2:05d}"
        if i % 2 == 0:
            event = build_event(
                source="urn:odr:complaints",
                event_type="case.escalated",
                subject=case_id,
                data=CaseEventV1(
                    case_id=case_id,
                    reference=f"KN-2026-{i // 2:06d}",
                    order_id=f"{platform_id}:DH{i // 2:05d}",
                    platform_id=platform_id,
                    order_code=f"DH{i // 2:05d}",
                    status=CaseStatus.ESCALATED,
                    category="not_delivered",
                    actor=Actor(role="consumer"),
                ),
            )
            return CASES_TOPIC, event  # type: ignore[return-value]
        event = build_event(
            source="urn:odr:mediation",
            event_type="case.assigned",
            subject=case_id,
            data=MediationEventV1(
                case_id=case_id,
                platform_id=platform_id,
                neutral_id="neutral-1",
                neutral_role="mediator",
                actor=Actor(role="system"),
            ),
        )
        return MEDIATION_TOPIC, event  # type: ignore[return-value]

    return next_event


def test_two_workers_queue_each_outbound_event_once_through_a_join_and_a_leave(
    postgres_url: str,
) -> None:
    upgrade(SERVICE_ROOT, postgres_url)
    settings = GatewaySettings(  # type: ignore[call-arg]
        database_url=postgres_url, environment="test", log_format="text"
    )
    engine = make_engine(postgres_url, pool_size=4)
    sessions = make_session_factory(engine)
    try:
        with sessions() as session, session.begin():
            platform = register_platform(
                session,
                DataCipher(settings.data_encryption_key),
                name="Sàn thử",
                kind="standard",
                signing_secret=None,
                app_key=None,
                push_url=None,
                outbound_url="http://127.0.0.1:9/odr-webhooks",  # nothing sends in this test
            )
        report = run_group_drill(
            settings=settings,
            group_id=CONSUMER_GROUP,
            topics=[CASES_TOPIC, MEDIATION_TOPIC],  # the worker's subscription
            handlers=handlers,
            session_factory=sessions,
            next_event=case_and_mediation_events(platform.platform_id),
            leave="stop",
        )
        with sessions() as session:
            queued = session.execute(
                select(OutboundDelivery.event_id, OutboundDelivery.platform_id)
            ).all()
        # One outbound delivery per event, for its platform.
        assert sorted(e for e, _ in queued) == sorted(e.id for e in report.events)
        assert {p for _, p in queued} == {platform.platform_id}
    finally:
        engine.dispose()
