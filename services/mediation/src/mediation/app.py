"""Mediation app factory: the one place its dependencies are wired."""

from __future__ import annotations

from fastapi import FastAPI

from mediation import privacy
from mediation.api import router
from mediation.complaints_client import ComplaintsClient
from mediation.dashboard import router as dashboard_router
from mediation.settings import MediationSettings, get_settings
from odr_shared.db import API_CHECKPOINT_PAGES, make_engine, make_session_factory
from odr_shared.logs import configure_logging
from odr_shared.privacy import subject_keys_router
from odr_shared.web import create_service_app


def create_app(settings: MediationSettings | None = None) -> FastAPI:
    settings = settings or get_settings()
    configure_logging("mediation", settings.log_level, settings.log_format)
    engine = make_engine(
        settings.database_url,
        checkpoint_pages=API_CHECKPOINT_PAGES,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
    )
    app = create_service_app(
        service="mediation",
        title="ODR mediation",
        settings=settings,
        engine=engine,
        description="Neutrals, routing, proposals, arbitration, the neutrals' dashboard.",
    )
    app.state.sessions = make_session_factory(engine)
    app.state.keys = privacy.install(app.state.sessions, settings)
    app.state.complaints = ComplaintsClient(settings.complaints_url)
    app.include_router(router)
    app.include_router(subject_keys_router(app.state.keys, app.state.sessions))
    app.include_router(dashboard_router)
    return app
