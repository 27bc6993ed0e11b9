"""Notifications HTTP routes: deliveries (admin; masked for others), preferences, and the
personal-data export for complaints (role `service`)."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Form, Path, Query, Request
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, Field

from notifications.deliveries import (
    get_preference,
    list_deliveries,
    set_order_status_preference,
    unsubscribe,
    unsubscribe_link_exists,
)
from notifications.privacy import SERVICE, export_subject
from notifications.rendering import render_page
from odr_shared.auth import AdminParty, CurrentParty, ServiceParty
from odr_shared.db import READ_ONLY, utcnow

router = APIRouter()


class DeliveryOut(BaseModel):
    id: int
    channel: Literal["sms", "email"]
    recipient: str = Field(description="in clear for admins, masked for everyone else")
    template: str
    language: str
    body: str = Field(
        description="what was sent, one-time codes redacted; empty once erased or past retention"
    )
    status: str = Field(description="pending | sending | sent | failed | suppressed | cancelled")
    attempts: int
    event_id: str
    case_id: str | None
    urgent: bool
    last_error: str | None
    created_at: str
    next_attempt_at: str | None
    sent_at: str | None


class PreferenceIn(BaseModel):
    contact: str = Field(min_length=3, max_length=254, description="phone number or email")
    order_status: bool = Field(description="false: no more order-status messages")


class PreferenceOut(BaseModel):
    contact: str
    order_status: bool
    case_updates: bool = Field(description="always true: case steps and deadlines always go")
    updated_at: str | None


@router.get("/v1/deliveries", tags=["deliveries"], response_model=list[DeliveryOut])
def get_deliveries(
    request: Request,
    party: CurrentParty,
    recipient: str | None = Query(None, max_length=254),
    case_id: str | None = Query(None, max_length=64),
    channel: Literal["sms", "email"] | None = None,
    status: Literal["pending", "sending", "sent", "failed", "suppressed", "cancelled"]
    | None = None,
    limit: int = Query(200, ge=1, le=1000),
) -> list[dict[str, Any]]:
    with request.app.state.sessions() as session:
        return list_deliveries(
            session,
            request.app.state.cipher,
            party,
            recipient=recipient,
            case_id=case_id,
            channel=channel,
            status=status,
            limit=limit,
        )


@router.post("/v1/preferences", tags=["preferences"], response_model=PreferenceOut)
def post_preference(request: Request, _admin: AdminParty, body: PreferenceIn) -> dict[str, Any]:
    with request.app.state.sessions() as session, session.begin():
        return set_order_status_preference(
            session,
            request.app.state.cipher,
            body.contact,
            opt_out=not body.order_status,
            subject_key=request.app.state.subject_key,
        )


@router.get("/v1/preferences", tags=["preferences"], response_model=PreferenceOut)
def read_preference(
    request: Request, _admin: AdminParty, contact: str = Query(min_length=3, max_length=254)
) -> dict[str, Any]:
    with request.app.state.sessions() as session:
        return get_preference(session, request.app.state.cipher, contact)


UnsubscribeToken = Path(min_length=8, max_length=32, pattern=r"^[A-Za-z0-9_-]+$")


@router.get("/u/{token}", tags=["preferences"], response_class=HTMLResponse)
def unsubscribe_page(request: Request, token: str = UnsubscribeToken) -> HTMLResponse:
    """The link in order-status messages: a page that asks (a GET never changes anything, so
    link previews cannot unsubscribe anyone)."""
    with request.app.state.sessions() as session:
        known = unsubscribe_link_exists(session, token)
    state = "ask" if known else "invalid"
    return HTMLResponse(
        render_page("_unsubscribe.html.j2", state=state, action=f"/u/{token}"),
        status_code=200 if known else 404,
    )


@router.post("/u/{token}", tags=["preferences"], response_class=HTMLResponse)
def unsubscribe_confirm(
    request: Request, token: str = UnsubscribeToken, resume: str | None = Form(None)
) -> HTMLResponse:
    with request.app.state.sessions() as session, session.begin():
        known = unsubscribe(session, token, opt_out=not resume)
    state = ("resumed" if resume else "done") if known else "invalid"
    return HTMLResponse(
        render_page("_unsubscribe.html.j2", state=state, action=f"/u/{token}"),
        status_code=200 if known else 404,
    )


class ExportIn(BaseModel):
    subject_id: str = Field(min_length=1, max_length=64)
    order_ids: list[str] = Field(default_factory=list, max_length=10_000)
    case_ids: list[str] = Field(default_factory=list, max_length=10_000)


class ExportOut(BaseModel):
    service: str
    subject_id: str
    generated_at: str
    records: dict[str, list[dict[str, Any]]] = Field(
        description="deliveries, case_contacts, preferences, unsubscribe_links"
    )


@router.post("/internal/v1/privacy/export", tags=["internal"], response_model=ExportOut)
def privacy_export(request: Request, _caller: ServiceParty, body: ExportIn) -> dict[str, Any]:
    """Everything notifications holds about one data subject, decrypted (an access request)."""
    with request.app.state.sessions() as session:
        session.connection(execution_options={READ_ONLY: True})
        records = export_subject(
            session,
            request.app.state.cipher,
            body.subject_id,
            order_ids=body.order_ids,
            case_ids=body.case_ids,
        )
    return {
        "service": SERVICE,
        "subject_id": body.subject_id,
        "generated_at": utcnow().isoformat(),
        "records": records,
    }
