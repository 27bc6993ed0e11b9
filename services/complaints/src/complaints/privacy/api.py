"""`/v1/privacy/requests`: the buyer's access and erasure requests, and the operator's queue.

The buyer proves the phone with the same SMS code as for a complaint; the consumer token then
covers every order with that phone (the buyer's data subject). Anyone else's request is 404.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select

from complaints.models import Order, PrivacyExport, PrivacyRequest
from complaints.privacy import data
from complaints.privacy.state import STATUSES, new_request, summary
from complaints.service import Deps
from odr_shared.auth import AdminParty, CurrentParty, Party, ServiceParty
from odr_shared.db import utcnow
from odr_shared.problems import Problem, not_found
from odr_shared.ratelimit import Limit, hit

router = APIRouter(tags=["privacy"])


def _deps(request: Request) -> Deps:
    deps: Deps = request.app.state.deps
    return deps


DepsDep = Annotated[Deps, Depends(_deps)]


class PrivacyRequestIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: Literal["access", "erasure"]
    order_id: str | None = Field(
        None, description="admin only: the order whose buyer asked (by letter, at a counter)"
    )


class PrivacyRequestAck(BaseModel):
    request_id: str
    kind: str
    status: str
    acknowledged_at: str
    due_at: str


class ExportIn(BaseModel):
    model_config = ConfigDict(extra="ignore")

    subject_id: str | None = None
    order_ids: list[str] = Field(default_factory=list)
    case_ids: list[str] = Field(default_factory=list)


def _subject(deps: Deps, order_id: str | None) -> tuple[str, str]:
    """(subject id, order id) of the order's buyer; 404 if the buyer is unknown (or erased)."""
    with deps.sessions() as session:
        order = session.get(Order, order_id) if order_id else None
        if order is None or order.subject_id is None:
            raise not_found("order")
        return order.subject_id, order.id


def _owns(deps: Deps, party: Party, req: PrivacyRequest) -> bool:
    if party.role != "consumer" or not party.order_id:
        return False
    # The orders of a buyer's own request were found by the phone they proved, so each still
    # names them after the erasure cleared its subject. A marketplace's request lists orders
    # the marketplace chose: there only the subject counts.
    if req.source == "consumer" and party.order_id in (req.order_ids or []):
        return True
    with deps.sessions() as session:
        order = session.get(Order, party.order_id)
        return bool(order and order.subject_id and order.subject_id == req.subject_id)


def _visible(deps: Deps, party: Party, request_id: str) -> PrivacyRequest:
    with deps.sessions() as session:
        req = session.get(PrivacyRequest, request_id)
        if req is not None:
            session.expunge(req)
    if req is None or not (party.role == "admin" or _owns(deps, party, req)):
        raise not_found("privacy request")
    return req


@router.post("/v1/privacy/requests", status_code=202)
def create_request(body: PrivacyRequestIn, party: CurrentParty, deps: DepsDep) -> PrivacyRequestAck:
    """Ask for a copy of your data (`access`) or its erasure (`erasure`), for every order with
    the phone you proved by SMS code. Acknowledged at once; `due_at` is when the answer is due."""
    if party.role == "consumer":
        if body.order_id not in (None, party.order_id):
            raise not_found("order")
        subject_id, own_order = _subject(deps, party.order_id)
        source = "consumer"
    elif party.role == "admin":
        if body.order_id is None:
            raise Problem(
                400,
                "Bad Request",
                "order_id: required when an admin files a request for a buyer",
                errors=[{"field": "order_id", "reason": "required"}],
            )
        subject_id, own_order = _subject(deps, body.order_id)
        source = "admin"
    else:
        raise Problem(403, "Forbidden", "only the buyer (or an admin for them) makes this request")
    s = deps.settings
    # Its own transaction: a refused request still counts.
    with deps.sessions.begin() as session:
        hit(
            session,
            Limit("privacy-request", s.privacy_requests_per_subject_per_day, 86400),
            subject_id,
        )
    with deps.sessions.begin() as session:
        pending = session.execute(
            select(PrivacyRequest)
            .where(
                PrivacyRequest.subject_id == subject_id,
                PrivacyRequest.kind == body.kind,
                PrivacyRequest.status.in_(("received", "in_progress", "deferred")),
            )
            .order_by(PrivacyRequest.created_at)
            .limit(1)
        ).scalar_one_or_none()
        if pending is not None:
            req = pending  # the same request again: the one already on its way (or waiting)
        else:
            found = data.scope(session, subject_id)
            req = new_request(
                session,
                kind=body.kind,
                subject_id=subject_id,
                source=source,
                order_ids=[own_order, *found.order_ids],
                case_ids=found.case_ids,
                calendar=deps.calendar,
                answer_working_days=s.privacy_answer_working_days,
                requested_by=party.subject,
            )
        return PrivacyRequestAck(
            request_id=req.id,
            kind=req.kind,
            status=req.status,
            acknowledged_at=req.acknowledged_at.isoformat(),
            due_at=req.due_at.isoformat(),
        )


def _export_available(req: PrivacyRequest) -> bool:
    return (
        req.kind == "access"
        and req.status == "completed"
        and req.export_expires_at is not None
        and req.export_expires_at > utcnow()
    )


@router.get("/v1/privacy/requests/{request_id}")
def get_request(request_id: str, party: CurrentParty, deps: DepsDep) -> dict[str, Any]:
    """Where the request stands (the buyer who made it, or an admin)."""
    req = _visible(deps, party, request_id)
    view = summary(req)
    if req.kind == "access":
        available = _export_available(req)
        view["export_url"] = f"/v1/privacy/requests/{req.id}/export" if available else None
        view["export_expires_at"] = (
            req.export_expires_at.isoformat() if available and req.export_expires_at else None
        )
    return view


@router.get("/v1/privacy/requests/{request_id}/export")
def download_export(request_id: str, party: CurrentParty, deps: DepsDep) -> Response:
    """The access export (JSON), for the buyer who asked, until it expires."""
    req = _visible(deps, party, request_id)
    if party.role != "consumer" or req.kind != "access":
        raise not_found("export")
    if req.status != "completed":
        raise Problem(409, "Conflict", "the export is not ready yet", request_status=req.status)
    with deps.sessions() as session:
        exp = session.get(PrivacyExport, request_id)
        if exp is None or exp.expires_at <= utcnow():
            raise Problem(410, "Gone", "the export has expired; make a new request")
        content = deps.cipher.decrypt_bytes(exp.export_enc)
    return Response(
        content,
        media_type="application/json",
        headers={
            "Content-Disposition": f'attachment; filename="odr-data-{request_id}.json"',
            "Cache-Control": "no-store",
            "X-Content-Type-Options": "nosniff",
        },
    )


@router.get("/v1/privacy/requests")
def list_requests(
    party: AdminParty,
    deps: DepsDep,
    status: Annotated[
        str | None, Query(description="received, in_progress, completed, deferred")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> list[dict[str, Any]]:
    """The operator's queue: the requests with their due dates, the earliest due first."""
    if status is not None and status not in STATUSES:
        raise Problem(
            400,
            "Bad Request",
            f"status: one of {', '.join(STATUSES)}",
            errors=[{"field": "status", "reason": "unknown status"}],
        )
    now = utcnow()
    with deps.sessions() as session:
        q = select(PrivacyRequest).order_by(PrivacyRequest.due_at, PrivacyRequest.created_at)
        if status is not None:
            q = q.where(PrivacyRequest.status == status)
        rows = list(session.execute(q.limit(limit)).scalars())
        return [
            {
                **summary(r),
                "subject_id": r.subject_id,
                "overdue": r.status != "completed" and r.due_at < now,
                "attempts": r.attempts,
                "last_error": r.last_error,
            }
            for r in rows
        ]


@router.post("/internal/v1/privacy/export", tags=["internal"])
def internal_export(body: ExportIn, party: ServiceParty, deps: DepsDep) -> dict[str, Any]:
    """Complaints' part of an access export (role `service`): the subject's orders and cases."""
    with deps.sessions() as session:
        found = data.scope(session, body.subject_id, order_ids=body.order_ids)
        records = data.export(session, deps.cipher, found, body.subject_id)
    return {
        "service": "complaints",
        "subject_id": body.subject_id,
        "generated_at": utcnow().isoformat(),
        "records": records,
    }
