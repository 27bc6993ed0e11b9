"""The single-webhook hot path: the route's answers, and everything else handed to the route."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from odr_shared.testing import sample_order, standard_webhook_headers


def _body(order_code: str) -> bytes:
    doc = {
        "type": "order.updated",
        "timestamp": "2026-11-20T03:00:00Z",
        "data": sample_order(order_code),
    }
    return json.dumps(doc, ensure_ascii=False).encode()


def _code() -> str:
    return f"FP{uuid.uuid4().hex[:8].upper()}"


def _post(client: Any, platform: dict[str, Any], body: bytes, **kw: Any) -> Any:
    headers = standard_webhook_headers(platform["webhook_secret"], body, **kw)
    return client.post(f"/v1/webhooks/{platform['platform_id']}", content=body, headers=headers)


def _accepted_webhooks(metrics: str) -> float:
    """The process-wide count of 202 answers labelled with the webhook route's template."""
    series = (
        'odr_http_requests_total{method="POST",route="/v1/webhooks/{platform_id}",'
        'service="gateway",status="202"} '
    )
    for line in metrics.splitlines():
        if line.startswith(series):
            return float(line[len(series) :])
    return 0.0


@pytest.fixture
def route_calls(client: Any, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Platform ids the FastAPI route prepared (the fast path prepares nothing itself: the
    group writer does, through `prepare_unrecorded`)."""
    ingestor = client.app.state.ingestor
    calls: list[str] = []

    def counting(real: Any) -> Any:
        def prepare(platform_id: str, *args: Any, **kwargs: Any) -> Any:
            calls.append(platform_id)
            return real(platform_id, *args, **kwargs)

        return prepare

    # The route always tries this first (then `prepare` in a thread when it gives up).
    monkeypatch.setattr(ingestor, "prepare_cached", counting(ingestor.prepare_cached))
    return calls


def test_valid_deliveries_are_served_by_the_fast_path_with_the_routes_answer(
    gw: Any, route_calls: list[str]
) -> None:
    p = gw.register()
    before = _accepted_webhooks(gw.client.get("/metrics").text)
    # Not cached in this process yet: the group writer reads the platform itself.
    first = _post(gw.client, p, _body(_code()))
    body = _body(_code())
    second = _post(gw.client, p, body, msg_id="msg_fast_1")
    again = _post(gw.client, p, body, msg_id="msg_fast_1")
    assert route_calls == [], "a valid delivery went through the route"
    # The route's own answer, for a chunked body (which the fast path leaves to it).
    routed_body = _body(_code())
    headers = standard_webhook_headers(p["webhook_secret"], routed_body)
    routed = gw.client.post(
        f"/v1/webhooks/{p['platform_id']}",
        content=iter([routed_body[:30], routed_body[30:]]),
        headers=headers,
    )
    assert route_calls == [p["platform_id"]]
    for r in (first, second, again, routed):
        assert r.status_code == 202, r.text
        assert r.headers["content-type"] == "application/json"
    assert set(second.json()) == set(routed.json())
    assert second.json()["status"] == routed.json()["status"] == "accepted"
    assert second.json()["duplicate"] is False
    assert again.json()["duplicate"] is True
    assert again.json()["delivery_id"] == second.json()["delivery_id"]
    events = gw.outbox()
    assert len(events) == 3
    assert events[1]["event"]["id"] == second.json()["event_id"]
    assert events[1]["event"]["data"]["delivery_id"] == str(second.json()["delivery_id"])
    metrics = gw.client.get("/metrics").text
    # All four under the route's template, the three the fast path served included.
    assert _accepted_webhooks(metrics) - before == 4
    assert f"/v1/webhooks/{p['platform_id']}" not in metrics
    # Counted by kind and outcome, whoever stored them.
    assert 'gateway_inbound_deliveries_total{kind="standard",status="accepted"}' in metrics


def test_refusals_reach_the_route_with_the_body_intact_and_are_kept(
    gw: Any, route_calls: list[str]
) -> None:
    p = gw.register()
    assert _post(gw.client, p, _body(_code())).status_code == 202
    body = _body(_code())
    forged = standard_webhook_headers("whsec_" + "A" * 44, body)
    r = gw.client.post(f"/v1/webhooks/{p['platform_id']}", content=body, headers=forged)
    assert r.status_code == 401
    assert r.headers["content-type"] == "application/problem+json"
    malformed = b'{"type": "order.updated", "data": {"order_code": 5'
    r = _post(gw.client, p, malformed)
    assert r.status_code in (400, 422)
    assert r.headers["content-type"] == "application/problem+json"
    # The group writer refused both without recording anything; the route recorded them.
    assert route_calls == [p["platform_id"]] * 2
    rejected = gw.inbound(p["platform_id"], status="rejected")
    # The route stored exactly the bytes the fast path had read before handing them over.
    assert sorted(d["body_size"] for d in rejected) == sorted([len(body), len(malformed)])
    assert len(gw.outbox()) == 1


def test_chunked_and_oversize_bodies_are_left_to_the_route(gw: Any, make_client: Any) -> None:
    p = gw.register()
    assert _post(gw.client, p, _body(_code())).status_code == 202
    body = _body(_code())
    headers = standard_webhook_headers(p["webhook_secret"], body)

    def chunks() -> Iterator[bytes]:
        yield body[:40]
        yield body[40:]

    r = gw.client.post(f"/v1/webhooks/{p['platform_id']}", content=chunks(), headers=headers)
    assert r.status_code == 202, r.text
    assert r.json()["status"] == "accepted"
    small = make_client(max_body_bytes=64)
    r = _post(small, p, _body(_code()))
    assert r.status_code == 413
    assert r.headers["content-type"] == "application/problem+json"


def test_a_rate_limited_delivery_gets_the_same_problem_from_the_fast_path(
    gw: Any, make_client: Any
) -> None:
    p = gw.register()
    limited = make_client(webhook_rate_limit=2)
    answers = [_post(limited, p, _body(_code())) for _ in range(3)]
    assert [a.status_code for a in answers] == [202, 202, 429]
    problem = answers[2].json()
    assert answers[2].headers["content-type"] == "application/problem+json"
    assert int(answers[2].headers["retry-after"]) >= 1
    assert problem["status"] == 429
    assert problem["instance"] == f"/v1/webhooks/{p['platform_id']}"
    assert "rate limit webhooks" in problem["detail"]


def test_an_unexpected_error_on_the_fast_path_is_a_500_problem(
    gw: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Served ahead of FastAPI's error middleware, the fast path answers as the app would."""
    p = gw.register()
    ingestor = gw.client.app.state.ingestor

    def broken(group: Any) -> None:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(ingestor, "commit_group", broken)
    r = _post(gw.client, p, _body(_code()))
    assert r.status_code == 500
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["detail"] == "an unexpected error occurred"
    assert "disk on fire" not in r.text
    metrics = gw.client.get("/metrics").text
    print([m for m in metrics.splitlines() if "requests_total{" in m])
    assert 'route="/v1/webhooks/{platform_id}",service="gateway",status="500"' in metrics
