"""A local SMS provider for development: accepts POST /sms and saves each message as JSON.

It speaks the same small JSON protocol as the HTTP SMS adapter ({"to", "text", "sender"}), so
`make run` exercises the real adapter over real HTTP; nothing is "pretend sent".
"""

from __future__ import annotations

import argparse
import contextlib
import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


def _seen_references(path: Path) -> dict[str, str]:
    seen: dict[str, str] = {}
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            with contextlib.suppress(ValueError, KeyError, TypeError):
                doc = json.loads(line)
                if doc.get("reference"):
                    seen[str(doc["reference"])] = str(doc["id"])
    return seen


def make_handler(folder: Path) -> type[BaseHTTPRequestHandler]:
    folder.mkdir(parents=True, exist_ok=True)
    lock = threading.Lock()
    # Like a real provider honouring Idempotency-Key: a retry after a lost answer is one SMS.
    seen = _seen_references(folder / "messages.jsonl")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            if self.path.rstrip("/") != "/sms":
                self.send_error(404)
                return
            length = int(self.headers.get("content-length") or 0)
            try:
                doc = json.loads(self.rfile.read(length))
                to, text = str(doc["to"]), str(doc["text"])
            except (ValueError, KeyError, TypeError):
                self._json(400, {"error": "invalid_request", "detail": "need to and text"})
                return
            reference = self.headers.get("idempotency-key") or doc.get("reference")
            with lock:
                if reference and reference in seen:
                    self._json(200, {"id": seen[reference], "status": "duplicate"})
                    return
                message_id = uuid.uuid4().hex
                record = {
                    "id": message_id,
                    "to": to,
                    "text": text,
                    "sender": doc.get("sender"),
                    "reference": reference,
                    "received_at": time.time(),
                }
                with (folder / "messages.jsonl").open("a", encoding="utf-8") as f:
                    f.write(json.dumps(record, ensure_ascii=False) + "\n")
                if reference:
                    seen[str(reference)] = message_id
            self._json(200, {"id": message_id, "status": "accepted"})

        def _json(self, status: int, body: dict[str, str]) -> None:
            raw = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        def log_message(self, format: str, *args: object) -> None:
            return  # message bodies carry phone numbers: never logged

    return Handler


def main() -> None:
    parser = argparse.ArgumentParser(description="Local SMS sink")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=1026)
    parser.add_argument("--dir", default="var/sms")
    args = parser.parse_args()
    server = ThreadingHTTPServer((args.host, args.port), make_handler(Path(args.dir)))
    print(f"sms sink on http://{args.host}:{args.port}/sms, saving to {args.dir}", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()


if __name__ == "__main__":
    main()
