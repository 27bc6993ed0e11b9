"""What mediation purges, and when (docs/privacy.md; `odr privacy purge --dry-run` lists it).

Only what belongs to a case mediation is done with (decided, or closed, resolved or withdrawn by
complaints); each period counts from the row's own date:
- routing decisions (and, by cascade, each rule's exclusion count): deleted
  `RETENTION_ROUTING_DAYS` (default 365) after the decision was made; they explain an
  assignment while it can still be questioned, and hold no buyer data;
- timeline entries (messages, reasons, what each party did): deleted
  `RETENTION_CASE_TIMELINE_DAYS` (default 1095, the Civil Code's 3-year limitation period for a
  contract claim, Art. 429) after they happened;
- after the same period, the free text and contact copies that outlive the timeline are emptied
  (the rows stay for statistics): proposals' terms, arbitrators' votes' reasons, the case's masked
  consumer contact (counted from the case's last change);
- the arbitral award's reasons: emptied `RETENTION_ARBITRATION_AWARD_DAYS` (default 1825, the
  time limit to request enforcement) after the decision; outcome, amount and date stay;
- the plumbing every service has (`odr_shared.retention.shared_rules`: sent outbox rows, inbox
  rows, rate-limit windows).

Cases, assignments, proposals' and decisions' outcomes and amounts stay: they are the
statistics, and an erasure request anonymises them (mediation.privacy).
"""

from __future__ import annotations

from mediation.privacy import ERASED
from mediation.settings import MediationSettings
from odr_shared.retention import Rule, shared_rules

DONE_STAGES = "stage IN ('decided', 'closed')"
# A row of a case mediation is done with: nothing of it is read for routing or by a neutral.
CLOSED_CASE = (
    "case_id IN (SELECT case_id FROM mediation_cases WHERE stage IN ('decided', 'closed'))"
)


def rules(settings: MediationSettings) -> list[Rule]:
    text_days = settings.retention_case_timeline_days
    return [
        Rule(
            name="mediation.routing_decisions",
            table="routing_decisions",
            age_column="decided_at",
            days=settings.retention_routing_days,
            where=CLOSED_CASE,
        ),
        Rule(
            name="mediation.case_timeline",
            table="case_timeline",
            age_column="at",
            days=text_days,
            where=CLOSED_CASE,
        ),
        Rule(
            name="mediation.proposal_terms",
            table="proposals",
            age_column="created_at",
            days=text_days,
            where=CLOSED_CASE,
            clear={"terms": ERASED},
        ),
        Rule(
            name="mediation.vote_reasons",
            table="arbitration_votes",
            age_column="voted_at",
            days=text_days,
            where=CLOSED_CASE,
            clear={"reasons": ERASED},
        ),
        Rule(
            name="mediation.case_contacts",
            table="mediation_cases",
            age_column="updated_at",
            days=text_days,
            where=DONE_STAGES,
            clear={"consumer_name": None, "consumer_phone": None, "consumer_email": None},
        ),
        Rule(
            name="mediation.award_reasons",
            table="decisions",
            age_column="decided_at",
            days=settings.retention_arbitration_award_days,
            where=CLOSED_CASE,
            clear={"reasons": ERASED},
        ),
        *shared_rules(settings),
    ]
