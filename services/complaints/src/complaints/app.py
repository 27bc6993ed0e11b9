"""Complaints app factory: the one place its dependencies are wired."""

from __future__ import annotations

from fastapi import FastAPI

from complaints.api import router
from complaints.settings import ComplaintsSettings, get_settings
from odr_shared.crypto import DataCipher
from odr_shared.db import make_engine, make_session_factory
from odr_shared.logs import configure_logging
from odr_shared.web import create_service_app


def create_app(settings: ComplaintsSettings | None = None) -> FastAPI:
    settings = settings or get_settings()
    configure_logging("complaints", settings.log_level, settings.log_format)
    engine = make_engine(settings.database_url)
    app = create_service_app(
        service="complaints",
        title="ODR complaints",
        settings=settings,
        engine=engine,
        description="Orders by code, one-time codes, cases and deadlines, the consumer portal.",
    )
    app.state.sessions = make_session_factory(engine)
    app.state.cipher = DataCipher(settings.data_encryption_key)
    app.include_router(router)
    return app
