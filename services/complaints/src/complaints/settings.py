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
    # Data-subject requests (complaints.privacy). The answer is due this many working days
    # after the request (acknowledged at once), counted on the holiday calendar above.
    privacy_answer_working_days: int = 15
    privacy_export_ttl_days: int = 7  # how long an access export can be downloaded
    privacy_requests_per_subject_per_day: int = 3
    # The controller the privacy notice names (/privacy); empty: a placeholder the notice marks.
    # Set them before going live.
    privacy_controller_name: str = ""
    privacy_contact_email: str = ""
    privacy_contact_address: str = ""
    # The services whose data an access export gathers and whose erasure reports complete an
    # erasure (comma list; their URLs come from SERVICE_URLS).
    privacy_services: str = "gateway,mediation,notifications"
    privacy_poll_interval_s: float = 2.0
    privacy_batch_size: int = 10  # requests the worker takes per round
    privacy_http_timeout_s: float = 15.0
    privacy_retry_max_s: float = 600.0  # longest wait before asking an unreachable service again
    # Retention (complaints.retention), in days; the purge runs every RETENTION_INTERVAL_S
    # (shared setting, like RETENTION_BATCH_SIZE and the shared rules' periods).
    retention_otp_days: float = 1  # one-time codes, counted from their expiry
    retention_evidence_days: float = 365  # evidence files, counted from the case's closing
    # A closed case's free text (description, messages, terms, reasons), counted from its
    # closing; its facts stay for the public record.
    retention_case_records_days: float = 5 * 365
    # A completed data-subject request (the proof it was answered), counted from completion.
    retention_privacy_requests_days: float = 5 * 365

    @property
    def privacy_service_names(self) -> list[str]:
        return [s.strip() for s in self.privacy_services.split(",") if s.strip()]


@lru_cache
def get_settings() -> ComplaintsSettings:
    return ComplaintsSettings()
