"""What the gateway keeps, and for how long (docs/privacy.md; `odr privacy purge` reads these).

- inbound_bodies: the encrypted body of a stored webhook delivery (accepted, held, ignored,
  stale, duplicate) is emptied, the row stays: `GATEWAY_RETENTION_INBOUND_BODY_DAYS`, 30 days
  from receipt;
- inbound_rejected: refused deliveries (bad signature, malformed, too large), row and body:
  `GATEWAY_RETENTION_REJECTED_DAYS`, 90 days;
- inbound_log: the delivery log's rows (platform, status, times, counts):
  `GATEWAY_RETENTION_INBOUND_LOG_DAYS`, 365 days;
- outbound_attempts: the attempt log of outbound case webhooks:
  `GATEWAY_RETENTION_OUTBOUND_DAYS`, 90 days from the attempt;
- outbound_deliveries: outbound case webhooks no longer being sent, once their attempt log is
  gone: `GATEWAY_RETENTION_OUTBOUND_DAYS`, 90 days from creation;
- order_snapshots: what the gateway knows of an order (buyer encrypted):
  `GATEWAY_RETENTION_ORDER_SNAPSHOT_DAYS`, 365 days from its last update;

plus `odr_shared.retention.shared_rules`: outbox rows once sent, inbox ids, rate-limit windows.
The marketplace event keys (`inbound_events`: platform, order id, the marketplace's event key;
nothing about the buyer) stay, so an old event a marketplace sends again is not published twice.
"""

from __future__ import annotations

from sqlalchemy import Table

from gateway.models import InboundDelivery, OrderSnapshot, OutboundAttempt, OutboundDelivery
from gateway.settings import GatewaySettings
from odr_shared.retention import Rule, shared_rules

_DELIVERIES: Table = InboundDelivery.__table__  # type: ignore[assignment]
_SNAPSHOTS: Table = OrderSnapshot.__table__  # type: ignore[assignment]
_OUTBOUND: Table = OutboundDelivery.__table__  # type: ignore[assignment]
_ATTEMPTS: Table = OutboundAttempt.__table__  # type: ignore[assignment]


def rules(settings: GatewaySettings) -> list[Rule]:
    """The gateway's retention rules, in the order they run (attempts before their deliveries)."""
    return [
        Rule(
            "inbound_bodies",
            _DELIVERIES,
            "received_at",
            settings.retention_inbound_body_days,
            where="status <> 'rejected'",
            clear={"body_enc": b""},
        ),
        Rule(
            "inbound_rejected",
            _DELIVERIES,
            "received_at",
            settings.retention_rejected_days,
            where="status = 'rejected'",
        ),
        Rule("inbound_log", _DELIVERIES, "received_at", settings.retention_inbound_log_days),
        Rule("outbound_attempts", _ATTEMPTS, "attempted_at", settings.retention_outbound_days),
        Rule(
            "outbound_deliveries",
            _OUTBOUND,
            "created_at",
            settings.retention_outbound_days,
            # Never one being sent or waiting for its next try, nor one with attempts left (a
            # recent replay's): the attempts' foreign key points at it.
            where=(
                "status IN ('delivered', 'failed', 'disabled') AND NOT EXISTS "
                "(SELECT 1 FROM outbound_attempts a WHERE a.delivery_id = outbound_deliveries.id)"
            ),
        ),
        Rule("order_snapshots", _SNAPSHOTS, "updated_at", settings.retention_order_snapshot_days),
        *shared_rules(settings),
    ]
