"""Console entry points: notifications-api, -worker, -migrate, -purge."""

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


def purge() -> None:
    """`notifications-purge [--dry-run]`: apply the retention rules now (docs/privacy.md)."""
    from odr_shared.retention import purge_main

    purge_main("notifications")
