"""The consumer portal: server-rendered pages (Vietnamese first, English on request)."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from complaints.portal.privacy import router as privacy_router
from complaints.portal.routes import router
from complaints.service import Deps

HERE = Path(__file__).parent


def mount_portal(app: FastAPI, deps: Deps) -> None:
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="portal-static")
    app.include_router(router)
    app.include_router(privacy_router)
