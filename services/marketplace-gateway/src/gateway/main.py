"""Console entry points: gateway-api, gateway-worker, gateway-migrate, gateway-purge."""

from __future__ import annotations

from gateway import SERVICE_ROOT


def api() -> None:
    from odr_shared.runner import serve_api

    serve_api("gateway.app:create_app", 8001, "gateway")


def worker() -> None:
    from gateway.worker import main

    main()


def migrate() -> None:
    from gateway.settings import get_settings
    from odr_shared.migrate import upgrade

    upgrade(SERVICE_ROOT, get_settings().database_url)


def purge() -> None:
    """`gateway-purge [--dry-run]`: apply the retention rules now (docs/privacy.md)."""
    from odr_shared.retention import purge_main

    purge_main("gateway")
