"""Console entry points: complaints-api, complaints-worker, complaints-migrate."""

from __future__ import annotations

from complaints import SERVICE_ROOT


def api() -> None:
    from odr_shared.runner import serve_api

    serve_api("complaints.app:create_app", 8002, "complaints")


def worker() -> None:
    from complaints.worker import main

    main()


def migrate() -> None:
    from complaints.settings import get_settings
    from odr_shared.migrate import upgrade

    upgrade(SERVICE_ROOT, get_settings().database_url)
