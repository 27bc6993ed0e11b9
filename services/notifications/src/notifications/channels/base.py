"""The one interface every channel adapter implements: send(message) -> ProviderResult."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

Outcome = Literal["sent", "retry", "failed"]


@dataclass(frozen=True)
class Message:
    """A rendered message for one recipient; `reference` is stable across retries."""

    to: str
    text: str
    reference: str
    subject: str | None = None
    html: str | None = None
    language: str = "vi"


@dataclass(frozen=True)
class ProviderResult:
    """sent; retry (transient: timeout, 429, 5xx, 4xx SMTP); failed (the provider refused)."""

    outcome: Outcome
    provider_id: str | None = None
    error: str | None = None

    @classmethod
    def sent(cls, provider_id: str | None = None) -> ProviderResult:
        return cls("sent", provider_id=provider_id)

    @classmethod
    def retry(cls, error: str) -> ProviderResult:
        return cls("retry", error=error)

    @classmethod
    def failed(cls, error: str) -> ProviderResult:
        return cls("failed", error=error)


class Channel(Protocol):
    name: str

    def send(self, message: Message) -> ProviderResult:
        """Hand the message to the provider; never raises for a provider's answer."""
        ...
