"""Complaints settings (COMPLAINTS_* plus the platform-wide variables)."""

from __future__ import annotations

from functools import lru_cache

from pydantic_settings import SettingsConfigDict

from odr_shared.settings import ServiceSettings


class ComplaintsSettings(ServiceSettings):
    model_config = SettingsConfigDict(
        env_prefix="COMPLAINTS_", extra="ignore", populate_by_name=True
    )

    database_url: str = "sqlite:///./var/complaints.db"
    public_base_url: str = "http://127.0.0.1:8002"


@lru_cache
def get_settings() -> ComplaintsSettings:
    return ComplaintsSettings()
