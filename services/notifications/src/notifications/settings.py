"""Notifications settings (NOTIFICATIONS_* plus the platform-wide variables)."""

from __future__ import annotations

from functools import lru_cache

from pydantic import AliasChoices, Field, model_validator
from pydantic_settings import SettingsConfigDict

from odr_shared.settings import ServiceSettings


def _retention(kind: str) -> AliasChoices:
    return AliasChoices(f"NOTIFICATIONS_RETENTION_{kind}_DAYS", f"RETENTION_{kind}_DAYS")


class NotificationsSettings(ServiceSettings):
    model_config = SettingsConfigDict(
        env_prefix="NOTIFICATIONS_", extra="ignore", populate_by_name=True
    )

    database_url: str = "sqlite:///./var/notifications.db"
    public_base_url: str = "http://127.0.0.1:8004"
    # Links in messages: the consumer portal and the neutrals' dashboard.
    portal_url: str = Field(
        "http://127.0.0.1:8002",
        validation_alias=AliasChoices("NOTIFICATIONS_PORTAL_URL", "COMPLAINTS_URL"),
    )
    dashboard_url: str = Field(
        "http://127.0.0.1:8003/dashboard", validation_alias="NOTIFICATIONS_DASHBOARD_URL"
    )

    # SMS over HTTP: POST {to, text, sender, reference} with a bearer key if one is set.
    sms_provider_url: str = "http://127.0.0.1:1026/sms"
    sms_api_key: str = ""
    sms_sender: str = "ODR"
    sms_timeout_s: float = 10.0
    sms_max_segments: int = Field(2, ge=1, le=10)
    sms_unaccented: bool = False  # always send Vietnamese SMS without diacritics (GSM-7)

    # Email over SMTP to any server; the local stack points this at its sink.
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 1025
    smtp_username: str = ""
    smtp_password: str = ""
    smtp_starttls: bool = False
    smtp_ssl: bool = False  # implicit TLS (port 465)
    smtp_ca_file: str = ""  # trust this CA (a private relay); the system store otherwise
    smtp_timeout_s: float = 15.0
    mail_from: str = "ODR <no-reply@odr.local>"

    # Dispatcher: retries, rate limit and quiet hours (local time, Asia/Ho_Chi_Minh).
    dispatch_poll_interval_s: float = 0.5
    dispatch_batch_size: int = 50
    dispatch_lease_s: float = 120.0  # raised if a round of sends could outlast it
    dispatch_concurrency: int = Field(8, ge=1, le=64)
    max_attempts: int = Field(6, ge=1)
    backoff_initial_s: float = 5.0
    backoff_max_s: float = 900.0
    rate_limit_per_recipient: int = 10  # non-urgent messages per window; 0 turns it off
    rate_limit_window_s: int = 3600
    quiet_hours_start: str = "21:00"  # equal start and end turn quiet hours off
    quiet_hours_end: str = "07:00"
    timezone: str = "Asia/Ho_Chi_Minh"

    # Retention (notifications.retention; docs/privacy.md). NOTIFICATIONS_RETENTION_<KIND>_DAYS
    # or RETENTION_<KIND>_DAYS. Bodies go first (the text sent: names, free text, links) while
    # the delivery's facts stay for support and statistics; finished deliveries go later.
    retention_delivery_bodies_days: float = Field(
        90, ge=0, validation_alias=_retention("DELIVERY_BODIES")
    )
    retention_deliveries_days: float = Field(365, ge=0, validation_alias=_retention("DELIVERIES"))
    # An opt-out link no message has carried for this long (its preference stays).
    retention_unsubscribe_links_days: float = Field(
        365, ge=0, validation_alias=_retention("UNSUBSCRIBE_LINKS")
    )
    # A case's contact with no case event for this long (cases close well before).
    retention_case_contacts_days: float = Field(
        730, ge=0, validation_alias=_retention("CASE_CONTACTS")
    )

    @model_validator(mode="after")
    def _production_channels(self) -> NotificationsSettings:
        if (
            self.environment == "production"
            and self.smtp_username
            and not (self.smtp_starttls or self.smtp_ssl)
        ):
            raise ValueError("SMTP credentials must not travel in clear: set STARTTLS or SSL")
        return self


@lru_cache
def get_settings() -> NotificationsSettings:
    return NotificationsSettings()
