"""BrokerLink: a proxy in front of Tansu that cuts the network to it without a restart."""

from __future__ import annotations

import socket
import time
import uuid
from collections.abc import Iterator

import pytest
from outbox_helpers import drain

from odr_shared.kafka import ensure_topics, make_producer
from odr_shared.testing import BrokerLink, TansuBroker, free_port

pytestmark = pytest.mark.kafka


@pytest.fixture
def linked() -> Iterator[tuple[TansuBroker, BrokerLink]]:
    """A broker of its own whose advertised address is the link's, so every client goes through it."""
    broker_port = free_port()
    with BrokerLink(broker_port) as link, TansuBroker(broker_port, advertised_port=link.port) as b:
        yield b, link


def test_the_broker_advertises_the_link() -> None:
    broker = TansuBroker(port=1234, advertised_port=5678)
    assert broker.bootstrap == "127.0.0.1:5678"
    assert TansuBroker(port=1234).bootstrap == "127.0.0.1:1234"


def test_a_cut_link_drops_and_refuses_connections() -> None:
    echo = socket.socket()
    echo.bind(("127.0.0.1", 0))
    echo.listen()
    with BrokerLink(echo.getsockname()[1]) as link:
        client = socket.create_connection(("127.0.0.1", link.port), timeout=2)
        upstream, _ = echo.accept()
        client.sendall(b"ping")
        assert upstream.recv(4) == b"ping"
        upstream.sendall(b"pong")
        assert client.recv(4) == b"pong"
        link.cut()
        assert client.recv(4) == b""  # the open connection is closed
        late = socket.create_connection(("127.0.0.1", link.port), timeout=2)
        assert late.recv(4) == b""  # a new one is closed as soon as it is accepted
        link.restore()
        again = socket.create_connection(("127.0.0.1", link.port), timeout=2)
        upstream2, _ = echo.accept()
        again.sendall(b"back")
        assert upstream2.recv(4) == b"back"
        for s in (client, upstream, late, again, upstream2):
            s.close()
    echo.close()


def test_produce_through_the_link_fails_while_cut_and_works_after_restore(
    linked: tuple[TansuBroker, BrokerLink],
) -> None:
    broker, link = linked
    topic = f"t.link.{uuid.uuid4().hex[:6]}"
    ensure_topics(broker.bootstrap, [topic], partitions=1)
    producer = make_producer(
        broker.bootstrap, max_block_ms=2000, request_timeout_ms=2000, reconnect_backoff_max_ms=500
    )
    try:
        producer.send(topic, key=b"k", value=b"before").get(timeout=10)
        link.cut()
        with pytest.raises(Exception):  # noqa: B017 - a timeout or a connection error
            producer.send(topic, key=b"k", value=b"during").get(timeout=5)
        link.restore()
        deadline = time.monotonic() + 20
        while True:
            try:
                producer.send(topic, key=b"k", value=b"after").get(timeout=5)
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
    finally:
        producer.close(timeout=2)
    values = [r.value for r in drain(broker.bootstrap, topic, 2, timeout_s=20)]
    assert values[0] == b"before"
    assert values[-1] == b"after"
