"""Prometheus metrics shared by every service, and the HTTP middleware that records them."""

from __future__ import annotations

import time
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

HTTP_REQUESTS = Counter(
    "odr_http_requests_total", "HTTP requests", ["service", "method", "route", "status"]
)
HTTP_LATENCY = Histogram(
    "odr_http_request_duration_seconds",
    "HTTP request latency",
    ["service", "method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
EVENTS_CONSUMED = Counter(
    "odr_events_consumed_total", "Events handled by consumers", ["group", "type", "outcome"]
)
EVENTS_DEAD_LETTERED = Counter(
    "odr_events_dead_lettered_total", "Messages sent to a dead-letter topic", ["group", "topic"]
)
OUTBOX_PUBLISHED = Counter(
    "odr_outbox_published_total", "Outbox rows published to Kafka", ["relay", "topic"]
)
# A process leasing a slice of a rate-limit window (odr_shared.ratelimit.LeasedLimiter): "granted"
# per slice, "exhausted" when the window had nothing left to lease.
RATE_LIMIT_LEASES = Counter(
    "odr_rate_limit_leases_total", "Rate-limit slices leased by this process", ["limit", "outcome"]
)
# Per relay instance: the slots of a service add up to 64 when its relays have settled; a relay
# stuck at 0 is waiting for a lock (SQLite) or has lost its database connection.
OUTBOX_SLOTS_OWNED = Gauge(
    "odr_outbox_slots_owned", "Outbox slots this relay publishes", ["relay", "instance"]
)


class MetricsMiddleware:
    """Counts HTTP requests and their latency per route template (`/v1/cases/{case_id}`).

    Plain ASGI rather than `BaseHTTPMiddleware`, which runs every request through an extra task
    and memory streams (a fifth of the gateway's per-webhook CPU in the ingest profile), and the
    template is read from the route the router already matched (`scope["route"]`) instead of
    matching every route a second time.
    """

    def __init__(self, app: ASGIApp, service: str) -> None:
        self.app = app
        self.service = service
        self._children: dict[tuple[str, str, str], tuple[Any, Any]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_with_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_with_status)
        finally:
            route = scope.get("route")
            template = str(getattr(route, "path", None) or "unmatched")
            self._observe(scope["method"], template, status, time.perf_counter() - start)

    def _observe(self, method: str, template: str, status: int, seconds: float) -> None:
        key = (method, template, str(status))
        children = self._children.get(key)
        if children is None:
            # labels() takes a lock and builds a key each time; the children never change.
            children = (
                HTTP_REQUESTS.labels(self.service, method, template, key[2]),
                HTTP_LATENCY.labels(self.service, method, template),
            )
            self._children[key] = children
        children[0].inc()
        children[1].observe(seconds)


def metrics_response() -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


RETENTION_PURGED = Counter(
    "odr_retention_purged_total",
    "Rows deleted or emptied by the retention purge, by rule",
    ["rule"],
)
