"""Run a service's worker: its Kafka consumer and its outbox relay, until SIGTERM or Ctrl-C."""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable, Sequence
from types import FrameType

from odr_shared.kafka import EventConsumer, ensure_topics
from odr_shared.outbox import OutboxRelay

log = logging.getLogger(__name__)


class Stoppable:
    def run(self) -> None: ...
    def stop(self) -> None: ...


def run_worker(
    name: str,
    parts: Sequence[EventConsumer | OutboxRelay | Stoppable],
    *,
    bootstrap_servers: str,
    topics: Sequence[str] = (),
    install_signals: bool = True,
    on_stop: Callable[[], None] | None = None,
) -> None:
    """Run each part in a thread; one that dies stops the worker (its supervisor restarts it)."""
    if topics:
        ensure_topics(bootstrap_servers, topics)
    stop = threading.Event()

    def _handle(signum: int, _frame: FrameType | None) -> None:
        log.info("worker stopping", extra={"worker": name, "signal": signum})
        stop.set()

    if install_signals:
        signal.signal(signal.SIGTERM, _handle)
        signal.signal(signal.SIGINT, _handle)

    failed: list[BaseException] = []

    def _guard(part: EventConsumer | OutboxRelay | Stoppable) -> None:
        try:
            part.run()
        except BaseException as exc:
            log.exception("worker part failed", extra={"worker": name, "part": type(part).__name__})
            failed.append(exc)
            stop.set()

    threads = [
        threading.Thread(target=_guard, args=(p,), name=f"{name}-{type(p).__name__}", daemon=True)
        for p in parts
    ]
    for t in threads:
        t.start()
    log.info("worker started", extra={"worker": name, "parts": [t.name for t in threads]})
    while not stop.wait(0.5):
        pass
    for p in parts:
        p.stop()
    for t in threads:
        t.join(timeout=10)
    if on_stop:
        on_stop()
    if failed:
        raise SystemExit(1)
