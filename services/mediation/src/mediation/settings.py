"""Mediation settings (MEDIATION_* plus the platform-wide variables)."""

from __future__ import annotations

from datetime import date
from functools import lru_cache

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import SettingsConfigDict

from odr_shared.settings import ServiceSettings


class MediationSettings(ServiceSettings):
    model_config = SettingsConfigDict(
        env_prefix="MEDIATION_", extra="ignore", populate_by_name=True
    )

    database_url: str = "sqlite:///./var/mediation.db"
    public_base_url: str = "http://127.0.0.1:8003"
    complaints_url: str = "http://127.0.0.1:8002"
    # A neutral who has not acted on an assignment within this many working days is replaced.
    sla_working_days: int = Field(2, ge=1, le=60)
    # Public holidays (ISO dates, comma separated) skipped when counting working days.
    holidays: str = ""
    # Claims above this amount (đồng) go to a panel of three arbitrators instead of one.
    panel_threshold_vnd: int = Field(100_000_000, ge=0)
    # How often the worker retries the waiting queue and looks for SLA breaches.
    sweep_interval_s: float = Field(5.0, gt=0)
    token_ttl_s: int = Field(8 * 3600, ge=60)
    login_max_attempts: int = Field(10, ge=1)
    login_window_s: int = Field(300, ge=1)

    # --- personal data (docs/privacy.md) ---
    # Routing decisions (who was considered, who was chosen, why) of a closed or decided case
    # are purged this many days after they were made.
    retention_routing_days: float = Field(
        365, ge=1, validation_alias=AliasChoices("RETENTION_ROUTING_DAYS", "retention_routing_days")
    )
    # Timeline entries of a closed or decided case are purged this many days after they happened
    # (3 years: the Civil Code's limitation period for a contract claim, Art. 429).
    retention_case_timeline_days: float = Field(
        1095,
        ge=1,
        validation_alias=AliasChoices(
            "RETENTION_CASE_TIMELINE_DAYS", "retention_case_timeline_days"
        ),
    )
    # An arbitral award's reasons are kept this long after the decision, also against an erasure
    # request (5 years: the time limit to request enforcement of a judgment or an arbitral award,
    # Law on Enforcement of Civil Judgments Art. 30); see mediation.privacy.
    retention_arbitration_award_days: float = Field(
        1825,
        ge=0,
        validation_alias=AliasChoices(
            "RETENTION_ARBITRATION_AWARD_DAYS", "retention_arbitration_award_days"
        ),
    )
    # An erasure request that finds one of the subject's cases still open is deferred; this is
    # the `until` it reports (the case is expected to have closed by then; complaints asks again
    # when it closes, and a later request completes the erasure).
    privacy_open_case_defer_days: float = Field(
        30,
        ge=1,
        validation_alias=AliasChoices(
            "PRIVACY_OPEN_CASE_DEFER_DAYS", "privacy_open_case_defer_days"
        ),
    )

    @field_validator("holidays")
    @classmethod
    def _valid_dates(cls, v: str) -> str:
        for part in v.split(","):
            if part.strip():
                date.fromisoformat(part.strip())
        return v

    @property
    def holiday_dates(self) -> frozenset[date]:
        return frozenset(
            date.fromisoformat(p.strip()) for p in self.holidays.split(",") if p.strip()
        )


@lru_cache
def get_settings() -> MediationSettings:
    return MediationSettings()
