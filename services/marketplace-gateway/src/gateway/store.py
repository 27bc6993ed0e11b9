"""The group writer's transactions in a child process, so storing does not share the API's GIL.

Profiled under load, the API process spent about half of its CPU in the group writer's thread
(two Fernet encryptions per delivery, the CloudEvent, SQLAlchemy, SQLite) and the other half
on the event loop (HTTP, signature, mapping). One process runs one of them at a time, so the
API was bound at one core while the machine had another mostly idle. With the store process,
the event loop reads the requests and sends each turn's deliveries here as bytes; this
process verifies, maps and stores them with the very same `Ingestor.commit_group`: one
transaction per group, each answer only after its commit.

One store process per API process (uvicorn worker), started with the app. If it dies, the
group in flight is answered 503 (the marketplace retries; a delivery committed before the
crash answers as a duplicate), and the next group starts a new one.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import pickle
import signal
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING, Any

from gateway.ingest import InProcessStore, NotPrepared, fail_unsettled
from gateway.metrics import INBOUND_DELIVERIES
from gateway.settings import GatewaySettings
from odr_shared.problems import Problem

if TYPE_CHECKING:
    from gateway.ingest import Group, Item

log = logging.getLogger(__name__)

_READY = b"ready"
_STOP = b"stop"
# What a group's items come back as: (True, Receipt) or (False, the exception to raise).
_Outcome = tuple[bool, Any]


class StoreUnavailable(Problem):
    """The store process is gone or not answering: the delivery may be retried."""

    def __init__(self, detail: str) -> None:
        super().__init__(
            503,
            "Service Unavailable",
            detail,
            headers={"Retry-After": "1"},
        )


class StoreFailed(RuntimeError):
    """An unexpected error inside the store process, by name and message (its traceback is
    logged there); the request fails as it would have in-process."""


class StoreProcess:
    """A `GroupStore` that runs `Ingestor.commit_group` in a child process.

    Up to `depth` groups are in flight: while the child stores one, the next is already in
    its pipe, and a third gathers from the requests arriving meanwhile. Event loops hand
    their groups over themselves (`send_now`, never blocking); the group writer's thread
    (sync callers, and whatever arrives while the child is not up) uses `wait_for_room` and
    `commit`, which starts the child when needed. A reader thread settles each group's
    futures in order as the child answers.
    """

    def __init__(
        self, settings: GatewaySettings, *, depth: int = 2, start_timeout_s: float = 60.0
    ) -> None:
        self.settings = settings
        self.depth = depth
        self.start_timeout_s = start_timeout_s
        self._mp = multiprocessing.get_context("spawn")
        self._start_lock = threading.Lock()
        self._channel: _Channel | None = None
        self._failed_at = 0.0

    @property
    def pid(self) -> int | None:
        channel = self._channel
        return channel.proc.pid if channel is not None else None

    def start(self) -> None:
        self._ensure_started()

    def start_in_background(self) -> None:
        """Start without blocking the caller (app startup); the first group waits if needed."""
        threading.Thread(
            target=self._start_quietly, name="gateway-store-start", daemon=True
        ).start()

    def _start_quietly(self) -> None:
        try:
            self.start()
        except Exception as exc:  # noqa: BLE001 - the first group retries and answers 503
            log.warning("store process did not start", extra={"error": str(exc)})

    def stop(self) -> None:
        with self._start_lock:
            channel, self._channel = self._channel, None
        if channel is not None:
            channel.close(graceful=True)

    # -- GroupStore --------------------------------------------------------------------------

    sends_from_loop = True

    def send_now(
        self, group: Group, settle: Callable[[Group], None], on_room: Callable[[], object]
    ) -> str:
        """For an event loop: send if the child is up and has room, never wait or spawn."""
        channel = self._channel
        if channel is None or not channel.usable():
            return "unavailable"
        return channel.try_send(group, settle, depth=self.depth, on_room=on_room)

    def wait_for_room(self) -> None:
        channel = self._channel
        if channel is not None:
            channel.wait_for_room(self.depth)

    def commit(self, group: Group, settle: Callable[[Group], None]) -> None:
        live = [(p, f) for p, f in group if f.set_running_or_notify_cancel()]
        if not live:
            settle(group)
            return
        try:
            self._ensure_started().send(live, group, settle)
        except StoreUnavailable as exc:
            fail_unsettled(live, exc)
            settle(group)

    # -- the child's lifecycle ---------------------------------------------------------------

    def _ensure_started(self) -> _Channel:
        with self._start_lock:
            channel = self._channel
            if channel is not None and channel.usable():
                return channel
            self._channel = None
            if channel is not None:
                channel.close(graceful=False)
            # A store process that cannot start (bad settings, database gone) is retried at
            # most once a second, not once per request.
            if time.monotonic() - self._failed_at < 1.0:
                raise StoreUnavailable("the store process is restarting; retry")
            try:
                channel = self._spawn()
            except StoreUnavailable:
                self._failed_at = time.monotonic()
                raise
            self._channel = channel
            return channel

    def _spawn(self) -> _Channel:
        parent, child = self._mp.Pipe(duplex=True)
        proc = self._mp.Process(
            target=serve, args=(child, self.settings), name="gateway-store", daemon=True
        )
        proc.start()
        child.close()
        try:
            ready = parent.poll(self.start_timeout_s) and parent.recv_bytes() == _READY
        except (EOFError, OSError):
            ready = False
        if not ready:
            proc.kill()
            proc.join(5)
            parent.close()
            log.error("store process failed to start", extra={"exitcode": proc.exitcode})
            raise StoreUnavailable("the store process failed to start; retry")
        log.info("store process started", extra={"pid": proc.pid})
        return _Channel(proc, parent)


class _Channel:
    """One child process, its pipe, and the groups it has not answered yet (oldest first)."""

    def __init__(self, proc: Any, conn: Connection) -> None:
        self.proc = proc
        self.conn = conn
        self._cond = threading.Condition()
        self._in_flight: deque[tuple[Group, Group, Callable[[Group], None]]] = deque()
        self._broken = False
        self._send_lock = threading.Lock()
        # Event loops whose batch waits for room: called (once each) when a group is answered.
        self._on_room: list[Callable[[], object]] = []
        self._reader = threading.Thread(target=self._read, name="gateway-store-reader", daemon=True)
        self._reader.start()

    def usable(self) -> bool:
        with self._cond:
            return not self._broken and self.proc.is_alive()

    def wait_for_room(self, depth: int) -> None:
        with self._cond:
            while len(self._in_flight) >= depth and not self._broken:
                self._cond.wait()

    def send(self, live: Group, group: Group, settle: Callable[[Group], None]) -> None:
        """For the group writer's thread, which waited for room already."""
        with self._send_lock:
            if not self._send_locked(live, group, settle):
                raise StoreUnavailable("the store process is gone; retry")

    def try_send(
        self,
        group: Group,
        settle: Callable[[Group], None],
        *,
        depth: int,
        on_room: Callable[[], object],
    ) -> str:
        """For an event loop: send now if there is room, else call `on_room` when there is."""
        with self._send_lock:
            with self._cond:
                if self._broken:
                    return "unavailable"
                if len(self._in_flight) >= depth:
                    self._on_room.append(on_room)
                    return "wait"
            live = [(p, f) for p, f in group if f.set_running_or_notify_cancel()]
            if live and not self._send_locked(live, group, settle):
                fail_unsettled(live, StoreUnavailable("the store process is gone; retry"))
                settle(group)
            elif not live:
                settle(group)
            return "sent"

    def _send_locked(self, live: Group, group: Group, settle: Callable[[Group], None]) -> bool:
        """False if the channel broke first (nothing was queued or sent)."""
        # One sender at a time (the writer's thread, event loops): the pipe's order is the
        # order of `_in_flight`, which is how answers find their group.
        data = pickle.dumps([p for p, _f in live], protocol=pickle.HIGHEST_PROTOCOL)
        with self._cond:
            if self._broken:
                return False
            # Queued before it is sent: the answer cannot overtake its entry.
            self._in_flight.append((live, group, settle))
        try:
            self.conn.send_bytes(data)
        except (OSError, ValueError) as exc:
            # The reader sees the pipe close too and fails everything in flight, this
            # included; if it has stopped already, that falls to us.
            self.proc.kill()
            if not self._reader.is_alive():
                self._fail_all(exc)
        return True

    def close(self, *, graceful: bool) -> None:
        if graceful:
            deadline = time.monotonic() + 30
            with self._cond:
                while self._in_flight and not self._broken and time.monotonic() < deadline:
                    self._cond.wait(1)
            # Asked, not cut off: closing this end would not wake the reader thread blocked on
            # it, so the child would never read end-of-file.
            with contextlib.suppress(OSError, ValueError):
                self.conn.send_bytes(_STOP)
            self.proc.join(10)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join(5)
        # The child is gone: the reader has read end-of-file, or will now.
        self._reader.join(5)
        self._fail_all(EOFError("channel closed"))  # nothing stays waiting on a closed channel
        self.conn.close()

    def _read(self) -> None:
        while True:
            try:
                # Our own child over a private pipe: nothing else can write to it.
                outcomes: list[_Outcome] = pickle.loads(self.conn.recv_bytes())  # noqa: S301
            except (EOFError, OSError, ValueError) as exc:
                self._fail_all(exc)
                return
            with self._cond:
                if not self._in_flight:
                    unasked = True
                else:
                    unasked = False
                    live, group, settle = self._in_flight.popleft()
                    self._cond.notify_all()
                    waiting, self._on_room = self._on_room, []
            if unasked:  # an answer to nothing: the channel can no longer be trusted
                self.proc.kill()
                self._fail_all(RuntimeError("the store process answered a group never sent"))
                return
            try:
                if len(outcomes) != len(live):
                    fail_unsettled(
                        live, StoreUnavailable("the store process answered out of step; retry")
                    )
                else:
                    for (_item, fut), (ok, value) in zip(live, outcomes, strict=True):
                        if ok:
                            INBOUND_DELIVERIES.labels(value.kind or "unknown", value.status).inc()
                            fut.set_result(value)
                        else:
                            fut.set_exception(value)
                settle(group)
            except Exception:
                log.exception("settling a stored group failed", extra={"size": len(live)})
            _call_each(waiting)

    def _fail_all(self, exc: BaseException) -> None:
        with self._cond:
            self._broken = True
            lost = list(self._in_flight)
            self._in_flight.clear()
            self._cond.notify_all()
            waiting, self._on_room = self._on_room, []
        if lost:
            # Died mid-group: each transaction either committed (a retry answers duplicate) or
            # rolled back (a retry stores it). Either way the sender may retry.
            log.error(
                "store process lost with groups in flight",
                extra={
                    "groups": len(lost),
                    "pid": self.proc.pid,
                    "error": type(exc).__name__,
                },
            )
        for live, group, settle in lost:
            fail_unsettled(
                live, StoreUnavailable("the delivery could not be confirmed as stored; retry")
            )
            settle(group)
        _call_each(waiting)  # the loops' batches go to the group writer's thread, which restarts us


def _call_each(callbacks: list[Callable[[], object]]) -> None:
    for callback in callbacks:
        try:
            callback()
        except RuntimeError:  # that event loop has closed: nobody is waiting on it
            log.info("store answered after an event loop closed")


# -- the child -------------------------------------------------------------------------------


def serve(conn: Connection, settings: GatewaySettings) -> None:
    """The store process: commit each group the parent sends, answer each item's outcome."""
    from gateway.ingest import Ingestor
    from odr_shared.crypto import DataCipher
    from odr_shared.db import API_CHECKPOINT_PAGES, make_engine, make_session_factory
    from odr_shared.logs import configure_logging

    configure_logging("gateway-store", settings.log_level, settings.log_format)
    # Stopping (Ctrl-C on `make run` reaches the whole process group; the API process's exit
    # sends SIGTERM): finish and answer the group in hand, then leave.
    busy = False
    stopping = False

    def _stop(signum: int, frame: Any) -> None:
        nonlocal stopping
        stopping = True
        if not busy:
            raise SystemExit(0)

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    engine = make_engine(
        settings.database_url,
        checkpoint_pages=API_CHECKPOINT_PAGES,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
    )
    ingestor = Ingestor(
        make_session_factory(engine), DataCipher(settings.data_encryption_key), settings
    )
    conn.send_bytes(_READY)
    try:
        while True:
            try:
                data = conn.recv_bytes()
            except (EOFError, OSError):
                return  # the API process died
            if data == _STOP:
                return
            busy = True
            items: list[Item] = pickle.loads(data)  # noqa: S301 - from our parent only
            conn.send_bytes(pickle.dumps(_commit(ingestor, items), pickle.HIGHEST_PROTOCOL))
            busy = False
            if stopping:
                return
    finally:
        engine.dispose()


def _commit(ingestor: Any, items: Sequence[Item]) -> list[_Outcome]:
    group: Group = [(i, Future()) for i in items]
    # Stored here exactly as a writer thread would store it in the API process.
    InProcessStore(ingestor).commit(group, lambda _group: None)
    outcomes: list[_Outcome] = []
    for _p, fut in group:
        failure = fut.exception()
        outcomes.append((True, fut.result()) if failure is None else (False, _portable(failure)))
    return outcomes


def _portable(exc: BaseException) -> BaseException:
    """Problems, and NotPrepared (which sends the request to the route), cross as they are;
    anything else as a StoreFailed naming it (logged here)."""
    if isinstance(exc, Problem | NotPrepared):
        return exc
    log.error(
        "storing a delivery failed",
        extra={
            "error": type(exc).__name__,
            "pid": os.getpid(),
            "trace": "".join(traceback.format_exception(exc))[-4000:],
        },
    )
    # The first line only: a database error's later lines carry the statement's parameters.
    return StoreFailed(
        f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:500]
    )
