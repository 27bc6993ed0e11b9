"""Notifications app factory: the one place its dependencies are wired."""

from __future__ import annotations

from fastapi import FastAPI

from notifications import bootstrap
from notifications.api import router
from notifications.settings import NotificationsSettings, get_settings
from odr_shared.db import API_CHECKPOINT_PAGES, make_engine, make_session_factory
from odr_shared.logs import configure_logging
from odr_shared.privacy import subject_keys_router
from odr_shared.privacy.keys import subject_key_material
from odr_shared.web import create_service_app


def create_app(settings: NotificationsSettings | None = None) -> FastAPI:
    settings = settings or get_settings()
    configure_logging("notifications", settings.log_level, settings.log_format)
    engine = make_engine(
        settings.database_url,
        checkpoint_pages=API_CHECKPOINT_PAGES,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
    )
    app = create_service_app(
        service="notifications",
        title="ODR notifications",
        settings=settings,
        engine=engine,
        description="Templates, preferences, SMS and email deliveries.",
    )
    app.state.sessions = make_session_factory(engine)
    app.state.cipher = bootstrap.cipher(settings)
    app.state.subject_key = subject_key_material(settings)
    store = bootstrap.key_store(settings)
    app.include_router(router)
    # The keys of what notifications seals, for the other services (role `service`).
    app.include_router(subject_keys_router(store, app.state.sessions))
    return app
