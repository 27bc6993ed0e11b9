"""How long complaints keeps what, and the jobs that delete it when that time is over.

- `otp_challenges`: one-time codes, 1 day after they expired (COMPLAINTS_RETENTION_OTP_DAYS);
- `case_evidence`: evidence, 365 days after its case closed (COMPLAINTS_RETENTION_EVIDENCE_DAYS):
  long enough for a closed case to be questioned (a court, the regulator), then gone;
- `privacy_exports`: an access export, once it expired (COMPLAINTS_PRIVACY_EXPORT_TTL_DAYS, 7);
- `privacy_requests`: a completed data-subject request (the proof it was answered), 5 years
  after completion (COMPLAINTS_RETENTION_PRIVACY_REQUESTS_DAYS);
- `case_records`: a closed case's free text, 5 years after it closed
  (COMPLAINTS_RETENTION_CASE_RECORDS_DAYS; limitation periods for claims): its description is
  emptied, then (`case_timeline`, `case_offers_text`, `case_proposals_text`,
  `case_transition_reasons`) its messages and notes, offer and proposal terms, answers' and
  transitions' reasons. Status, dates, category, amounts, how it was settled and the decision
  stay for the public platform record;
- the shared rules (odr_shared.retention.shared_rules): outbox rows once sent, inbox rows,
  rate-limit windows (RETENTION_*_DAYS).

Evidence files live on disk: the purge deletes their rows, and `sweep_orphan_files` then deletes
every file whose row is gone (an erasure's leftovers after a crash too), in the worker
(`RetentionJob`) after each purge. Files younger than an hour are left alone: an upload
writes its file just before its row commits.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy import select

from complaints.models import Evidence
from complaints.service import Deps
from complaints.settings import ComplaintsSettings
from complaints.storage import LocalDiskStorage
from odr_shared.retention import Purger, Rule, shared_rules
from odr_shared.worker import Stoppable

log = logging.getLogger(__name__)
ORPHAN_MIN_AGE_S = 3600.0
# Closed cases whose free text is gone (by retention or erasure).
_EMPTIED = "SELECT id FROM cases WHERE closed_at IS NOT NULL AND description = ''"
_CHUNK = 500


def rules(settings: ComplaintsSettings) -> list[Rule]:
    """Complaints' retention rules, the platform's shared ones included (for the CLI's purge)."""
    return [
        *shared_rules(settings),
        Rule("otp_challenges", "otp_challenges", "expires_at", settings.retention_otp_days),
        Rule("case_evidence", "case_evidence", "case_closed_at", settings.retention_evidence_days),
        Rule("privacy_exports", "privacy_exports", "expires_at", 0, pk="request_id"),
        Rule(
            "privacy_requests",
            "privacy_requests",
            "completed_at",
            settings.retention_privacy_requests_days,
            where="id NOT IN (SELECT request_id FROM privacy_exports)",
        ),
        Rule(
            "case_records",
            "cases",
            "closed_at",
            settings.retention_case_records_days,
            clear={"description": ""},
        ),
        # The rest of an emptied case's free text: right after its description (the rules run
        # in this order), and what an erasure left.
        # A consent is the proof that sharing with the neutral was agreed to: it stays through
        # an erasure (without the person) and goes with the case's retention.
        Rule(
            "case_timeline",
            "case_timeline",
            "at",
            0,
            where=f"kind <> 'consent' AND case_id IN ({_EMPTIED})",
        ),
        Rule(
            "case_consents",
            "case_timeline",
            "at",
            settings.retention_case_records_days,
            where="kind = 'consent'",
        ),
        Rule(
            "case_offers_text",
            "case_offers",
            "made_at",
            0,
            where=f"case_id IN ({_EMPTIED})",
            clear={"terms": None, "answer_reason": None},
        ),
        Rule(
            "case_proposals_text",
            "case_proposals",
            "made_at",
            0,
            where=f"case_id IN ({_EMPTIED})",
            clear={"terms": None},
        ),
        Rule(
            "case_transition_reasons",
            "case_transitions",
            "at",
            0,
            where=f"actor_role <> 'system' AND case_id IN ({_EMPTIED})",
            clear={"reason": None},
        ),
    ]


def _files(root: Path) -> Iterator[Path]:
    if not root.is_dir():
        return
    for folder in root.iterdir():
        if folder.is_dir():
            yield from (p for p in folder.iterdir() if p.is_file())


def sweep_orphan_files(
    deps: Deps, *, min_age_s: float = ORPHAN_MIN_AGE_S, dry_run: bool = False
) -> int:
    """Delete evidence files no evidence row names any more; how many (would) go."""
    storage = deps.storage
    if not isinstance(storage, LocalDiskStorage):
        return 0
    cutoff = time.time() - min_age_s
    candidates: dict[str, Path] = {}
    for path in _files(storage.root):
        try:
            if path.stat().st_mtime > cutoff:
                continue
        except FileNotFoundError:
            continue
        key = path.name.removesuffix(".part")
        candidates[key] = path
    removed = 0
    keys = sorted(candidates)
    for start in range(0, len(keys), _CHUNK):
        chunk = keys[start : start + _CHUNK]
        with deps.sessions() as session:
            known = set(
                session.execute(
                    select(Evidence.storage_key).where(Evidence.storage_key.in_(chunk))
                ).scalars()
            )
        for key in chunk:
            path = candidates[key]
            if key in known and not path.name.endswith(".part"):
                continue
            removed += 1
            if not dry_run:
                path.unlink(missing_ok=True)
    if removed:
        log.info("orphan evidence files", extra={"count": removed, "dry_run": dry_run})
    return removed


class RetentionJob(Stoppable):
    """The worker part: every `interval_s`, the purge (in bounded batches), then the sweep of
    the evidence files whose rows it removed."""

    def __init__(self, deps: Deps, purger: Purger, interval_s: float) -> None:
        self.deps = deps
        self.purger = purger
        self.interval_s = interval_s
        self._stop = threading.Event()

    def run_once(self) -> dict[str, int]:
        purged = self.purger.purge()
        purged["evidence_files"] = sweep_orphan_files(self.deps)
        return purged

    def run(self) -> None:
        while not self._stop.is_set():
            try:
                self.run_once()
            except Exception as exc:  # noqa: BLE001 - a disk or database hiccup must not stop it
                log.warning("retention round failed", extra={"error": str(exc)})
            self._stop.wait(self.interval_s)

    def stop(self) -> None:
        self._stop.set()
        self.purger.stop()
