"""Console entry points: complaints-api, complaints-worker, complaints-migrate, complaints-purge."""

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


def purge() -> None:
    """`complaints-purge [--dry-run]`: apply the retention rules now (docs/privacy.md)."""
    from odr_shared.retention import purge_main

    purge_main("complaints")
