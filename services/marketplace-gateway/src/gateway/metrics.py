"""Gateway metrics: inbound deliveries by kind and outcome, outbound attempts by outcome."""

from __future__ import annotations

from prometheus_client import Counter

INBOUND_DELIVERIES = Counter(
    "odr_gateway_inbound_deliveries_total",
    "Webhook deliveries received, by platform kind and outcome",
    ["kind", "status"],
)
OUTBOUND_ATTEMPTS = Counter(
    "odr_gateway_outbound_attempts_total",
    "Outbound webhook attempts, by outcome (delivered, retry, failed, gone)",
    ["outcome"],
)
