"""What every marketplace adapter provides: verify the signature, map the body, the ack."""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Mapping as MappingABC
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from gateway.domain import Mapping, MappingError
from gateway.signatures import SignatureError, verify_hex_hmac
from odr_shared.problems import validation_errors

ModelT = TypeVar("ModelT", bound=BaseModel)


@dataclass(frozen=True)
class PlatformConfig:
    """The parts of a platform an adapter needs (secrets already decrypted)."""

    platform_id: str
    name: str
    kind: str
    secrets: tuple[str, ...]  # current first, then a previous one during a rotation
    app_key: str | None
    push_url: str
    tolerance_s: int


class Adapter(ABC):
    kind: str
    # What the marketplace expects back once the delivery is stored.
    ack_status: int = 200

    @abstractmethod
    def verify(
        self,
        cfg: PlatformConfig,
        headers: MappingABC[str, str],
        body: bytes,
        now: float | None = None,
    ) -> None:
        """Raise SignatureError unless the delivery is authentic (and fresh, where dated)."""

    @abstractmethod
    def map(self, cfg: PlatformConfig, headers: MappingABC[str, str], body: bytes) -> Mapping:
        """Read the marketplace's payload; raise MappingError naming the bad field."""


class AppKeySignedAdapter(Adapter):
    """Lazada and TikTok Shop: `Authorization: hex(HMAC-SHA256(secret, app_key + body))`."""

    def verify(
        self,
        cfg: PlatformConfig,
        headers: MappingABC[str, str],
        body: bytes,
        now: float | None = None,
    ) -> None:
        if not cfg.app_key:
            raise SignatureError("platform has no app_key configured")
        message = cfg.app_key.encode() + body
        verify_hex_hmac(cfg.secrets, message, headers.get("authorization"), "Authorization")


def load_object(body: bytes) -> dict[str, Any]:
    try:
        doc = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise MappingError(
            [{"field": "body", "reason": f"not valid JSON: {exc}"}], http_status=400
        ) from exc
    if not isinstance(doc, dict):
        raise MappingError([{"field": "body", "reason": "must be a JSON object"}])
    return doc


def validate(model: type[ModelT], doc: Any, prefix: str = "") -> ModelT:
    """Validate into a model; errors name the field with its path in the original body."""
    try:
        return model.model_validate(doc)
    except ValidationError as exc:
        errors = validation_errors(exc.errors())
        if prefix:
            errors = [{**e, "field": f"{prefix}.{e['field']}"} for e in errors]
        raise MappingError(errors) from exc


def from_unix(value: int | float) -> datetime:
    # Some marketplaces send milliseconds where others send seconds.
    seconds = value / 1000 if value > 10_000_000_000 else value
    return datetime.fromtimestamp(seconds, UTC)
