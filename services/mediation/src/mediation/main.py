"""Console entry points: mediation-api, mediation-worker, mediation-migrate, mediation-purge."""

from __future__ import annotations

from mediation import SERVICE_ROOT


def api() -> None:
    from odr_shared.runner import serve_api

    serve_api("mediation.app:create_app", 8003, "mediation")


def worker() -> None:
    from mediation.worker import main

    main()


def migrate() -> None:
    from mediation.settings import get_settings
    from odr_shared.migrate import upgrade

    upgrade(SERVICE_ROOT, get_settings().database_url)


def purge() -> None:
    """`mediation-purge [--dry-run]`: apply the retention rules now (docs/privacy.md)."""
    from odr_shared.retention import purge_main

    purge_main("mediation")
