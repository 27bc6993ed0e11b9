"""Writers of one platform do not queue on one row: the rate limit is leased, not locked.

Before, every group transaction added its hits to the platform's `rate_limit_windows` row, so
every writer of one marketplace (threads, processes, pods) waited for the writer before it to
commit. Here four writers, each with its own engine and limiter as separate processes would
have, store webhooks of ONE platform while another connection holds that row locked: they
only finish if nothing on the store path touches it.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
from sqlalchemy import text

from gateway import SERVICE_ROOT
from gateway.ingest import Inbound, Ingestor, Outcome, Receipt
from gateway.platforms import register_platform
from gateway.settings import GatewaySettings
from odr_shared.crypto import DataCipher
from odr_shared.db import make_engine, make_session_factory
from odr_shared.migrate import upgrade
from odr_shared.problems import Problem
from odr_shared.testing import sample_order, standard_order_body, standard_webhook_headers

WRITERS = 4


def _inbound(platform_id: str, secret: str) -> Inbound:
    body = standard_order_body(sample_order(f"SC-{uuid.uuid4().hex[:12]}"))
    headers = standard_webhook_headers(secret, body, msg_id=f"msg_{uuid.uuid4().hex}")
    return Inbound(platform_id, headers, body)


@pytest.fixture
def writers(postgres_url: str) -> Iterator[tuple[list[Ingestor], str, str]]:
    """Four ingestors on one PostgreSQL database, each with its own engine (as processes)."""
    upgrade(SERVICE_ROOT, postgres_url)
    settings = GatewaySettings(
        database_url=postgres_url,
        environment="test",
        log_format="text",
        kafka_bootstrap_servers="127.0.0.1:9",
        # A day's window: a window starting mid-test would need a new lease (a short wait on
        # the row, by design) and the locked-row test could not tell that from queueing.
        webhook_rate_window_s=86_400,
    )
    cipher = DataCipher(settings.data_encryption_key)
    ings = [
        Ingestor(make_session_factory(make_engine(postgres_url)), cipher, settings)
        for _ in range(WRITERS)
    ]
    with ings[0].factory() as s, s.begin():
        created = register_platform(
            s,
            cipher,
            name="Shopee-sized",
            kind="standard",
            signing_secret=None,
            app_key=None,
            push_url=None,
            outbound_url=None,
        )
    yield ings, created.platform_id, created.webhook_secret
    for ing in ings:
        ing.engine.dispose()


def _run_all(work: list[Any], timeout_s: float) -> list[list[Outcome]]:
    results: list[list[Outcome]] = [[] for _ in work]
    errors: list[BaseException] = []

    def run(n: int) -> None:
        try:
            results[n] = work[n]()
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(n,), daemon=True) for n in range(len(work))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout_s)
    stuck = sum(t.is_alive() for t in threads)
    assert stuck == 0, f"{stuck} writers still waiting: they queue on the rate-limit row"
    assert not errors, errors
    return results


def test_writers_of_one_platform_store_while_its_rate_limit_row_is_locked(writers) -> None:
    ings, platform_id, secret = writers
    # Each writer's first group leases its slice of the window.
    for ing in ings:
        first = ing.store([_inbound(platform_id, secret)])[0]
        assert isinstance(first, Receipt)
    holder = ings[0].engine.connect()
    try:
        holder.begin()
        locked = holder.execute(
            text("SELECT hits FROM rate_limit_windows WHERE bucket = :b FOR UPDATE"),
            {"b": f"webhooks:{platform_id}"},
        ).all()
        assert len(locked) == 1, "the window's row exists and is now held"

        def groups(ing: Ingestor) -> Any:
            def run() -> list[Outcome]:
                out: list[Outcome] = []
                for _ in range(5):
                    out += ing.store([_inbound(platform_id, secret) for _ in range(10)])
                return out

            return run

        results = _run_all([groups(ing) for ing in ings], timeout_s=120)
    finally:
        holder.rollback()
        holder.close()
    outcomes = [o for r in results for o in r]
    assert len(outcomes) == WRITERS * 50
    assert all(isinstance(o, Receipt) and o.status == "accepted" for o in outcomes)


def test_the_limit_holds_across_writers_that_lease_it(writers) -> None:
    """Leasing never lets the window take more than its limit, whoever asks."""
    ings, platform_id, secret = writers
    for ing in ings:
        ing.limiter.limit = replace(ing.limiter.limit, max_hits=100)
        ing.limiter.lease = 2

    def burst(ing: Ingestor) -> Any:
        return lambda: ing.store([_inbound(platform_id, secret) for _ in range(40)])

    outcomes = [o for r in _run_all([burst(ing) for ing in ings], 120) for o in r]
    accepted = [o for o in outcomes if isinstance(o, Receipt)]
    refused = [o for o in outcomes if isinstance(o, Problem)]
    assert len(accepted) == 100
    assert len(refused) == WRITERS * 40 - 100
    assert all(p.status == 429 and int(p.headers["Retry-After"]) >= 1 for p in refused)
    with ings[0].factory() as s:
        hits = s.execute(
            text("SELECT hits FROM rate_limit_windows WHERE bucket = :b"),
            {"b": f"webhooks:{platform_id}"},
        ).scalar_one()
    assert hits == 100
