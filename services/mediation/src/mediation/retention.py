"""What mediation purges, and when (docs/privacy.md; `odr privacy purge --dry-run` lists it).

- routing decisions (and, by cascade, each rule's exclusion count) of a case decided or closed,
  `RETENTION_ROUTING_DAYS` (default 365) after the decision was made: they explain an
  assignment while it can still be questioned, and hold no buyer data;
- timeline entries (messages, reasons, what each party did) of a case decided or closed,
  `RETENTION_CASE_TIMELINE_DAYS` (default 1095, the Civil Code's 3-year limitation period for a
  contract claim) after they happened;
- the plumbing every service has (`odr_shared.retention.shared_rules`: sent outbox rows, inbox
  rows, rate-limit windows).

The cases themselves, assignments, proposals' outcomes and decisions stay: they are the
statistics, and an erasure request anonymises them (mediation.privacy).
"""

from __future__ import annotations

from mediation.settings import MediationSettings
from odr_shared.retention import Rule, shared_rules

# A case mediation is done with: nothing of it is read for routing or by a neutral at work.
CLOSED_CASE = (
    "case_id IN (SELECT case_id FROM mediation_cases WHERE stage IN ('decided', 'closed'))"
)


def rules(settings: MediationSettings) -> list[Rule]:
    return [
        Rule(
            name="mediation.routing_decisions",
            table="routing_decisions",
            age_column="decided_at",
            days=settings.retention_routing_days,
            where=CLOSED_CASE,
            pk="decision_id",
        ),
        Rule(
            name="mediation.case_timeline",
            table="case_timeline",
            age_column="at",
            days=settings.retention_case_timeline_days,
            where=CLOSED_CASE,
        ),
        *shared_rules(settings),
    ]
