"""The baseline for ingest: a bare FastAPI endpoint that only parses the same JSON body."""

from __future__ import annotations

import json

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

app = FastAPI()


@app.post("/v1/webhooks/{platform_id}")
async def parse_only(platform_id: str, request: Request) -> JSONResponse:
    body = await request.body()
    doc = json.loads(body)
    return JSONResponse({"ok": bool(doc)}, status_code=202)
