"""Mediation settings (MEDIATION_* plus the platform-wide variables)."""

from __future__ import annotations

from functools import lru_cache

from pydantic_settings import SettingsConfigDict

from odr_shared.settings import ServiceSettings


class MediationSettings(ServiceSettings):
    model_config = SettingsConfigDict(
        env_prefix="MEDIATION_", extra="ignore", populate_by_name=True
    )

    database_url: str = "sqlite:///./var/mediation.db"
    public_base_url: str = "http://127.0.0.1:8003"


@lru_cache
def get_settings() -> MediationSettings:
    return MediationSettings()
