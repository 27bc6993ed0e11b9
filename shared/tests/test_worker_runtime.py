"""Worker runtime options: probes (WORKER_HEALTH_PORT), managed topics, the topics' shape."""

from __future__ import annotations

import threading
import uuid

import httpx
import pytest
from kafka import KafkaAdminClient, KafkaConsumer
from pydantic import ValidationError

from odr_shared.settings import TopicSettings
from odr_shared.testing import TansuBroker, free_port, wait_http
from odr_shared.worker import Stoppable, run_worker


class Part(Stoppable):
    """A worker part that runs until told to finish, fail, or stop."""

    def __init__(self) -> None:
        self._finish = threading.Event()
        self._fail = False

    def run(self) -> None:
        self._finish.wait()
        if self._fail:
            raise RuntimeError("part failed")

    def stop(self) -> None:
        self._finish.set()

    def finish(self, *, fail: bool = False) -> None:
        self._fail = fail
        self._finish.set()


def start_worker(
    parts: list[Part], bootstrap: str, port: int
) -> tuple[threading.Thread, list[BaseException]]:
    ended: list[BaseException] = []

    def target() -> None:
        try:
            run_worker(
                "probe-test",
                parts,
                bootstrap_servers=bootstrap,
                install_signals=False,
                health_port=port,
            )
        except BaseException as exc:  # noqa: BLE001 - inspected by the test
            ended.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread, ended


def stop_with_failure(part: Part, thread: threading.Thread, ended: list[BaseException]) -> None:
    part.finish(fail=True)
    thread.join(timeout=30)
    assert not thread.is_alive()
    # A failing part ends the worker with exit status 1, for its supervisor to restart it.
    assert len(ended) == 1
    assert isinstance(ended[0], SystemExit)
    assert ended[0].code == 1


@pytest.mark.kafka
def test_worker_is_alive_while_its_parts_run_and_ready_with_a_broker(broker: TansuBroker):
    first, second = Part(), Part()
    port = free_port()
    thread, ended = start_worker([first, second], broker.bootstrap, port)
    wait_http(f"http://127.0.0.1:{port}/healthz", expect=200)
    assert httpx.get(f"http://127.0.0.1:{port}/readyz").status_code == 200

    # A part that ends without an error (a consumer loop that returned) makes the worker dead
    # to the kubelet, which restarts it.
    second.finish()
    wait_http(f"http://127.0.0.1:{port}/healthz", expect=503)
    assert httpx.get(f"http://127.0.0.1:{port}/readyz").status_code == 503

    stop_with_failure(first, thread, ended)
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{port}/healthz")


def test_worker_is_not_ready_without_a_broker():
    part = Part()
    port = free_port()
    thread, ended = start_worker([part], f"127.0.0.1:{free_port()}", port)
    wait_http(f"http://127.0.0.1:{port}/healthz", expect=200)
    answer = httpx.get(f"http://127.0.0.1:{port}/readyz")
    assert answer.status_code == 503
    assert answer.json()["status"] == "failing"
    assert httpx.get(f"http://127.0.0.1:{port}/metrics").status_code == 404
    stop_with_failure(part, thread, ended)


@pytest.mark.kafka
@pytest.mark.parametrize("ensure", ["true", "false"])
def test_worker_creates_its_topics_unless_they_are_managed(broker, monkeypatch, ensure):
    # KAFKA_ENSURE_TOPICS=false (Kubernetes: topics are KafkaTopic resources) leaves them alone.
    topic = f"probe-{uuid.uuid4().hex[:8]}.events"
    monkeypatch.setenv("KAFKA_ENSURE_TOPICS", ensure)
    part = Part()
    part.finish(fail=True)
    with pytest.raises(SystemExit):
        run_worker(
            "topics-test",
            [part],
            bootstrap_servers=broker.bootstrap,
            topics=[topic],
            install_signals=False,
        )
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    try:
        existing = set(admin.list_topics())
    finally:
        admin.close()
    created = {topic, f"{topic}.dlq"} <= existing
    assert created == (ensure == "true")


def partition_count(bootstrap: str, topic: str) -> int:
    reader = KafkaConsumer(bootstrap_servers=bootstrap)
    try:
        return len(reader.partitions_for_topic(topic) or ())
    finally:
        reader.close()


@pytest.mark.kafka
@pytest.mark.parametrize(("configured", "expected"), [(None, 12), ("5", 5)])
def test_worker_creates_its_topics_with_the_configured_partitions(
    broker, monkeypatch, configured, expected
):
    # KAFKA_TOPIC_PARTITIONS is how far a group scales out; dead letters keep one partition.
    topic = f"probe-{uuid.uuid4().hex[:8]}.events"
    monkeypatch.delenv("KAFKA_ENSURE_TOPICS", raising=False)
    if configured is None:
        monkeypatch.delenv("KAFKA_TOPIC_PARTITIONS", raising=False)
    else:
        monkeypatch.setenv("KAFKA_TOPIC_PARTITIONS", configured)
    part = Part()
    part.finish(fail=True)
    with pytest.raises(SystemExit):
        run_worker(
            "topics-test",
            [part],
            bootstrap_servers=broker.bootstrap,
            topics=[topic],
            install_signals=False,
        )
    assert partition_count(broker.bootstrap, topic) == expected
    assert partition_count(broker.bootstrap, f"{topic}.dlq") == 1


def test_a_partition_count_that_is_not_a_positive_number_is_refused(monkeypatch):
    monkeypatch.setenv("KAFKA_TOPIC_PARTITIONS", "0")
    with pytest.raises(ValidationError, match="KAFKA_TOPIC_PARTITIONS"):
        TopicSettings()
