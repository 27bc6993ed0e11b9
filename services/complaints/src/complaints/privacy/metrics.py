"""`odr_privacy_requests{status}` and `odr_privacy_requests_overdue` on the API's /metrics, read
from the database at each scrape: an alert on overdue requests watches the law's clock."""

from __future__ import annotations

import logging
from collections.abc import Iterator

from prometheus_client.core import REGISTRY, GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from complaints.models import PrivacyRequest
from complaints.privacy.state import STATUSES
from odr_shared.db import utcnow

log = logging.getLogger(__name__)


class PrivacyRequestsCollector(Collector):
    def __init__(self) -> None:
        self.sessions: sessionmaker[Session] | None = None

    def collect(self) -> Iterator[GaugeMetricFamily]:
        if self.sessions is None:
            return
        try:
            with self.sessions() as session:
                counts = dict(
                    session.execute(
                        select(PrivacyRequest.status, func.count()).group_by(PrivacyRequest.status)
                    ).all()
                )
                overdue = session.execute(
                    select(func.count()).where(
                        PrivacyRequest.status != "completed", PrivacyRequest.due_at < utcnow()
                    )
                ).scalar_one()
        except Exception as exc:  # noqa: BLE001 - a scrape must not fail on a database hiccup
            log.warning("privacy metrics not read", extra={"error": str(exc)})
            return
        by_status = GaugeMetricFamily(
            "odr_privacy_requests", "Data-subject requests by status", labels=["status"]
        )
        for status in STATUSES:
            by_status.add_metric([status], float(counts.get(status, 0)))
        yield by_status
        yield GaugeMetricFamily(
            "odr_privacy_requests_overdue",
            "Data-subject requests not completed by their due date",
            value=float(overdue),
        )


COLLECTOR = PrivacyRequestsCollector()
_registered = False


def watch(sessions: sessionmaker[Session]) -> None:
    """Report on this database's requests (the app calls it; registered once per process)."""
    global _registered
    COLLECTOR.sessions = sessions
    if not _registered:
        REGISTRY.register(COLLECTOR)
        _registered = True
