"""Gateway HTTP routes: thin; parsing and shaping only."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Form, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field, HttpUrl
from sqlalchemy import select

from gateway.models import ApiClient
from gateway.service import (
    PlatformKind,
    hash_client_secret,
    receive_standard_webhook,
    register_platform,
)
from gateway.settings import GatewaySettings
from odr_shared.auth import AdminParty
from odr_shared.problems import Problem

router = APIRouter()


class PlatformIn(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    kind: PlatformKind
    signing_secret: str | None = Field(None, min_length=8, max_length=500)
    app_key: str | None = Field(None, max_length=200)
    push_url: HttpUrl | None = None
    outbound_url: HttpUrl | None = None


class PlatformCreated(BaseModel):
    platform_id: str
    webhook_secret: str
    client_id: str
    client_secret: str


@router.post("/v1/platforms", status_code=201, response_model=PlatformCreated, tags=["platforms"])
def create_platform(body: PlatformIn, request: Request, _admin: AdminParty) -> PlatformCreated:
    with request.app.state.sessions() as session, session.begin():
        created = register_platform(
            session,
            request.app.state.cipher,
            name=body.name,
            kind=body.kind,
            signing_secret=body.signing_secret,
            app_key=body.app_key,
            push_url=str(body.push_url) if body.push_url else None,
            outbound_url=str(body.outbound_url) if body.outbound_url else None,
        )
    return PlatformCreated(**created.__dict__)


class TokenOut(BaseModel):
    access_token: str
    token_type: Literal["bearer"] = "bearer"  # noqa: S105 - the OAuth2 token type, not a secret
    expires_in: int


@router.post("/v1/oauth/token", response_model=TokenOut, tags=["platforms"])
def oauth_token(
    request: Request,
    grant_type: Annotated[str, Form()],
    client_id: Annotated[str, Form()],
    client_secret: Annotated[str, Form()],
) -> TokenOut:
    if grant_type != "client_credentials":
        raise Problem(400, "Bad Request", "grant_type: only client_credentials is supported")
    import hmac

    with request.app.state.sessions() as session:
        client = session.execute(
            select(ApiClient).where(ApiClient.client_id == client_id)
        ).scalar_one_or_none()
        expected = client.secret_hash if client else hash_client_secret("no-such-client")
        ok = hmac.compare_digest(expected, hash_client_secret(client_secret))
        if client is None or not ok or client.revoked_at is not None:
            raise Problem(401, "Unauthorized", "invalid client credentials")
        platform_id = client.platform_id
    settings: GatewaySettings = request.app.state.settings
    ttl = settings.platform_token_ttl_s
    token = request.app.state.tokens.issue(
        role="platform",
        subject=client_id,
        platform_id=platform_id,
        ttl=timedelta(seconds=ttl),
    )
    return TokenOut(access_token=token, expires_in=ttl)


@router.post(
    "/v1/webhooks/{platform_id}",
    status_code=202,
    tags=["webhooks"],
    responses={401: {"description": "bad or stale signature"}, 422: {"description": "bad body"}},
)
async def webhook(platform_id: str, request: Request) -> Response:
    settings: GatewaySettings = request.app.state.settings
    body = await request.body()
    if len(body) > settings.max_body_bytes:
        raise Problem(413, "Content Too Large", f"body exceeds {settings.max_body_bytes} bytes")
    headers = {k.lower(): v for k, v in request.headers.items()}
    from starlette.concurrency import run_in_threadpool

    receipt = await run_in_threadpool(
        receive_standard_webhook,
        request.app.state.sessions,
        request.app.state.cipher,
        platform_id,
        headers,
        body,
        settings.webhook_tolerance_s,
    )
    payload: dict[str, Any] = {
        "delivery_id": receipt.delivery_id,
        "duplicate": receipt.duplicate,
        "event_id": receipt.event_id,
    }
    return JSONResponse(payload, status_code=receipt.http_status)
