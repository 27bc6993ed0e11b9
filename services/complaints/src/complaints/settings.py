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
    storage_dir: str = "./var/evidence"
    evidence_max_bytes: int = 10 * 1024 * 1024
    holidays_file: str | None = None  # JSON {"2028": ["2028-01-01", ...]} adds or replaces years
    deadline_check_interval_s: float = 30.0
    otp_ttl_s: int = 300
    otp_max_attempts: int = 5
    otp_per_phone_per_hour: int = 5
    otp_per_ip_per_hour: int = 30
    otp_verify_per_ip_per_hour: int = 60
    consumer_token_ttl_s: int = 3600
    secure_cookies: bool = False  # true behind HTTPS


@lru_cache
def get_settings() -> ComplaintsSettings:
    return ComplaintsSettings()
