"""Command-line entry points shared by the services: serve the API, migrate the database."""

from __future__ import annotations

import argparse
import os

import uvicorn


def serve_api(factory: str, default_port: int, service: str) -> None:
    parser = argparse.ArgumentParser(prog=f"{service}-api", description=f"Serve the {service} API")
    parser.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", default_port)))
    parser.add_argument("--workers", type=int, default=int(os.environ.get("WEB_CONCURRENCY", 1)))
    args = parser.parse_args()
    uvicorn.run(
        factory,
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        log_config=None,
        access_log=False,
        proxy_headers=True,
    )
