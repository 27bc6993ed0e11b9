"""The CloudEvents 1.0 structured-mode JSON envelope and a registry of typed, versioned payloads."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

PayloadT = TypeVar("PayloadT", bound=BaseModel)

# (type, version) -> payload model. The version lives in the `dataschema` URN
# ("urn:odr:schema:<type>:v<N>") so consumers can read several versions side by side.
_REGISTRY: dict[tuple[str, int], type[BaseModel]] = {}


class EventParseError(ValueError):
    """A message that is not a valid event: it goes to the dead-letter topic, never retried."""


def register(event_type: str, version: int, model: type[BaseModel]) -> None:
    _REGISTRY[(event_type, version)] = model


def data_model_for(event_type: str, version: int) -> type[BaseModel] | None:
    return _REGISTRY.get((event_type, version))


def schema_urn(event_type: str, version: int) -> str:
    return f"urn:odr:schema:{event_type}:v{version}"


def _version_of(dataschema: str | None) -> int:
    if not dataschema:
        return 1
    prefix, _, tail = dataschema.rpartition(":v")
    if not prefix or not tail.isdigit():
        raise EventParseError(f"dataschema {dataschema!r} carries no version")
    return int(tail)


class CloudEvent(BaseModel, Generic[PayloadT]):
    """A CloudEvents 1.0 event: extension attributes are kept, unknown data fields ignored."""

    model_config = ConfigDict(extra="allow", frozen=True)

    specversion: str = "1.0"
    id: str = Field(min_length=1)
    source: str = Field(min_length=1)
    type: str = Field(min_length=1)
    time: datetime
    subject: str | None = None
    datacontenttype: str = "application/json"
    dataschema: str | None = None
    data: PayloadT

    @field_validator("specversion")
    @classmethod
    def _only_1_0(cls, v: str) -> str:
        if v != "1.0":
            raise ValueError("only CloudEvents specversion 1.0 is understood")
        return v

    @field_validator("time")
    @classmethod
    def _aware(cls, v: datetime) -> datetime:
        if v.tzinfo is None:
            raise ValueError("time must carry a timezone")
        return v.astimezone(UTC)

    @property
    def version(self) -> int:
        return _version_of(self.dataschema)

    def to_json_bytes(self) -> bytes:
        return self.model_dump_json(exclude_none=True).encode()


_ENVELOPES: dict[type[BaseModel], Any] = {}


def build_event(
    *,
    source: str,
    event_type: str,
    subject: str,
    data: PayloadT,
    version: int = 1,
    event_id: str | None = None,
    time: datetime | None = None,
) -> CloudEvent[PayloadT]:
    if (event_type, version) not in _REGISTRY:
        raise KeyError(f"no schema registered for {event_type} v{version}")
    model: Any = _ENVELOPES.get(type(data))
    if model is None:
        # Parametrising the generic costs as much as validating the event; do it once per type.
        model = CloudEvent[type(data)]  # type: ignore[misc]
        _ENVELOPES[type(data)] = model
    event: CloudEvent[PayloadT] = model(
        id=event_id or str(uuid.uuid4()),
        source=source,
        type=event_type,
        time=time or datetime.now(UTC),
        subject=subject,
        dataschema=schema_urn(event_type, version),
        data=data,
    )
    return event


def parse_event(raw: bytes | str | dict[str, Any]) -> CloudEvent[BaseModel]:
    """Parse and validate an event. Raises EventParseError with a readable reason."""
    try:
        doc = raw if isinstance(raw, dict) else json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise EventParseError(f"not JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise EventParseError("an event must be a JSON object")
    event_type = doc.get("type")
    if not isinstance(event_type, str):
        raise EventParseError("missing attribute 'type'")
    version = _version_of(doc.get("dataschema"))
    model = _REGISTRY.get((event_type, version))
    if model is None:
        raise EventParseError(f"unknown event type {event_type!r} v{version}")
    try:
        return CloudEvent[model].model_validate(doc)  # type: ignore[valid-type]
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        raise EventParseError(f"invalid {event_type} v{version}: {problems}") from exc
