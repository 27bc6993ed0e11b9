"""Gateway app factory: the one place its dependencies are wired."""

from __future__ import annotations

from fastapi import FastAPI

from gateway.api import router
from gateway.ingest import Ingestor
from gateway.intake import Intake
from gateway.settings import GatewaySettings, get_settings
from odr_shared.crypto import DataCipher
from odr_shared.db import API_CHECKPOINT_PAGES, make_engine, make_session_factory
from odr_shared.logs import configure_logging
from odr_shared.privacy import KeyStore, subject_keys_router
from odr_shared.web import create_service_app


def create_app(settings: GatewaySettings | None = None) -> FastAPI:
    settings = settings or get_settings()
    configure_logging("gateway", settings.log_level, settings.log_format)
    engine = make_engine(
        settings.database_url,
        checkpoint_pages=API_CHECKPOINT_PAGES,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
    )
    app = create_service_app(
        service="gateway",
        title="ODR marketplace gateway",
        settings=settings,
        engine=engine,
        description="Platforms, signed order-event webhooks in, case webhooks out.",
    )
    app.state.sessions = make_session_factory(engine)
    app.state.cipher = DataCipher(settings.data_encryption_key)
    app.state.keys = KeyStore.from_settings(settings)
    app.state.ingestor = Ingestor(
        app.state.sessions, app.state.cipher, settings, keys=app.state.keys
    )
    app.state.intake = Intake(app.state.ingestor.store, settings.store_concurrency)
    app.include_router(router)
    # Other services fetch the keys of the subjects whose order events they open (role service).
    app.include_router(subject_keys_router(app.state.keys, app.state.sessions))
    return app
