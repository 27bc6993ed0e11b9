"""Gateway settings (GATEWAY_* plus the platform-wide variables)."""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from odr_shared.settings import ServiceSettings


class GatewaySettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="GATEWAY_", extra="ignore", populate_by_name=True)

    database_url: str = "sqlite:///./var/gateway.db"
    public_base_url: str = "http://127.0.0.1:8001"
    webhook_tolerance_s: int = 300
    max_body_bytes: int = 1_048_576
    max_batch_body_bytes: int = 16 * 1_048_576
    # Per platform, all webhook routes together: 2,000 events/s, above the national peak of the
    # largest marketplace (docs/capacity.md); a platform stuck in a retry loop still meets it.
    webhook_rate_limit: int = 120_000
    webhook_rate_window_s: int = 60
    platform_token_ttl_s: int = 3600
    # How long a process reuses a platform's verification settings (0: read them per request).
    platform_cache_ttl_s: float = 3.0
    # How long a rotated-out secret still verifies (and still signs outbound deliveries).
    secret_rotation_grace_s: int = 86_400
    # Outbound deliveries: 1.0 is the Standard Webhooks schedule (0, 5 s, 5 min ... 24 h);
    # tests shrink it. Jitter adds up to this fraction of each delay.
    outbound_schedule_scale: float = 1.0
    outbound_jitter: float = 0.1
    outbound_timeout_s: float = 10.0
    outbound_poll_interval_s: float = 0.5
    outbound_concurrency: int = 4
    outbound_lease_s: int = 120
    # Outbox rows the relay publishes per round. A backfill arrives 1,000 events per batch;
    # at 500 per round the relay waited for SQLite's write lock (held by the store's 1,000-event
    # transactions) twice per batch to mark rows sent: 2,000 took the batch bench from 0.44
    # to 0.49 of a bare producer.
    outbox_batch_size: int = 2000
    # Groups of webhook deliveries stored at once per API process (gateway/intake.py): one
    # commits while the next gathers. Beyond this, requests wait for a group to finish.
    store_concurrency: int = 2
    # Retention (gateway/retention.py, docs/privacy.md): days a kind of record is kept.
    # Accepted, held, ignored ... webhook deliveries: their encrypted body serves inspection and
    # replay while a marketplace integration is debugged, no longer.
    retention_inbound_body_days: int = Field(30, ge=1)
    # Refused deliveries (bad signature, malformed body): kept longer for an operator to
    # investigate an integration or an attack.
    retention_rejected_days: int = Field(90, ge=1)
    # The inbound log's rows once their bodies are gone (platform, status, times, counts).
    retention_inbound_log_days: int = Field(365, ge=1)
    # Outbound case webhooks and their attempt log, once no longer pending: what a platform
    # may ask about (and replay) for a quarter.
    retention_outbound_days: int = Field(90, ge=1)
    # Order snapshots (buyer encrypted): merged into later status-only pushes; an order not
    # updated for a year gets none.
    retention_order_snapshot_days: int = Field(365, ge=1)


@lru_cache
def get_settings() -> GatewaySettings:
    return GatewaySettings()
