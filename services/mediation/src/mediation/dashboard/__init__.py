"""The neutrals' dashboard: server-rendered pages in Vietnamese and English."""

from mediation.dashboard.routes import router

__all__ = ["router"]
