"""SMS over HTTP: POST {to, text, sender, reference} as JSON to a configurable provider URL."""

from __future__ import annotations

import httpx

from notifications.channels.base import Message, ProviderResult

RETRYABLE_STATUSES = frozenset({408, 425, 429})


class HttpSmsChannel:
    """2xx sent (the provider's id kept); 408/429/5xx, timeouts, refused connections: retry;
    any other 4xx: failed. The delivery's reference goes as Idempotency-Key, so a retry after
    a lost answer is not charged and delivered twice by a provider that honours it."""

    name = "sms"

    def __init__(
        self,
        url: str,
        *,
        api_key: str = "",
        sender: str = "ODR",
        timeout_s: float = 10.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.url = url
        self.sender = sender
        headers = {"user-agent": "odr-notifications/0.1"}
        if api_key:
            headers["authorization"] = f"Bearer {api_key}"
        self._client = httpx.Client(
            timeout=httpx.Timeout(timeout_s, connect=min(timeout_s, 5.0)),
            headers=headers,
            transport=transport,
        )

    def send(self, message: Message) -> ProviderResult:
        body = {
            "to": message.to,
            "text": message.text,
            "sender": self.sender,
            "reference": message.reference,
        }
        try:
            response = self._client.post(
                self.url, json=body, headers={"idempotency-key": message.reference}
            )
        except httpx.TimeoutException as exc:
            return ProviderResult.retry(f"timeout: {type(exc).__name__}")
        except httpx.TransportError as exc:
            return ProviderResult.retry(f"transport error: {type(exc).__name__}: {exc}")
        status = response.status_code
        if 200 <= status < 300:
            return ProviderResult.sent(_provider_id(response))
        detail = f"provider answered {status}: {response.text[:200]}"
        if status in RETRYABLE_STATUSES or status >= 500:
            return ProviderResult.retry(detail)
        return ProviderResult.failed(detail)

    def close(self) -> None:
        self._client.close()


def _provider_id(response: httpx.Response) -> str | None:
    try:
        doc = response.json()
    except ValueError:
        return None
    if isinstance(doc, dict):
        for key in ("id", "message_id", "messageId", "sid"):
            if doc.get(key):
                return str(doc[key])[:200]
    return None
