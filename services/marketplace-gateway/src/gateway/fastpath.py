"""The hot path for single webhooks: verified, mapped and stored without FastAPI's routing layers.

A marketplace at peak sends thousands of single-event webhooks a second. FastAPI's layers
(routing over every route, dependency solving, request and response objects, the exception
middleware) cost a webhook as much CPU as the verification, mapping and storing it exists for.
This ASGI middleware serves exactly one case itself: `POST /v1/webhooks/{platform_id}` with a
declared body size under the limit, when the delivery verifies and maps. It reads the body and
hands it as a `RawDelivery` to the group writer, which verifies, maps and stores it with its
group (in the store process when there is one, so this event loop only speaks HTTP), and
answers what the route answers. Everything else (an unknown platform, a bad signature or body
that must be recorded, oversize or chunked bodies, the batch endpoint, every other route) goes
on to the documented FastAPI route with the body handed over unchanged, so refusals keep a
single code path.
"""

from __future__ import annotations

import re
from types import SimpleNamespace

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.api import ack_response
from gateway.ingest import Ingestor, NotPrepared, RawDelivery
from odr_shared.problems import Problem, answer_problem, answer_unexpected

WEBHOOK_ROUTE = "/v1/webhooks/{platform_id}"
_WEBHOOK_PATH = re.compile(r"/v1/webhooks/([^/]+)")
# What the metrics middleware reads of a routed request's scope["route"]: its template. (The
# route object itself sits inside FastAPI's included routers, built lazily.)
_ROUTE_LABEL = SimpleNamespace(path=WEBHOOK_ROUTE)


class WebhookFastPath:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        match = _WEBHOOK_PATH.fullmatch(scope["path"])
        if match is None:
            await self.app(scope, receive, send)
            return
        state = scope["app"].state
        ingestor: Ingestor = state.ingestor
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        declared = headers.get("content-length", "")
        if not declared.isdigit() or int(declared) > state.settings.max_body_bytes:
            # Chunked or oversize: the route reads it under the limit and records the refusal.
            await self.app(scope, receive, send)
            return
        writer = ingestor.writer
        # The group writer waits a moment for deliveries being read, to store them together.
        writer.expect()
        submitted = False
        try:
            body, complete = await _read(receive, int(declared))
            if complete:
                # Verified and mapped by the group writer, with its group: in the store
                # process when there is one, off this event loop.
                stored = writer.submit_async(
                    RawDelivery(match.group(1), headers, body), expected=True
                )
                submitted = True
        finally:
            if not submitted:
                writer.unexpect()
        if not submitted:
            await self.app(scope, _replaying(body, complete, receive), send)
            return
        # The metrics middleware labels this request with the route's template, as if routed.
        scope["route"] = _ROUTE_LABEL
        try:
            receipt = await stored
        except NotPrepared:
            # Refused, or an unknown platform: the route answers and records it.
            del scope["route"]
            await self.app(scope, _replaying(body, True, receive), send)
            return
        except Problem as exc:
            await answer_problem(exc, scope["path"])(scope, receive, send)
            return
        except Exception:  # noqa: BLE001 - logged by answer_unexpected
            # Served ahead of FastAPI's error middleware: answer as the app's handler would.
            await answer_unexpected(scope["path"])(scope, receive, send)
            return
        await ack_response(receipt.http_status, receipt.as_json())(scope, receive, send)


async def _read(receive: Receive, declared: int) -> tuple[bytes, bool]:
    """The body as sent; `complete` is False if the client left or sent more than it declared."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b"".join(chunks), False
        chunk = message.get("body", b"")
        size += len(chunk)
        chunks.append(chunk)
        if size > declared:
            return b"".join(chunks), False
        if not message.get("more_body", False):
            return b"".join(chunks), True


def _replaying(body: bytes, complete: bool, receive: Receive) -> Receive:
    """A receive that hands the route the body already read, then the rest of the stream."""
    handed = False

    async def replay() -> Message:
        nonlocal handed
        if not handed:
            handed = True
            return {"type": "http.request", "body": body, "more_body": not complete}
        return await receive()

    return replay
