"""The consumer portal: server-rendered pages (Vietnamese first, English on request)."""

from __future__ import annotations

from fastapi import FastAPI

from complaints.service import Deps


def mount_portal(app: FastAPI, deps: Deps) -> None:
    return None
