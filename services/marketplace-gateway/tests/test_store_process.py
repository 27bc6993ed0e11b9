"""The store process: groups stored in a child process answer exactly as stored in-process,
and a child that dies loses no delivery and is replaced."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
import uuid
import warnings
from collections.abc import Iterator
from concurrent.futures import Future
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import create_engine, select, text

from gateway.app import create_app
from gateway.ingest import Ingestor, NotPrepared, Pending, RawDelivery, Receipt
from gateway.models import InboundDelivery
from gateway.settings import GatewaySettings
from gateway.store import StoreProcess
from odr_shared.auth import TokenService
from odr_shared.problems import Problem
from odr_shared.testing import sample_order, standard_order_body, standard_webhook_headers

Group = list[tuple[Pending, Future[Receipt]]]


@pytest.fixture
def limited(ingestor: Any) -> GatewaySettings:
    settings: GatewaySettings = ingestor[0].settings
    return settings.model_copy(update={"store_process": True})


@pytest.fixture
def platform(ingestor: Any) -> Any:
    return ingestor


@pytest.fixture
def store(limited: GatewaySettings) -> Iterator[StoreProcess]:
    s = StoreProcess(limited)
    s.start()
    yield s
    s.stop()


def _pending(
    ing: Ingestor, platform_id: str, secret: str, order: dict[str, Any], msg_id: str
) -> Pending:
    body = standard_order_body(order)
    return ing.prepare(platform_id, standard_webhook_headers(secret, body, msg_id=msg_id), body)


def _msg() -> str:
    return f"msg_{uuid.uuid4().hex}"


def test_groups_in_flight_are_answered_in_order_each_with_its_own_receipts(platform, store) -> None:
    ing, platform_id, secret = platform
    # Three deliveries: within the child's limit of 3 per window.
    groups = [
        [_pending(ing, platform_id, secret, sample_order(f"STO-G{g}"), _msg())] for g in range(3)
    ]
    # Three groups sent back to back (depth 2: the third waits for room), settled in order.
    settled: list[int] = []
    done = threading.Event()
    futures: list[list[Future[Receipt]]] = []
    for i, pendings in enumerate(groups):
        group: Group = [(p, Future()) for p in pendings]
        futures.append([f for _p, f in group])

        def settle(g: Group, i: int = i) -> None:
            settled.append(i)
            if len(settled) == len(groups):
                done.set()

        store.wait_for_room()
        store.commit(group, settle)
    assert done.wait(60)
    assert settled == [0, 1, 2]
    receipts = [fs[0].result() for fs in futures]
    assert [r.status for r in receipts] == ["accepted"] * 3
    with ing.factory() as s:
        for i, r in enumerate(receipts):
            row = s.get(InboundDelivery, r.delivery_id)
            assert row is not None
            assert row.order_id == f"{platform_id}:STO-G{i}"


def _hold_write_lock(url: str) -> tuple[Any, Any]:
    """Another connection holds the database's write lock on the deliveries."""
    engine = create_engine(url)
    conn = engine.connect()
    if url.startswith("sqlite"):
        conn.exec_driver_sql("BEGIN IMMEDIATE")
    else:
        conn.execute(text("LOCK TABLE inbound_deliveries IN ACCESS EXCLUSIVE MODE"))
    return engine, conn


def test_a_child_killed_mid_group_answers_503_and_a_retry_stores_once(
    platform, store, limited, store_commit
) -> None:
    ing, platform_id, secret = platform
    msg_id = _msg()
    pending = _pending(ing, platform_id, secret, sample_order("STO-K"), msg_id)
    first_pid = store.pid
    assert first_pid is not None
    engine, conn = _hold_write_lock(limited.database_url)
    try:
        group: Group = [(pending, Future())]
        settled = threading.Event()
        store.commit(group, lambda _g: settled.set())
        time.sleep(0.5)  # the child is now waiting for the lock, the group in its hands
        assert not settled.is_set()
        os.kill(first_pid, signal.SIGKILL)
        assert settled.wait(30)
        with pytest.raises(Problem) as exc:
            group[0][1].result()
        assert exc.value.status == 503
        assert exc.value.headers == {"Retry-After": "1"}
    finally:
        conn.rollback()
        conn.close()
        engine.dispose()
    # The marketplace retries: a new child stores it, exactly once.
    time.sleep(1.0)  # past the restart back-off
    (retried,) = store_commit(store, [pending])
    assert retried.result().status == "accepted"
    assert store.pid not in (None, first_pid)
    (again,) = store_commit(store, [pending])
    assert again.result().duplicate
    with ing.factory() as s:
        keys = s.execute(
            select(InboundDelivery.delivery_key).where(InboundDelivery.delivery_key == msg_id)
        ).scalars()
        assert list(keys) == [msg_id]


def test_a_child_that_died_idle_is_replaced_on_the_next_group(
    platform, store, store_commit
) -> None:
    ing, platform_id, secret = platform
    first_pid = store.pid
    assert first_pid is not None
    os.kill(first_pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while store._channel is not None and store._channel.usable():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    time.sleep(1.0)  # past the restart back-off
    (fut,) = store_commit(
        store, [_pending(ing, platform_id, secret, sample_order("STO-I"), _msg())]
    )
    assert fut.result().status == "accepted"
    assert store.pid not in (None, first_pid)


def test_an_idle_child_leaves_on_sigterm_and_stop_ends_a_live_one(store) -> None:
    channel = store._channel
    assert channel is not None
    os.kill(channel.proc.pid, signal.SIGTERM)
    channel.proc.join(10)
    assert channel.proc.exitcode == 0  # a clean exit, not killed by the signal
    store.stop()
    assert store.pid is None
    store.start()
    pid = store.pid
    assert pid is not None
    store.stop()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_the_app_stores_webhooks_through_its_store_process(limited: GatewaySettings) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from fastapi.testclient import TestClient

    app = create_app(limited.model_copy(update={"webhook_rate_limit": 100}))
    try:
        with TestClient(app) as client:
            token = TokenService(limited).issue(role="admin", subject="t", ttl=timedelta(minutes=5))
            created = client.post(
                "/v1/platforms",
                json={"name": "Via store", "kind": "standard"},
                headers={"Authorization": f"Bearer {token}"},
            ).json()
            body = json.dumps(
                {
                    "type": "order.updated",
                    "timestamp": "2026-11-21T03:00:00Z",
                    "data": sample_order("STO-APP"),
                }
            ).encode()
            url = f"/v1/webhooks/{created['platform_id']}"
            answers = [
                client.post(
                    url,
                    content=body,
                    headers=standard_webhook_headers(created["webhook_secret"], body),
                )
                for _ in range(2)
            ]
            assert [a.status_code for a in answers] == [202, 202]
            assert [a.json()["duplicate"] for a in answers] == [False, True]
            store = app.state.store
            assert isinstance(store, StoreProcess)
            assert store.pid is not None
            assert store.pid != os.getpid()
            with app.state.sessions() as s:
                row = s.get(InboundDelivery, answers[0].json()["delivery_id"])
                assert row is not None
                assert row.status == "accepted"
    finally:
        app.state.store.stop()
        app.state.engine.dispose()


def test_raw_deliveries_are_verified_in_the_child_and_refusals_come_back_untouched(
    platform, store, store_commit
) -> None:
    ing, platform_id, secret = platform
    body = json.dumps(
        {"type": "order.updated", "timestamp": "2026-11-21T03:00:00Z", "data": sample_order("R1")}
    ).encode()
    good = RawDelivery(platform_id, standard_webhook_headers(secret, body), body)
    forged = RawDelivery(
        platform_id, standard_webhook_headers("whsec_" + "A" * 44, body, msg_id=_msg()), body
    )
    nowhere = RawDelivery("plt_missing", standard_webhook_headers(secret, body), body)
    ok, bad, unknown = store_commit(store, [good, forged, nowhere])
    receipt = ok.result()
    assert receipt.status == "accepted"
    assert receipt.kind == "standard"
    for fut in (bad, unknown):
        with pytest.raises(NotPrepared):
            fut.result()
    with ing.factory() as s:
        # Refusals are the route's to record: the child stored only the good one.
        assert list(s.execute(select(InboundDelivery.status)).scalars()) == ["accepted"]
