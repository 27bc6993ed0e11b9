"""Console entry points: gateway-api, gateway-worker, gateway-migrate."""

from __future__ import annotations

from gateway import SERVICE_ROOT


def api() -> None:
    import os
    import sys

    from gateway.settings import get_settings
    from odr_shared.runner import serve_api

    # With the store process (the default), this process's other threads (the store channel's
    # reader, the group writer for routed requests) only pickle and wait: at Python's 5 ms
    # switch interval they waited up to 5 ms for the event loop to hand over the GIL, so
    # answers and groups crossed late (measured when the writer thread still sent every group:
    # 2 ms gave 15-20% more webhooks/s). Storing in a thread of this process instead, 5 ms was
    # best (bigger groups). The variable overrides.
    interval = os.environ.get("GATEWAY_GIL_SWITCH_INTERVAL_S")
    if interval:
        sys.setswitchinterval(float(interval))
    elif get_settings().store_process:
        sys.setswitchinterval(0.002)

    serve_api("gateway.app:create_app", 8001, "gateway")


def worker() -> None:
    from gateway.worker import main

    main()


def migrate() -> None:
    from gateway.settings import get_settings
    from odr_shared.migrate import upgrade

    upgrade(SERVICE_ROOT, get_settings().database_url)
