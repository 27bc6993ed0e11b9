"""The parts of a FastAPI app every service has: problem+json, metrics, /healthz, /readyz."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from fastapi import FastAPI
from sqlalchemy.engine import Engine
from starlette.responses import JSONResponse, Response

from odr_shared.auth import TokenService
from odr_shared.db import ping
from odr_shared.kafka import broker_reachable
from odr_shared.metrics import MetricsMiddleware, metrics_response
from odr_shared.problems import document_problems, install_problem_handlers, problem_response
from odr_shared.settings import ServiceSettings

log = logging.getLogger(__name__)


def create_service_app(
    *,
    service: str,
    title: str,
    settings: ServiceSettings,
    engine: Engine,
    **kwargs: Any,
) -> FastAPI:
    """The app with problem+json, metrics and health."""
    app = FastAPI(title=title, version="0.1.0", **kwargs)
    app.state.settings = settings
    app.state.engine = engine
    app.state.tokens = TokenService(settings)
    install_problem_handlers(app)
    document_problems(app)
    app.add_middleware(MetricsMiddleware, service=service)

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
