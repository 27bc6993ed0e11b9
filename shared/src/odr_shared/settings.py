"""Typed settings: the part every service shares, read from unprefixed environment variables."""

from __future__ import annotations

from typing import Literal

from pydantic import AliasChoices, Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from odr_shared.db import DEFAULT_MAX_OVERFLOW, DEFAULT_POOL_SIZE

DEV_JWT_SECRET = "dev-only-jwt-secret-change-me-0123456789abcdef"  # noqa: S105 - refused outside development
DEV_DATA_KEY = "ZGV2LW9ubHktZGF0YS1rZXktY2hhbmdlLW1lLTAxMjM="
PLACEHOLDERS = {DEV_JWT_SECRET, DEV_DATA_KEY, "changeme", "change-me", ""}


def _common(name: str) -> AliasChoices:
    return AliasChoices(name)


class ServiceSettings(BaseSettings):
    """Base for each service's settings.

    Fields here come from unprefixed variables shared by the whole platform
    (``KAFKA_BOOTSTRAP_SERVERS``, ``JWT_SECRET`` ...). A service subclasses it with its own
    ``env_prefix`` (``COMPLAINTS_``) for what only it reads, such as ``COMPLAINTS_DATABASE_URL``.
    """

    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True)

    environment: Literal["development", "test", "production"] = Field(
        "development", validation_alias=_common("ENVIRONMENT")
    )
    kafka_bootstrap_servers: str = Field(
        "127.0.0.1:9092", validation_alias=_common("KAFKA_BOOTSTRAP_SERVERS")
    )
    kafka_client_id: str | None = Field(None, validation_alias=_common("KAFKA_CLIENT_ID"))
    jwt_algorithm: Literal["HS256", "RS256"] = Field(
        "HS256", validation_alias=_common("JWT_ALGORITHM")
    )
    jwt_secret: str = Field(DEV_JWT_SECRET, validation_alias=_common("JWT_SECRET"))
    jwt_private_key: str = Field("", validation_alias=_common("JWT_PRIVATE_KEY"))
    jwt_public_key: str = Field("", validation_alias=_common("JWT_PUBLIC_KEY"))
    jwt_issuer: str = Field("odr-platform", validation_alias=_common("JWT_ISSUER"))
    jwt_audience: str = Field("odr-api", validation_alias=_common("JWT_AUDIENCE"))
    data_encryption_key: str = Field(
        DEV_DATA_KEY,
        validation_alias=_common("DATA_ENCRYPTION_KEY"),
        description="base64 key material for encrypting secrets and personal data at rest",
    )
    # Personal data (odr_shared.privacy, docs/privacy.md). The master key wraps each data subject's
    # key in this service's database: comma-separated materials, newest first (older ones still
    # unwrap), or a file holding them (where a KMS or a secret store mounts it). Empty in
    # development: derived from DATA_ENCRYPTION_KEY.
    privacy_master_key: str = Field("", validation_alias=_common("PRIVACY_MASTER_KEY"))
    privacy_master_key_file: str = Field("", validation_alias=_common("PRIVACY_MASTER_KEY_FILE"))
    # The key of the data subject id (a keyed hash of the canonical phone): the SAME in every
    # service, so each names a buyer alike. Empty in development: derived from
    # DATA_ENCRYPTION_KEY, which the local stack shares.
    privacy_subject_key: str = Field("", validation_alias=_common("PRIVACY_SUBJECT_KEY"))
    # Where each service's API answers, for service-to-service calls (subject keys, exports).
    service_urls: str = Field(
        "gateway=http://127.0.0.1:8001,complaints=http://127.0.0.1:8002,"
        "mediation=http://127.0.0.1:8003,notifications=http://127.0.0.1:8004",
        validation_alias=_common("SERVICE_URLS"),
    )
    # How long a consumer keeps another service's subject key in memory (an erasure reaches it
    # on privacy.events sooner; this bounds how long a missed one could matter).
    privacy_key_cache_s: float = Field(60.0, ge=0, validation_alias=_common("PRIVACY_KEY_CACHE_S"))
    # Retention of the plumbing every service has (odr_shared.retention.shared_rules).
    retention_outbox_sent_days: float = Field(
        7, ge=0, validation_alias=_common("RETENTION_OUTBOX_SENT_DAYS")
    )
    retention_inbox_days: float = Field(30, ge=0, validation_alias=_common("RETENTION_INBOX_DAYS"))
    retention_rate_limit_days: float = Field(
        2, ge=0, validation_alias=_common("RETENTION_RATE_LIMIT_DAYS")
    )
    retention_interval_s: float = Field(
        3600, gt=0, validation_alias=_common("RETENTION_INTERVAL_S")
    )
    retention_batch_size: int = Field(500, ge=1, validation_alias=_common("RETENTION_BATCH_SIZE"))
    log_level: str = Field("INFO", validation_alias=_common("LOG_LEVEL"))
    log_format: Literal["json", "text"] = Field("json", validation_alias=_common("LOG_FORMAT"))
    # Consumer retry policy before a message goes to the dead-letter topic.
    consumer_max_attempts: int = Field(5, validation_alias=_common("CONSUMER_MAX_ATTEMPTS"))
    consumer_backoff_initial_s: float = Field(
        0.2, validation_alias=_common("CONSUMER_BACKOFF_INITIAL_S")
    )
    consumer_backoff_max_s: float = Field(5.0, validation_alias=_common("CONSUMER_BACKOFF_MAX_S"))
    outbox_poll_interval_s: float = Field(0.05, validation_alias=_common("OUTBOX_POLL_INTERVAL_S"))
    # Each process's connection pool on a server database (odr_shared.db.DEFAULT_POOL_SIZE).
    db_pool_size: int = Field(DEFAULT_POOL_SIZE, ge=1, validation_alias=_common("DB_POOL_SIZE"))
    db_max_overflow: int = Field(
        DEFAULT_MAX_OVERFLOW, ge=0, validation_alias=_common("DB_MAX_OVERFLOW")
    )

    def service_url(self, service: str) -> str:
        """The base URL of one service's API, from SERVICE_URLS."""
        for part in self.service_urls.split(","):
            name, _, url = part.strip().partition("=")
            if name.strip() == service and url.strip():
                return url.strip().rstrip("/")
        raise KeyError(f"SERVICE_URLS names no {service!r}")

    @model_validator(mode="after")
    def _refuse_placeholders(self) -> ServiceSettings:
        if self.environment == "production":
            if self.jwt_algorithm == "HS256" and (
                self.jwt_secret in PLACEHOLDERS or len(self.jwt_secret) < 32
            ):
                raise ValueError("JWT_SECRET must be set to a strong secret in production")
            if self.jwt_algorithm == "RS256" and not self.jwt_public_key:
                raise ValueError("JWT_PUBLIC_KEY is required with RS256")
            if self.data_encryption_key in PLACEHOLDERS:
                raise ValueError("DATA_ENCRYPTION_KEY must be set in production")
            if not (self.privacy_master_key or self.privacy_master_key_file):
                raise ValueError(
                    "PRIVACY_MASTER_KEY or PRIVACY_MASTER_KEY_FILE must be set in production"
                )
            if self.privacy_subject_key in PLACEHOLDERS or len(self.privacy_subject_key) < 32:
                raise ValueError("PRIVACY_SUBJECT_KEY must be set to a strong key in production")
        return self


# Locally one worker per service consumes each topic, so partitions buy no parallelism there; the
# count matches production's KafkaTopic resources so keys land on the same partitions and a
# second local worker shows the scale-out production has. Tansu carries 12 idle partitions per
# topic for no measurable cost (docs/configuration.md).
LOCAL_TOPIC_PARTITIONS = 12


class TopicSettings(BaseSettings):
    """The shape of the topics a worker creates when they are missing (local runs and tests).

    Where topics are managed resources (Kubernetes: KafkaTopic), workers create none
    (``KAFKA_ENSURE_TOPICS=false``) and these numbers are not read.
    """

    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True)

    # A group's members share a topic's partitions: its worker scales out up to this count.
    partitions: int = Field(
        LOCAL_TOPIC_PARTITIONS, ge=1, validation_alias=_common("KAFKA_TOPIC_PARTITIONS")
    )
    replication: int = Field(1, ge=1, validation_alias=_common("KAFKA_TOPIC_REPLICATION"))
