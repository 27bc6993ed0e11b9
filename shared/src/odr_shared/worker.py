"""Run a service's worker: its Kafka consumer and its outbox relay, until SIGTERM or Ctrl-C."""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Callable, Sequence
from types import FrameType
from typing import Protocol

from odr_shared.health import HealthServer
from odr_shared.kafka import EventConsumer, broker_reachable, ensure_topics
from odr_shared.outbox import OutboxRelay

log = logging.getLogger(__name__)

_FALSE = {"0", "false", "no", "off"}


class Stoppable(Protocol):
    """A worker part: `run` until `stop` (a relay, a consumer, a purge, a periodic job)."""

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
    health_port: int | None = None,
) -> None:
    """Run each part in a thread; one that dies stops the worker (its supervisor restarts it).

    With ``health_port`` (default: the ``WORKER_HEALTH_PORT`` environment variable; unset means
    none) the worker answers Kubernetes probes: ``/healthz`` while every part is running,
    ``/readyz`` when, in addition, the broker is reachable.

    The worker creates its missing ``topics`` unless ``KAFKA_ENSURE_TOPICS`` is false, with
    ``KAFKA_TOPIC_PARTITIONS`` partitions (12) and ``KAFKA_TOPIC_REPLICATION`` replicas (1): where
    topics are managed resources (Strimzi KafkaTopic), a worker that wins the race against the
    topic operator would otherwise create them with these local numbers.
    """
    if health_port is None and os.environ.get("WORKER_HEALTH_PORT"):
        health_port = int(os.environ["WORKER_HEALTH_PORT"])
    create_topics = os.environ.get("KAFKA_ENSURE_TOPICS", "true").strip().lower() not in _FALSE
    if topics and create_topics:
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

    def _alive() -> bool:
        return not stop.is_set() and all(t.is_alive() for t in threads)

    # Bound before the parts start, so a taken port fails the worker before it does any work.
    health = None
    if health_port is not None:
        health = HealthServer(
            "0.0.0.0",
            health_port,
            name=name,
            alive=_alive,
            ready=lambda: _alive() and broker_reachable(bootstrap_servers),
        )
    for t in threads:
        t.start()
    if health is not None:
        health.start()
    log.info("worker started", extra={"worker": name, "parts": [t.name for t in threads]})
    while not stop.wait(0.5):
        pass
    if health is not None:
        health.stop()
    for p in parts:
        p.stop()
    for t in threads:
        t.join(timeout=10)
    if on_stop:
        on_stop()
    if failed:
        raise SystemExit(1)
