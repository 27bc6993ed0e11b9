"""The worker's periodic pass: retry the waiting queue and replace neutrals past their SLA."""

from __future__ import annotations

import logging
import threading

from sqlalchemy.orm import Session, sessionmaker

from mediation import repository as repo
from mediation import service
from mediation.settings import MediationSettings
from odr_shared.db import utcnow
from odr_shared.worker import Stoppable

log = logging.getLogger(__name__)


class Sweeper(Stoppable):
    def __init__(self, sessions: sessionmaker[Session], settings: MediationSettings) -> None:
        self.sessions = sessions
        self.settings = settings
        self._stop = threading.Event()
        self.batch = 200

    def stop(self) -> None:
        self._stop.set()

    def sweep_once(self) -> tuple[int, int]:
        """One pass; returns (neutrals replaced, waiting cases assigned)."""
        with self.sessions() as session, session.begin():
            replaced = service.sweep_sla(session, self.settings, utcnow())
        # Working hours begin, leave ends: the queue may move without any event telling us.
        # One short transaction per case, so the API's writers never wait on a whole sweep.
        with self.sessions() as session:
            waiting = [
                (c.case_id, service.waiting_key(c)) for c in repo.waiting_cases(session, self.batch)
            ]
        assigned = 0
        failed: set[tuple[str | None, ...]] = set()
        for case_id, key in waiting:
            if key in failed or self._stop.is_set():
                continue
            with self.sessions() as session, session.begin():
                staffed = service.retry_waiting_case(session, case_id, self.settings, utcnow())
            if staffed:
                assigned += 1
            elif staffed is False:
                failed.add(key)
        return replaced, assigned

    def run(self) -> None:
        while not self._stop.is_set():
            try:
                self.sweep_once()
            except Exception as exc:  # noqa: BLE001 - a failed pass is retried on the next tick
                log.warning("mediation sweep failed", extra={"error": str(exc)})
            self._stop.wait(self.settings.sweep_interval_s)
