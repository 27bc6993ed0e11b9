"""Complaints HTTP routes: parse, call the use case, shape the answer."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, File, Form, Request, Response, UploadFile

from complaints import repository, service
from complaints.access import can_see_order
from complaints.orders import order_view
from complaints.schemas import (
    CaseCreated,
    CaseIn,
    EscalationIn,
    MessageIn,
    OfferIn,
    OtpRequest,
    OtpVerify,
    ReasonIn,
    TokenOut,
)
from complaints.service import Deps
from complaints.storage import content_disposition
from odr_shared.auth import CurrentParty, Party
from odr_shared.problems import Problem, not_found

router = APIRouter()


def get_deps(request: Request) -> Deps:
    deps: Deps = request.app.state.deps
    return deps


DepsDep = Annotated[Deps, Depends(get_deps)]
OptionalReason = Annotated[ReasonIn | None, Body()]
OptionalEscalation = Annotated[EscalationIn | None, Body()]


def client_ip(request: Request) -> str:
    return request.client.host if request.client else "unknown"


@router.post("/v1/otp", status_code=202, tags=["one-time codes"])
def request_otp(body: OtpRequest, request: Request, deps: DepsDep) -> dict[str, str]:
    """Send a code by SMS if the order and phone match. Always 202: orders cannot be probed."""
    service.request_otp(deps, body.order_code, body.phone, client_ip(request), body.language)
    return {"detail": "if the order and phone match, a code has been sent by SMS"}


@router.post("/v1/otp/verify", tags=["one-time codes"])
def verify_otp(body: OtpVerify, request: Request, deps: DepsDep) -> TokenOut:
    token = service.verify_otp(deps, body.order_code, body.phone, body.code, client_ip(request))
    return TokenOut(access_token=token, expires_in=deps.settings.consumer_token_ttl_s)


def order_for_caller(
    deps: Deps, party: Party, order_code: str, platform_id: str | None
) -> dict[str, Any]:
    if party.role == "consumer":
        scope = (party.order_id or "").partition(":")[0]
        if platform_id and platform_id != scope:
            raise not_found("order")
        platform_id = scope
    elif party.role == "platform":
        if platform_id and platform_id != party.platform_id:
            raise not_found("order")
        platform_id = party.platform_id
    elif party.role == "admin":
        if platform_id is None:
            raise Problem(
                400,
                "Bad Request",
                "platform_id: required for an admin lookup",
                errors=[{"field": "platform_id", "reason": "required"}],
            )
    else:
        raise not_found("order")
    with deps.sessions() as session:
        orders = [
            o
            for o in repository.find_orders(session, order_code, platform_id)
            if can_see_order(party, o.id, o.platform_id)
        ]
        if not orders:
            raise not_found("order")
        view = order_view(orders[0], deps.cipher)
        view["cases"] = [
            service.case_summary(c) for c in repository.cases_for_order(session, orders[0].id)
        ]
        return view


@router.get("/v1/orders/{order_code}", tags=["orders"])
def get_order(
    order_code: str, party: CurrentParty, deps: DepsDep, platform_id: str | None = None
) -> dict[str, Any]:
    """The order, its status history and its cases (buyer data masked). Others': 404."""
    return order_for_caller(deps, party, order_code, platform_id)


@router.post("/v1/cases", status_code=201, tags=["cases"])
def open_case(body: CaseIn, party: CurrentParty, deps: DepsDep) -> CaseCreated:
    """File a complaint about the order the consumer's token covers (409: one is already open)."""
    rec = service.open_case(
        deps,
        party,
        order_code=body.order_code,
        category=body.category,
        description=body.description,
        desired_outcome=body.desired_outcome,
        claimed_amount=body.claimed_amount,
        language=body.language,
    )
    return CaseCreated(
        case_id=rec.id,
        reference=rec.reference,
        status=rec.status,
        merchant_response_due_at=rec.merchant_response_due_at.isoformat(),
    )


@router.get("/v1/cases", tags=["cases"])
def list_cases(
    party: CurrentParty,
    deps: DepsDep,
    platform_id: str | None = None,
    status: str | None = None,
) -> list[dict[str, Any]]:
    """Platform: its own cases; admin: all; consumer: its order's; neutral: assigned ones."""
    return service.list_cases(deps, party, platform_id, status)


@router.get("/v1/cases/{case_id}", tags=["cases"])
def get_case(case_id: str, party: CurrentParty, deps: DepsDep) -> dict[str, Any]:
    return service.get_case(deps, party, case_id)


@router.get("/v1/cases/{case_id}/messages", tags=["cases"])
def list_messages(case_id: str, party: CurrentParty, deps: DepsDep) -> list[dict[str, Any]]:
    case = service.get_case(deps, party, case_id)
    return [e for e in case["timeline"] if e["kind"] == "message"]


@router.post("/v1/cases/{case_id}/messages", status_code=201, tags=["cases"])
def post_message(
    case_id: str, body: MessageIn, party: CurrentParty, deps: DepsDep
) -> dict[str, str]:
    return {"message_id": service.post_message(deps, party, case_id, body.text)}


@router.post("/v1/cases/{case_id}/evidence", status_code=201, tags=["cases"])
async def add_evidence(
    case_id: str,
    party: CurrentParty,
    deps: DepsDep,
    file: Annotated[UploadFile, File()],
    consent_share_with_neutral: Annotated[bool, Form()] = False,
) -> dict[str, Any]:
    """Upload one file (JPEG, PNG, WebP, PDF, MP4); its type is read from its bytes. A
    consumer's `consent_share_with_neutral` is recorded on the case."""
    limit = deps.settings.evidence_max_bytes
    content = await file.read(limit + 1)
    ev = service.add_evidence(
        deps,
        party,
        case_id,
        file.filename or "evidence",
        content,
        consent_share_with_neutral=consent_share_with_neutral,
    )
    return {
        "evidence_id": ev.id,
        "filename": ev.filename,
        "content_type": ev.content_type,
        "size": ev.size,
        "sha256": ev.sha256,
    }


@router.get("/v1/cases/{case_id}/evidence", tags=["cases"])
def list_evidence(case_id: str, party: CurrentParty, deps: DepsDep) -> list[dict[str, Any]]:
    evidence: list[dict[str, Any]] = service.get_case(deps, party, case_id)["evidence"]
    return evidence


@router.get("/v1/cases/{case_id}/evidence/{evidence_id}", tags=["cases"])
def download_evidence(
    case_id: str, evidence_id: str, party: CurrentParty, deps: DepsDep
) -> Response:
    ev, content = service.read_evidence(deps, party, case_id, evidence_id)
    return Response(
        content,
        media_type=ev.content_type,
        headers={
            "Content-Disposition": content_disposition("attachment", ev.filename),
            "X-Content-Type-Options": "nosniff",
        },
    )


@router.post("/v1/cases/{case_id}/offers", status_code=201, tags=["cases"])
def make_offer(case_id: str, body: OfferIn, party: CurrentParty, deps: DepsDep) -> dict[str, Any]:
    offer = service.make_offer(deps, party, case_id, body.kind, body.amount, body.terms)
    return service._offer_view(offer)


@router.post("/v1/cases/{case_id}/offers/{offer_id}/accept", tags=["cases"])
def accept_offer(
    case_id: str, offer_id: str, party: CurrentParty, deps: DepsDep, body: OptionalReason = None
) -> dict[str, Any]:
    service.answer_offer(deps, party, case_id, offer_id, True, body.reason if body else None)
    return service.get_case(deps, party, case_id)


@router.post("/v1/cases/{case_id}/offers/{offer_id}/reject", tags=["cases"])
def reject_offer(
    case_id: str, offer_id: str, party: CurrentParty, deps: DepsDep, body: OptionalReason = None
) -> dict[str, Any]:
    service.answer_offer(deps, party, case_id, offer_id, False, body.reason if body else None)
    return service.get_case(deps, party, case_id)


@router.post("/v1/cases/{case_id}/proposals/{proposal_id}/accept", tags=["cases"])
def accept_proposal(
    case_id: str, proposal_id: str, party: CurrentParty, deps: DepsDep, body: OptionalReason = None
) -> dict[str, Any]:
    service.answer_proposal(deps, party, case_id, proposal_id, True, body.reason if body else None)
    return service.get_case(deps, party, case_id)


@router.post("/v1/cases/{case_id}/proposals/{proposal_id}/reject", tags=["cases"])
def reject_proposal(
    case_id: str, proposal_id: str, party: CurrentParty, deps: DepsDep, body: OptionalReason = None
) -> dict[str, Any]:
    service.answer_proposal(deps, party, case_id, proposal_id, False, body.reason if body else None)
    return service.get_case(deps, party, case_id)


@router.post("/v1/cases/{case_id}/escalate", tags=["cases"])
def escalate(
    case_id: str, party: CurrentParty, deps: DepsDep, body: OptionalEscalation = None
) -> dict[str, Any]:
    """Consumer: once an offer was rejected or the merchant's deadline passed. A consumer's
    `consent_share_with_neutral` is recorded on the case."""
    service.escalate(
        deps,
        party,
        case_id,
        body.reason if body else None,
        consent_share_with_neutral=bool(body and body.consent_share_with_neutral),
    )
    return service.get_case(deps, party, case_id)


@router.post("/v1/cases/{case_id}/withdraw", tags=["cases"])
def withdraw(
    case_id: str, party: CurrentParty, deps: DepsDep, body: OptionalReason = None
) -> dict[str, Any]:
    service.withdraw(deps, party, case_id, body.reason if body else None)
    return service.get_case(deps, party, case_id)


@router.get("/v1/platform-records", tags=["public record"])
def platform_records(deps: DepsDep) -> list[dict[str, Any]]:
    """Per marketplace: cases received, % answered in time, median first answer, outcomes."""
    return service.platform_records(deps)
