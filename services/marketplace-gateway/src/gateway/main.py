"""Console entry points: gateway-api, gateway-worker, gateway-migrate."""

from __future__ import annotations

from gateway import SERVICE_ROOT


def api() -> None:
    import os
    import sys

    from odr_shared.runner import serve_api

    # The event loop and the group writer share the GIL: with the default 5 ms switch interval
    # every SQLite call in the writer (which releases the GIL) waits up to 5 ms to get it back
    # while the loop parses requests. A shorter interval keeps that hand-off short.
    sys.setswitchinterval(float(os.environ.get("GATEWAY_GIL_SWITCH_INTERVAL_S", "0.0005")))

    serve_api("gateway.app:create_app", 8001, "gateway")


def worker() -> None:
    from gateway.worker import main

    main()


def migrate() -> None:
    from gateway.settings import get_settings
    from odr_shared.migrate import upgrade

    upgrade(SERVICE_ROOT, get_settings().database_url)
