"""Gateway settings (GATEWAY_* plus the platform-wide variables)."""

from __future__ import annotations

from functools import lru_cache

from pydantic_settings import SettingsConfigDict

from odr_shared.settings import ServiceSettings


class GatewaySettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="GATEWAY_", extra="ignore", populate_by_name=True)

    database_url: str = "sqlite:///./var/gateway.db"
    public_base_url: str = "http://127.0.0.1:8001"
    webhook_tolerance_s: int = 300
    max_body_bytes: int = 1_048_576
    platform_token_ttl_s: int = 3600


@lru_cache
def get_settings() -> GatewaySettings:
    return GatewaySettings()
