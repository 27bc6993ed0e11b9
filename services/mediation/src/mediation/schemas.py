"""Request and response models of mediation's HTTP API."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from mediation.domain import OUTCOMES

_LANG = re.compile(r"^[a-zA-Z]{2,3}(-[a-zA-Z0-9]{2,8})?$")
_HHMM = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")


class Conflicts(BaseModel):
    platform_ids: list[str] = Field(default_factory=list, max_length=500)
    seller_ids: list[str] = Field(default_factory=list, max_length=5000)


class NeutralIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    email: str = Field(min_length=3, max_length=254, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
    phone: str = Field(min_length=6, max_length=20)
    password: str = Field(min_length=12, max_length=200, description="at least 12 characters")
    roles: list[Literal["mediator", "arbitrator"]] = Field(min_length=1, max_length=2)
    categories: list[str] = Field(min_length=1, max_length=50)
    languages: list[str] = Field(min_length=1, max_length=20)
    regions: list[str] = Field(default_factory=list, max_length=70)
    max_active_cases: int = Field(10, ge=1, le=1000)
    conflicts: Conflicts = Field(default_factory=Conflicts)
    language: str = Field("vi", description="the language the platform writes to them in")

    @field_validator("languages")
    @classmethod
    def _codes(cls, v: list[str]) -> list[str]:
        for code in v:
            if not _LANG.match(code):
                raise ValueError(f"{code!r} is not a language code (vi, en, hmn, km, tay...)")
        return [c.lower() for c in v]


class WorkingHours(BaseModel):
    start: str = Field(pattern=_HHMM.pattern, description="HH:MM, Asia/Ho_Chi_Minh")
    end: str = Field(pattern=_HHMM.pattern)


class NeutralPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    on_leave: bool | None = None
    working_hours: WorkingHours | None = None
    clear_working_hours: bool = False
    max_active_cases: int | None = Field(None, ge=1, le=1000)
    categories: list[str] | None = None
    languages: list[str] | None = None
    regions: list[str] | None = None
    conflicts: Conflicts | None = None


class NeutralCreated(BaseModel):
    neutral_id: str


class LoginIn(BaseModel):
    email: str = Field(min_length=3, max_length=254)
    password: str = Field(min_length=1, max_length=200)


class TokenOut(BaseModel):
    access_token: str
    token_type: str = "bearer"  # noqa: S105 - the OAuth token type, not a secret
    expires_in: int
    neutral_id: str
    roles: list[str]


class ProposalIn(BaseModel):
    outcome: Literal[OUTCOMES]  # type: ignore[valid-type]
    amount: int | None = Field(None, ge=0, description="integer đồng")
    terms: str = Field(min_length=1, max_length=5000)


class EscalateIn(BaseModel):
    reason: str = Field(min_length=1, max_length=2000)


class DecisionIn(BaseModel):
    outcome: Literal[OUTCOMES]  # type: ignore[valid-type]
    amount: int | None = Field(None, ge=0, description="integer đồng")
    reasons: str = Field(min_length=10, max_length=20000)


class MessageIn(BaseModel):
    body: str = Field(min_length=1, max_length=5000)


class PrivacyExportIn(BaseModel):
    """What complaints asks for one subject's access request."""

    subject_id: str = Field(min_length=1, max_length=64)
    order_ids: list[str] = Field(default_factory=list, max_length=10_000)
    case_ids: list[str] = Field(default_factory=list, max_length=10_000)


class PrivacyExportOut(BaseModel):
    service: Literal["mediation"] = "mediation"
    subject_id: str
    generated_at: str
    records: dict[str, list[dict[str, object]]]
