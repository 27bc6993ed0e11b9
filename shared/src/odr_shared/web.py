"""The parts of a FastAPI app every service has: problem+json, metrics, /healthz, /readyz."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import Any

from fastapi import FastAPI
from sqlalchemy.engine import Engine
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from odr_shared.auth import TokenService
from odr_shared.db import ping
from odr_shared.kafka import broker_reachable
from odr_shared.metrics import MetricsMiddleware, metrics_response
from odr_shared.problems import document_problems, install_problem_handlers, problem_response
from odr_shared.settings import ServiceSettings

log = logging.getLogger(__name__)


class ServiceApp(FastAPI):
    """FastAPI whose hot paths, and the metrics middleware around everything, run before
    FastAPI's own layers.

    Per request, FastAPI looks up OpenTelemetry providers (environment reads) and Starlette
    runs its error and exception middlewares: a tenth of the event loop's time for each of the
    gateway's single webhooks. Requests a hot path does not serve go on through all of them.
    A hot path answers its own unexpected errors (the fast path: 500 problem+json).
    """

    front: ASGIApp | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.front is not None and scope["type"] == "http":
            scope["app"] = self  # as Starlette sets it: hot paths read the app's state
            await self.front(scope, receive, send)
        else:
            await super().__call__(scope, receive, send)


def create_service_app(
    *,
    service: str,
    title: str,
    settings: ServiceSettings,
    engine: Engine,
    hot_paths: Sequence[Callable[[ASGIApp], ASGIApp]] = (),
    **kwargs: Any,
) -> FastAPI:
    """The app with problem+json, metrics and health; `hot_paths` are ASGI middlewares that
    serve a route before FastAPI's routing (inside the metrics middleware, so still counted)."""
    app = ServiceApp(title=title, version="0.1.0", **kwargs)
    app.state.settings = settings
    app.state.engine = engine
    app.state.tokens = TokenService(settings)
    install_problem_handlers(app)
    document_problems(app)
    chain: ASGIApp = _Framework(app)
    for hot_path in hot_paths:
        chain = hot_path(chain)
    # Outermost: it also times what a hot path serves.
    app.front = MetricsMiddleware(chain, service=service)

    @app.get("/healthz", tags=["ops"], summary="The process is alive")
    def healthz() -> dict[str, str]:
        return {"status": "ok", "service": service}

    @app.get(
        "/readyz",
        tags=["ops"],
        summary="The database and the broker are reachable",
        responses={503: {"description": "a dependency is unreachable"}},
    )
    async def readyz() -> Response:
        checks: dict[str, str] = {}
        try:
            await asyncio.to_thread(ping, engine)
            checks["database"] = "ok"
        except Exception as exc:  # noqa: BLE001 - any failure means not ready
            log.warning("readiness: database unreachable", extra={"error": str(exc)})
            checks["database"] = "unreachable"
        ok = await asyncio.to_thread(broker_reachable, settings.kafka_bootstrap_servers)
        checks["broker"] = "ok" if ok else "unreachable"
        if all(v == "ok" for v in checks.values()):
            return JSONResponse({"status": "ready", "checks": checks})
        return problem_response(
            503, "Service Unavailable", "a dependency is unreachable", checks=checks
        )

    @app.get("/metrics", tags=["ops"], summary="Prometheus metrics", include_in_schema=False)
    def metrics() -> Response:
        return metrics_response()

    return app


class _Framework:
    """The innermost link of a ServiceApp's front chain: FastAPI itself, every layer."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await FastAPI.__call__(self.app, scope, receive, send)
