"""Notifications settings (NOTIFICATIONS_* plus the platform-wide variables)."""

from __future__ import annotations

from functools import lru_cache

from pydantic_settings import SettingsConfigDict

from odr_shared.settings import ServiceSettings


class NotificationsSettings(ServiceSettings):
    model_config = SettingsConfigDict(
        env_prefix="NOTIFICATIONS_", extra="ignore", populate_by_name=True
    )

    database_url: str = "sqlite:///./var/notifications.db"
    public_base_url: str = "http://127.0.0.1:8004"


@lru_cache
def get_settings() -> NotificationsSettings:
    return NotificationsSettings()
