"""A worker's /healthz and /readyz for Kubernetes probes, on a port of its own (stdlib only)."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

log = logging.getLogger(__name__)

Check = Callable[[], bool]


class HealthServer:
    """Answers GET /healthz (``alive``) and GET /readyz (``ready``): 200 when true, else 503."""

    def __init__(self, host: str, port: int, *, name: str, alive: Check, ready: Check) -> None:
        checks = {"/healthz": alive, "/readyz": ready}

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                check = checks.get(self.path.split("?", 1)[0])
                if check is None:
                    self._answer(404, {"status": "not found"})
                    return
                try:
                    ok = check()
                except Exception:  # a failing check means "no", never a crash
                    log.exception("health check failed", extra={"worker": name})
                    ok = False
                self._answer(200 if ok else 503, {"status": "ok" if ok else "failing"})

            def _answer(self, status: int, body: dict[str, str]) -> None:
                payload = json.dumps({**body, "service": name}).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: object) -> None:
                # Probes every few seconds would drown the worker's own logs.
                return

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name=f"{name}-health", daemon=True
        )

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> HealthServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
