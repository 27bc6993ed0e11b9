"""HTTP client for complaints' case and privacy APIs, forwarding the caller's own JWT."""

from __future__ import annotations

import logging
from typing import Any

import httpx

log = logging.getLogger(__name__)


class ComplaintsUnavailable(Exception):
    """Complaints did not answer, or failed (5xx): worth another route or a later try."""


class ComplaintsRefused(Exception):
    """Complaints answered 4xx: the request itself is wrong; no fallback should bypass that."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(f"complaints answered {status}: {detail}")
        self.status = status


class ComplaintsClient:
    def __init__(self, base_url: str, timeout_s: float = 5.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s

    def _headers(self, token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}", "Accept": "application/json"}

    def get_case(self, case_id: str, token: str) -> dict[str, Any]:
        try:
            r = httpx.get(
                f"{self.base_url}/v1/cases/{case_id}",
                headers=self._headers(token),
                timeout=self.timeout_s,
            )
        except httpx.HTTPError as exc:
            raise ComplaintsUnavailable(f"complaints unreachable: {type(exc).__name__}") from exc
        if r.status_code != 200:
            raise ComplaintsUnavailable(f"complaints answered {r.status_code}")
        body = r.json()
        if not isinstance(body, dict):
            raise ComplaintsUnavailable("complaints answered an unexpected document")
        return body

    def privacy_requests(
        self, token: str, status: str | None = None, limit: int = 200
    ) -> list[dict[str, Any]]:
        """The operator's data-subject request queue (admin token), the earliest due first."""
        params: dict[str, str | int] = {"limit": limit}
        if status is not None:
            params["status"] = status
        try:
            r = httpx.get(
                f"{self.base_url}/v1/privacy/requests",
                headers=self._headers(token),
                params=params,
                timeout=self.timeout_s,
            )
        except httpx.HTTPError as exc:
            raise ComplaintsUnavailable(f"complaints unreachable: {type(exc).__name__}") from exc
        if r.status_code != 200:
            raise ComplaintsUnavailable(f"complaints answered {r.status_code}")
        try:
            body = r.json()
        except ValueError as exc:
            raise ComplaintsUnavailable("complaints answered an unexpected document") from exc
        if not isinstance(body, list):
            raise ComplaintsUnavailable("complaints answered an unexpected document")
        return [item for item in body if isinstance(item, dict)]

    def post_message(self, case_id: str, token: str, body: str) -> str | None:
        """Post the neutral's message to the case; returns complaints' message id."""
        try:
            r = httpx.post(
                f"{self.base_url}/v1/cases/{case_id}/messages",
                headers=self._headers(token),
                json={"text": body},
                timeout=self.timeout_s,
            )
        except httpx.HTTPError as exc:
            raise ComplaintsUnavailable(f"complaints unreachable: {type(exc).__name__}") from exc
        if 400 <= r.status_code < 500:
            try:
                detail = str(r.json().get("detail", ""))
            except ValueError:
                detail = r.text[:200]
            raise ComplaintsRefused(r.status_code, detail)
        if r.status_code not in (200, 201, 202):
            raise ComplaintsUnavailable(f"complaints answered {r.status_code}")
        try:
            doc = r.json()
        except ValueError:
            return None
        return str(doc.get("message_id") or doc.get("id") or "") or None
