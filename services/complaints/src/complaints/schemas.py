"""Request and response models of the complaints API."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from complaints.domain import CATEGORIES, DESIRED_OUTCOMES, OFFER_KINDS

Category = Literal[CATEGORIES]  # type: ignore[valid-type]
DesiredOutcome = Literal[DESIRED_OUTCOMES]  # type: ignore[valid-type]
OfferKind = Literal[OFFER_KINDS]  # type: ignore[valid-type]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class OtpRequest(_In):
    order_code: str = Field(min_length=1, max_length=100)
    phone: str = Field(min_length=6, max_length=20)
    language: Literal["vi", "en"] = Field("vi", description="language of the SMS")


class OtpVerify(_In):
    order_code: str = Field(min_length=1, max_length=100)
    phone: str = Field(min_length=6, max_length=20)
    code: str = Field(pattern=r"^\d{6}$")


class TokenOut(BaseModel):
    access_token: str
    token_type: str = "bearer"  # noqa: S105 - the OAuth token type, not a secret
    expires_in: int


class CaseIn(_In):
    order_code: str = Field(min_length=1, max_length=100)
    category: Category
    description: str = Field(min_length=10, max_length=5000)
    desired_outcome: DesiredOutcome
    claimed_amount: int | None = Field(None, ge=0, description="integer đồng")
    language: Literal["vi", "en"] = "vi"


class CaseCreated(BaseModel):
    case_id: str
    reference: str
    status: str
    merchant_response_due_at: str


class MessageIn(_In):
    text: str = Field(min_length=1, max_length=5000)


class OfferIn(_In):
    kind: OfferKind
    amount: int | None = Field(None, ge=0, description="integer đồng")
    terms: str | None = Field(None, max_length=2000)


class ReasonIn(_In):
    reason: str | None = Field(None, max_length=2000)


class EscalationIn(ReasonIn):
    consent_share_with_neutral: bool = Field(
        False,
        description="the consumer agrees that the case file, evidence included, is shared with "
        "the neutral mediator or arbitrator; recorded on the case (docs/privacy.md)",
    )
