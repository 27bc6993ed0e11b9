"""The ingest baseline: a bare FastAPI endpoint that parses the body and INSERTs one row per
request into PostgreSQL, committed per request (the server's fsync and synchronous_commit, as
for the gateway). Started by bench/ingest.py with the gateway's uvicorn worker count.

BENCH_BARE_DATABASE_URL names its database; the table is created by the bench beforehand.
"""

from __future__ import annotations

import json
import os

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from sqlalchemy import Engine, text
from starlette.concurrency import run_in_threadpool

from odr_shared.db import make_engine

TABLE_DDL = (
    "CREATE TABLE IF NOT EXISTS bare_deliveries ("
    " id BIGSERIAL PRIMARY KEY,"
    " platform_id TEXT NOT NULL,"
    " webhook_id TEXT NOT NULL UNIQUE,"
    " order_code TEXT NOT NULL,"
    " body TEXT NOT NULL,"
    " received_at TIMESTAMPTZ NOT NULL DEFAULT now())"
)
INSERT = text(
    "INSERT INTO bare_deliveries (platform_id, webhook_id, order_code, body) "
    "VALUES (:platform_id, :webhook_id, :order_code, :body)"
)

app = FastAPI()
_engines: list[Engine] = []


def _engine() -> Engine:
    # The same pool bounds as the services' engines (odr_shared.db defaults), one per worker.
    if not _engines:
        _engines.append(make_engine(os.environ["BENCH_BARE_DATABASE_URL"]))
    return _engines[0]


def _store(row: dict[str, str]) -> None:
    with _engine().begin() as conn:  # one transaction, committed per request
        conn.execute(INSERT, row)


@app.get("/healthz")
async def ready() -> dict[str, str]:
    return {"status": "ok"}


@app.post("/v1/webhooks/{platform_id}")
async def receive(platform_id: str, request: Request) -> JSONResponse:
    body = await request.body()
    doc = json.loads(body)
    row = {
        "platform_id": platform_id,
        "webhook_id": request.headers.get("webhook-id", ""),
        "order_code": str(doc["data"]["order_code"]),
        "body": body.decode(),
    }
    await run_in_threadpool(_store, row)
    return JSONResponse({"accepted": True}, status_code=202)
