"""Complaints app factory: the one place its dependencies are wired."""

from __future__ import annotations

from fastapi import FastAPI

from complaints.api import router
from complaints.deps import build_deps
from complaints.portal import mount_portal
from complaints.privacy.api import router as privacy_router
from complaints.privacy.metrics import watch
from complaints.settings import ComplaintsSettings, get_settings
from odr_shared.db import API_CHECKPOINT_PAGES, make_engine
from odr_shared.logs import configure_logging
from odr_shared.privacy import subject_keys_router
from odr_shared.web import create_service_app


def create_app(settings: ComplaintsSettings | None = None) -> FastAPI:
    settings = settings or get_settings()
    configure_logging("complaints", settings.log_level, settings.log_format)
    engine = make_engine(
        settings.database_url,
        checkpoint_pages=API_CHECKPOINT_PAGES,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
    )
    app = create_service_app(
        service="complaints",
        title="ODR complaints",
        settings=settings,
        engine=engine,
        description="Orders by code, one-time codes, cases and deadlines, the consumer portal.",
    )
    deps = build_deps(settings, engine)
    app.state.deps = deps
    app.state.sessions = deps.sessions
    app.state.cipher = deps.cipher
    app.include_router(router)
    app.include_router(privacy_router)
    # Other services fetch the keys of what complaints sealed here (service token only).
    app.include_router(subject_keys_router(deps.keys, deps.sessions))
    watch(deps.sessions)
    mount_portal(app, deps)
    return app
