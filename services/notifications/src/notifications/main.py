"""Console entry points: notifications-api, notifications-worker, notifications-migrate."""

from __future__ import annotations

from notifications import SERVICE_ROOT


def api() -> None:
    from odr_shared.runner import serve_api

    serve_api("notifications.app:create_app", 8004, "notifications")


def worker() -> None:
    from notifications.worker import main

    main()


def migrate() -> None:
    from notifications.settings import get_settings
    from odr_shared.migrate import upgrade

    upgrade(SERVICE_ROOT, get_settings().database_url)
