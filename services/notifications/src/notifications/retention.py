"""Notifications' retention rules (docs/privacy.md), run by the worker's Purger and by
`odr privacy purge [--dry-run]`.

- `delivery_bodies`: the text of a finished delivery (what was sent and its display copy) goes
  `RETENTION_DELIVERY_BODIES_DAYS` (90) after it was recorded; the row stays (a `clear` rule:
  the columns are emptied, nothing is deleted), so support still sees who was told what, when.
- `deliveries`: a finished delivery (sent, failed, suppressed, cancelled) goes entirely after
  `RETENTION_DELIVERIES_DAYS` (365). Deliveries still due are never purged.
- `unsubscribe_links`: a link no message has carried for `RETENTION_UNSUBSCRIBE_LINKS_DAYS`
  (365) goes; the preference it set stays.
- `case_contacts`: a case's consumer contact after `RETENTION_CASE_CONTACTS_DAYS` (730) without
  any event of the case.
- plus every service's plumbing (`odr_shared.retention.shared_rules`): sent outbox rows, inbox
  ids. Notifications keeps its send rate limit in `deliveries`, so it has no rate-limit windows.
"""

from __future__ import annotations

from notifications.models import Base
from notifications.settings import NotificationsSettings
from odr_shared.retention import Rule, shared_rules

FINISHED = "status IN ('sent', 'failed', 'suppressed', 'cancelled')"


def rules(settings: NotificationsSettings) -> list[Rule]:
    tables = Base.metadata.tables
    deliveries = tables["deliveries"]
    return [
        Rule(
            "delivery_bodies",
            deliveries,
            "created_at",
            settings.retention_delivery_bodies_days,
            where=FINISHED,
            clear={"content_enc": None, "body_enc": None},
        ),
        Rule(
            "deliveries",
            deliveries,
            "created_at",
            settings.retention_deliveries_days,
            where=FINISHED,
        ),
        Rule(
            "unsubscribe_links",
            tables["unsubscribe_links"],
            "last_used_at",
            settings.retention_unsubscribe_links_days,
        ),
        Rule(
            "case_contacts",
            tables["case_contacts"],
            "updated_at",
            settings.retention_case_contacts_days,
        ),
        *shared_rules(settings, rate_limits=False),
    ]
