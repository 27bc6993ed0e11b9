"""problem+json answers, readiness, and the database-backed rate limiter."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import BaseModel, Field
from sqlalchemy import MetaData

from odr_shared.auth import AdminParty
from odr_shared.db import make_engine, make_session_factory
from odr_shared.problems import Problem
from odr_shared.ratelimit import Limit, hit, rate_limit_table
from odr_shared.settings import ServiceSettings
from odr_shared.testing import TansuBroker, free_port
from odr_shared.web import create_service_app


class Body(BaseModel):
    amount: int = Field(ge=0)


def make_app(db_url: str, bootstrap: str) -> FastAPI:
    settings = ServiceSettings(kafka_bootstrap_servers=bootstrap)  # type: ignore[call-arg]
    app = create_service_app(service="t", title="t", settings=settings, engine=make_engine(db_url))

    @app.post("/things")
    def create(body: Body, _admin: AdminParty) -> dict[str, int]:
        return {"amount": body.amount}

    @app.get("/teapot")
    def teapot() -> None:
        raise Problem(409, "Conflict", "already open", reference="KN-2026-000001")

    return app


@pytest.fixture
def client(tmp_path, broker: TansuBroker) -> Iterator[TestClient]:  # type: ignore[no-untyped-def]
    with TestClient(make_app(f"sqlite:///{tmp_path}/w.db", broker.bootstrap)) as c:
        yield c


def test_validation_error_is_problem_json_naming_the_field(client: TestClient) -> None:
    from datetime import timedelta

    token = client.app.state.tokens.issue(role="admin", subject="a", ttl=timedelta(minutes=1))  # type: ignore[attr-defined]
    r = client.post("/things", json={"amount": -5}, headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 422
    assert r.headers["content-type"] == "application/problem+json"
    body = r.json()
    assert body["errors"][0]["field"] == "amount"
    assert "greater than or equal to 0" in body["detail"]


def test_missing_or_bad_token_is_401_problem(client: TestClient) -> None:
    r = client.post("/things", json={"amount": 1})
    assert r.status_code == 401
    assert r.headers["www-authenticate"].startswith("Bearer")
    r = client.post("/things", json={"amount": 1}, headers={"Authorization": "Bearer x.y.z"})
    assert r.status_code == 401
    assert r.json()["title"] == "Unauthorized"


def test_domain_problem_and_unknown_route(client: TestClient) -> None:
    r = client.get("/teapot")
    assert r.status_code == 409
    assert r.json()["reference"] == "KN-2026-000001"
    r = client.get("/nowhere")
    assert r.status_code == 404
    assert r.headers["content-type"] == "application/problem+json"


def test_readiness_follows_the_broker(tmp_path, broker: TansuBroker) -> None:  # type: ignore[no-untyped-def]
    with TestClient(make_app(f"sqlite:///{tmp_path}/r.db", broker.bootstrap)) as c:
        assert c.get("/readyz").status_code == 200
    with TestClient(make_app(f"sqlite:///{tmp_path}/r.db", f"127.0.0.1:{free_port()}")) as c:
        r = c.get("/readyz")
        assert r.status_code == 503
        assert r.json()["checks"] == {"database": "ok", "broker": "unreachable"}
    assert isinstance(httpx, object)


def test_rate_limit_window_and_retry_after(database_url: str) -> None:
    md = MetaData()
    rate_limit_table(md)
    engine = make_engine(database_url)
    md.create_all(engine)
    factory = make_session_factory(engine)
    limit = Limit("otp-phone", max_hits=3, window_s=60)
    now = 1_800_000_010.0
    for _ in range(3):
        with factory() as s, s.begin():
            hit(s, limit, "+84912345678", now=now)
    with pytest.raises(Problem) as err, factory() as s, s.begin():
        hit(s, limit, "+84912345678", now=now + 5)
    assert err.value.status == 429
    assert err.value.headers["Retry-After"] == "45"
    # Another key, and the next window, are free again.
    with factory() as s, s.begin():
        hit(s, limit, "+84987654321", now=now)
        hit(s, limit, "+84912345678", now=now + 60)
    engine.dispose()


def _sample(text: str, name: str, **labels: str) -> float:
    """The value of one Prometheus sample in an exposition, 0 when absent."""
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        if line.startswith(name + "{"):
            got = line[len(name) + 1 : line.rindex("} ")]
            if ",".join(sorted(got.split(","))) == want:
                return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_metrics_count_requests_by_route_template_and_status(tmp_path) -> None:  # type: ignore[no-untyped-def]
    settings = ServiceSettings(kafka_bootstrap_servers=f"127.0.0.1:{free_port()}")  # type: ignore[call-arg]
    app = create_service_app(
        service="metrics-t",
        title="t",
        settings=settings,
        engine=make_engine(f"sqlite:///{tmp_path}/m.db"),
    )

    @app.get("/items/{item_id}")
    def item(item_id: int) -> dict[str, int]:
        return {"id": item_id}

    @app.get("/boom")
    def boom() -> None:
        raise RuntimeError("handler crashed")

    with TestClient(app, raise_server_exceptions=False) as c:
        assert c.get("/items/1").status_code == 200
        assert c.get("/items/2").status_code == 200
        assert c.get("/items/x").status_code == 422
        assert c.get("/nowhere/at/all").status_code == 404
        assert c.get("/boom").status_code == 500
        text = c.get("/metrics").text
    total = "odr_http_requests_total"
    base = {"service": "metrics-t", "method": "GET"}
    # One series per template, not per concrete path.
    assert _sample(text, total, **base, route="/items/{item_id}", status="200") == 2
    assert _sample(text, total, **base, route="/items/{item_id}", status="422") == 1
    assert _sample(text, total, **base, route="unmatched", status="404") == 1
    assert _sample(text, total, **base, route="/boom", status="500") == 1
    assert "/items/1" not in text
    count = "odr_http_request_duration_seconds_count"
    assert _sample(text, count, **base, route="/items/{item_id}") == 3
