"""Gateway HTTP routes: thin; parsing and shaping only."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Form, Header, Path, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field, HttpUrl
from starlette.concurrency import run_in_threadpool

from gateway import outbound, platforms, privacy
from gateway.adapters.standard import CanonicalOrder
from gateway.domain import PLATFORM_KINDS
from gateway.ingest import Inbound, Ingestor, body_preview, list_inbound
from gateway.intake import Intake
from gateway.models import ApiClient, InboundDelivery, Platform
from gateway.settings import GatewaySettings
from odr_shared.auth import AdminParty, CurrentParty, Party, ServiceParty
from odr_shared.crypto import DataCipher
from odr_shared.problems import Problem, not_found

router = APIRouter()

# Row ids are 64-bit: a larger number is a 422, not a database overflow (a 500).
MAX_ROW_ID = 2**63 - 1
RowId = Annotated[int, Path(ge=1, le=MAX_ROW_ID)]

PlatformKind = Literal["standard", "shopee", "lazada", "tiktok", "shopify", "haravan", "sapo"]
assert set(PlatformKind.__args__) == set(PLATFORM_KINDS)  # type: ignore[attr-defined]


def _settings(request: Request) -> GatewaySettings:
    settings: GatewaySettings = request.app.state.settings
    return settings


def _cipher(request: Request) -> DataCipher:
    cipher: DataCipher = request.app.state.cipher
    return cipher


def _ingestor(request: Request) -> Ingestor:
    ingestor: Ingestor = request.app.state.ingestor
    return ingestor


def _intake(request: Request) -> Intake:
    intake: Intake = request.app.state.intake
    return intake


def _own_platform(party: Party, platform_id: str) -> None:
    """Admins see every platform; a platform only itself (others: 404, never 403)."""
    if party.is_admin:
        return
    if party.role == "platform" and party.platform_id == platform_id:
        return
    raise not_found("platform")


# -- platforms ---------------------------------------------------------------------------------


class PlatformIn(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    kind: PlatformKind
    signing_secret: str | None = Field(None, min_length=8, max_length=500)
    app_key: str | None = Field(None, max_length=200)
    push_url: HttpUrl | None = None
    outbound_url: HttpUrl | None = None
    status_notifications: bool = False


class PlatformCreated(BaseModel):
    platform_id: str
    webhook_secret: str
    client_id: str
    client_secret: str


class PlatformOut(BaseModel):
    platform_id: str
    name: str
    kind: str
    app_key: str | None
    push_url: str | None
    webhook_url: str
    outbound_url: str | None
    outbound_enabled: bool
    outbound_disabled_reason: str | None
    status_notifications: bool
    signing_secret_previous_until: datetime | None
    created_at: datetime


def _platform_out(platform: Platform, settings: GatewaySettings) -> PlatformOut:
    base = settings.public_base_url.rstrip("/")
    return PlatformOut(
        platform_id=platform.id,
        name=platform.name,
        kind=platform.kind,
        app_key=platform.app_key,
        push_url=platform.push_url,
        webhook_url=f"{base}/v1/webhooks/{platform.id}",
        outbound_url=platform.outbound_url,
        outbound_enabled=platform.outbound_enabled,
        outbound_disabled_reason=platform.outbound_disabled_reason,
        status_notifications=platform.status_notifications,
        signing_secret_previous_until=platform.signing_secret_previous_until,
        created_at=platform.created_at,
    )


@router.post("/v1/platforms", status_code=201, response_model=PlatformCreated, tags=["platforms"])
def create_platform(body: PlatformIn, request: Request, _admin: AdminParty) -> PlatformCreated:
    with request.app.state.sessions() as session, session.begin():
        created = platforms.register_platform(
            session,
            _cipher(request),
            name=body.name,
            kind=body.kind,
            signing_secret=body.signing_secret,
            app_key=body.app_key,
            push_url=str(body.push_url) if body.push_url else None,
            outbound_url=str(body.outbound_url) if body.outbound_url else None,
            status_notifications=body.status_notifications,
        )
    return PlatformCreated(**created.__dict__)


@router.get("/v1/platforms", response_model=list[PlatformOut], tags=["platforms"])
def list_platforms(request: Request, _admin: AdminParty) -> list[PlatformOut]:
    with request.app.state.sessions() as session:
        rows = platforms.list_platforms(session)
        return [_platform_out(p, _settings(request)) for p in rows]


@router.get("/v1/platforms/{platform_id}", response_model=PlatformOut, tags=["platforms"])
def get_platform(platform_id: str, request: Request, party: CurrentParty) -> PlatformOut:
    _own_platform(party, platform_id)
    with request.app.state.sessions() as session:
        return _platform_out(platforms.get_platform(session, platform_id), _settings(request))


class PlatformPatch(BaseModel):
    name: str | None = Field(None, min_length=1, max_length=200)
    app_key: str | None = Field(None, max_length=200)
    push_url: HttpUrl | None = None
    outbound_url: HttpUrl | None = None
    outbound_enabled: bool | None = None
    status_notifications: bool | None = None


@router.patch("/v1/platforms/{platform_id}", response_model=PlatformOut, tags=["platforms"])
def patch_platform(
    platform_id: str, body: PlatformPatch, request: Request, _admin: AdminParty
) -> PlatformOut:
    changes: dict[str, object] = {}
    for name in body.model_fields_set:
        value = getattr(body, name)
        changes[name] = str(value) if isinstance(value, HttpUrl) else value
    with request.app.state.sessions() as session, session.begin():
        platform = platforms.update_platform(session, platform_id, changes=changes)
        out = _platform_out(platform, _settings(request))
    _ingestor(request).forget_platform(platform_id)
    return out


class RotateIn(BaseModel):
    signing_secret: str | None = Field(None, min_length=8, max_length=500)
    rotate_webhook_secret: bool = False
    grace_period_s: int | None = Field(None, ge=0, le=30 * 86_400)


class RotateOut(BaseModel):
    platform_id: str
    webhook_secret: str | None
    signing_secret_rotated: bool
    previous_valid_until: datetime


@router.post(
    "/v1/platforms/{platform_id}/rotate-secret", response_model=RotateOut, tags=["platforms"]
)
def rotate_secret(
    platform_id: str, body: RotateIn, request: Request, _admin: AdminParty
) -> RotateOut:
    grace = (
        body.grace_period_s
        if body.grace_period_s is not None
        else _settings(request).secret_rotation_grace_s
    )
    with request.app.state.sessions() as session, session.begin():
        rotation = platforms.rotate_secrets(
            session,
            _cipher(request),
            platform_id,
            signing_secret=body.signing_secret,
            rotate_webhook_secret=body.rotate_webhook_secret,
            grace_s=grace,
        )
    _ingestor(request).forget_platform(platform_id)
    return RotateOut(**rotation.__dict__)


class ClientOut(BaseModel):
    client_id: str
    created_at: datetime
    revoked_at: datetime | None


class ClientCreated(BaseModel):
    client_id: str
    client_secret: str


@router.get(
    "/v1/platforms/{platform_id}/clients", response_model=list[ClientOut], tags=["platforms"]
)
def list_clients(platform_id: str, request: Request, _admin: AdminParty) -> list[ClientOut]:
    with request.app.state.sessions() as session:
        platforms.get_platform(session, platform_id)
        rows: list[ApiClient] = platforms.list_clients(session, platform_id)
        return [
            ClientOut(client_id=c.client_id, created_at=c.created_at, revoked_at=c.revoked_at)
            for c in rows
        ]


@router.post(
    "/v1/platforms/{platform_id}/clients",
    status_code=201,
    response_model=ClientCreated,
    tags=["platforms"],
)
def create_client(platform_id: str, request: Request, _admin: AdminParty) -> ClientCreated:
    """A second client for a zero-downtime client-secret rotation: switch, then revoke the old."""
    with request.app.state.sessions() as session, session.begin():
        platforms.get_platform(session, platform_id)
        client_id, secret = platforms.add_client(session, platform_id)
    return ClientCreated(client_id=client_id, client_secret=secret)


@router.delete(
    "/v1/platforms/{platform_id}/clients/{client_id}", status_code=204, tags=["platforms"]
)
def revoke_client(
    platform_id: str, client_id: str, request: Request, _admin: AdminParty
) -> Response:
    with request.app.state.sessions() as session, session.begin():
        platforms.revoke_client(session, platform_id, client_id)
    return Response(status_code=204)


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
        raise Problem(
            400,
            "Bad Request",
            "grant_type: only client_credentials is supported",
            errors=[{"field": "grant_type", "reason": "only client_credentials is supported"}],
        )
    with request.app.state.sessions() as session:
        platform_id = platforms.authenticate_client(session, client_id, client_secret)
    ttl = _settings(request).platform_token_ttl_s
    token = request.app.state.tokens.issue(
        role="platform", subject=client_id, platform_id=platform_id, ttl=timedelta(seconds=ttl)
    )
    return TokenOut(access_token=token, expires_in=ttl)


# -- inbound -------------------------------------------------------------------------------------


async def _read_body(request: Request, platform_id: str, limit: int) -> bytes:
    """Read at most `limit` bytes; a bigger body is refused (413) without reading it all."""
    declared = request.headers.get("content-length")
    ingestor = _ingestor(request)
    if declared and declared.isdigit() and int(declared) > limit:
        await run_in_threadpool(
            ingestor.reject_oversize, platform_id, request.headers, int(declared), limit
        )
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            await run_in_threadpool(
                ingestor.reject_oversize, platform_id, request.headers, size, limit
            )
        chunks.append(chunk)
    return b"".join(chunks)


def ack_response(receipt_status: int, doc: dict[str, Any]) -> Response:
    """The answer to a stored delivery."""
    if receipt_status == 202:
        return JSONResponse(doc, status_code=202)
    # Marketplaces want a bare 2xx: Shopee an empty body, Lazada and TikTok just fast.
    return Response(status_code=receipt_status)


@router.post(
    "/v1/webhooks/{platform_id}",
    status_code=202,
    tags=["webhooks"],
    responses={
        200: {"description": "stored (marketplace kinds: empty body)"},
        401: {"description": "bad or stale signature"},
        413: {"description": "body too large"},
        422: {"description": "malformed body"},
        429: {"description": "rate limited (Retry-After)"},
    },
)
async def webhook(platform_id: str, request: Request) -> Response:
    settings = _settings(request)
    body = await _read_body(request, platform_id, settings.max_body_bytes)
    headers = {k.lower(): v for k, v in request.headers.items()}
    # Verified, mapped and stored with whatever else is waiting (one commit for the group).
    receipt = await _intake(request).submit(Inbound(platform_id, headers, body))
    return ack_response(receipt.http_status, receipt.as_json())


@router.post(
    "/v1/webhooks/{platform_id}/batch",
    status_code=202,
    tags=["webhooks"],
    responses={401: {"description": "bad or stale signature"}, 422: {"description": "bad body"}},
)
async def webhook_batch(platform_id: str, request: Request) -> Response:
    """Up to 1000 standard order events under one Standard Webhooks signature (backfills)."""
    settings = _settings(request)
    body = await _read_body(request, platform_id, settings.max_batch_body_bytes)
    headers = {k.lower(): v for k, v in request.headers.items()}
    receipt = await _intake(request).submit(Inbound(platform_id, headers, body, batch=True))
    return JSONResponse(receipt.as_json(), status_code=202)


@router.put(
    "/v1/platforms/{platform_id}/orders/{order_code}",
    tags=["orders"],
    summary="Upsert a full ORDER (platform API; fills in what status-only pushes lack)",
)
def put_order(
    platform_id: str,
    order_code: str,
    body: CanonicalOrder,
    request: Request,
    party: CurrentParty,
    idempotency_key: Annotated[str | None, Header(max_length=150)] = None,
) -> JSONResponse:
    _own_platform(party, platform_id)
    if body.order_code != order_code:
        raise Problem(
            422,
            "Unprocessable Content",
            "order_code: must match the path",
            errors=[{"field": "order_code", "reason": "must match the path"}],
        )
    receipt = _ingestor(request).receive_order(platform_id, body, idempotency_key)
    return JSONResponse(receipt.as_json(), status_code=200)


class InboundOut(BaseModel):
    id: int
    source: str
    status: str
    http_status: int
    error: str | None
    delivery_key: str | None
    order_id: str | None
    event_id: str | None
    summary: dict[str, int] | None
    headers: dict[str, str]
    body_size: int
    replay_of: int | None
    received_at: datetime
    body: Any = Field(None, description="the stored body, personal data masked")


def _inbound_out(row: InboundDelivery, cipher: DataCipher, with_body: bool) -> InboundOut:
    return InboundOut(
        id=row.id,
        source=row.source,
        status=row.status,
        http_status=row.http_status,
        error=row.error,
        delivery_key=row.delivery_key,
        order_id=row.order_id,
        event_id=row.event_id,
        summary=row.summary,
        headers=row.headers,
        body_size=row.body_size,
        replay_of=row.replay_of,
        received_at=row.received_at,
        body=body_preview(cipher, row) if with_body else None,
    )


@router.get(
    "/v1/platforms/{platform_id}/inbound-deliveries",
    response_model=list[InboundOut],
    tags=["webhooks"],
)
def inbound_deliveries(
    platform_id: str,
    request: Request,
    party: CurrentParty,
    status: Annotated[
        Literal["accepted", "held", "ignored", "stale", "duplicate", "rejected"] | None, Query()
    ] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    before_id: Annotated[int | None, Query(ge=1, le=MAX_ROW_ID)] = None,
    with_body: bool = False,
) -> list[InboundOut]:
    """The inbound log, newest first: accepted and rejected deliveries (bodies masked)."""
    _own_platform(party, platform_id)
    with request.app.state.sessions() as session:
        platforms.get_platform(session, platform_id)
        rows = list_inbound(session, platform_id, status=status, limit=limit, before_id=before_id)
        return [_inbound_out(r, _cipher(request), with_body) for r in rows]


@router.get(
    "/v1/platforms/{platform_id}/inbound-deliveries/{delivery_id}",
    response_model=InboundOut,
    tags=["webhooks"],
)
def inbound_delivery(
    platform_id: str, delivery_id: RowId, request: Request, party: CurrentParty
) -> InboundOut:
    _own_platform(party, platform_id)
    with request.app.state.sessions() as session:
        row = session.get(InboundDelivery, delivery_id)
        if row is None or row.platform_id != platform_id:
            raise not_found("delivery")
        return _inbound_out(row, _cipher(request), True)


@router.post(
    "/v1/platforms/{platform_id}/inbound-deliveries/{delivery_id}/replay",
    tags=["webhooks"],
)
def replay_inbound(
    platform_id: str, delivery_id: RowId, request: Request, _admin: AdminParty
) -> JSONResponse:
    """Map a stored delivery again without checking its signature (operators only)."""
    receipt = _ingestor(request).replay(platform_id, delivery_id)
    return JSONResponse(receipt.as_json(), status_code=200)


# -- outbound ------------------------------------------------------------------------------------


@router.get("/v1/platforms/{platform_id}/deliveries", tags=["outbound"])
def outbound_deliveries(
    platform_id: str,
    request: Request,
    party: CurrentParty,
    status: Annotated[
        Literal["pending", "delivering", "delivered", "failed", "disabled"] | None, Query()
    ] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> list[dict[str, Any]]:
    """Outbound webhook deliveries to this platform, newest first, with their attempt log."""
    _own_platform(party, platform_id)
    with request.app.state.sessions() as session:
        platforms.get_platform(session, platform_id)
        rows = outbound.list_deliveries(session, platform_id, status=status, limit=limit)
        return [outbound.delivery_json(d, attempts) for d, attempts in rows]


@router.post("/v1/platforms/{platform_id}/deliveries/{delivery_id}/replay", tags=["outbound"])
def replay_outbound(
    platform_id: str, delivery_id: str, request: Request, party: CurrentParty
) -> dict[str, Any]:
    _own_platform(party, platform_id)
    with request.app.state.sessions() as session, session.begin():
        delivery = outbound.replay_delivery(session, platform_id, delivery_id)
        return {"id": delivery.id, "status": delivery.status}


# -- privacy (internal: the platform's own services) -------------------------------------------


class ExportIn(BaseModel):
    subject_id: str = Field(min_length=1, max_length=64)
    order_ids: list[str] = Field(default_factory=list, max_length=10_000)
    case_ids: list[str] = Field(default_factory=list, max_length=10_000)


@router.post("/internal/v1/privacy/export", tags=["internal"])
def privacy_export(body: ExportIn, request: Request, _service: ServiceParty) -> dict[str, Any]:
    """Everything the gateway holds about one data subject, decrypted, and nothing of anyone
    else: their order snapshots, their webhook deliveries, the outbound webhooks of their cases
    (for an access request, gathered by complaints)."""
    with request.app.state.sessions() as session:
        records = privacy.export_subject(
            session,
            body.subject_id,
            body.order_ids,
            body.case_ids,
            _cipher(request),
            _ingestor(request).subjects,
        )
    return privacy.export_document(body.subject_id, records)
