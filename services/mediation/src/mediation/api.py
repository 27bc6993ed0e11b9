"""Mediation HTTP routes: thin; the use cases live in mediation.service."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response
from sqlalchemy.orm import Session, sessionmaker

from mediation import privacy, service
from mediation.complaints_client import ComplaintsClient, ComplaintsRefused, ComplaintsUnavailable
from mediation.models import Neutral
from mediation.schemas import (
    DecisionIn,
    EscalateIn,
    LoginIn,
    MessageIn,
    NeutralCreated,
    NeutralIn,
    NeutralPatch,
    PrivacyExportIn,
    PrivacyExportOut,
    ProposalIn,
    TokenOut,
)
from mediation.settings import MediationSettings
from odr_shared.auth import (
    AdminParty,
    CurrentParty,
    Party,
    ServiceParty,
    TokenService,
    require_role,
)
from odr_shared.db import utcnow
from odr_shared.problems import Problem
from odr_shared.ratelimit import Limit, hit

router = APIRouter()


def _sessions(request: Request) -> sessionmaker[Session]:
    factory: sessionmaker[Session] = request.app.state.sessions
    return factory


def unit_of_work(request: Request) -> Iterator[Session]:
    """One transaction per request; only this owner commits."""
    with _sessions(request)() as session, session.begin():
        yield session


UnitOfWork = Annotated[Session, Depends(unit_of_work)]


def settings_of(request: Request) -> MediationSettings:
    s: MediationSettings = request.app.state.settings
    return s


def caller_of(party: Party) -> service.Caller:
    if party.is_admin:
        return service.Caller(neutral_id=None, roles=(), is_admin=True)
    require_role(party, "mediator", "arbitrator")
    return service.Caller(neutral_id=party.neutral_id, roles=party.roles or (party.role,))


def bearer_token(request: Request) -> str:
    return request.headers.get("authorization", "").partition(" ")[2].strip()


# --- neutrals (operator) ----------------------------------------------------------------------


@router.post("/v1/neutrals", status_code=201, tags=["neutrals"], response_model=NeutralCreated)
def create_neutral(body: NeutralIn, _admin: AdminParty, session: UnitOfWork) -> NeutralCreated:
    """Register a mediator and/or arbitrator (admin)."""
    spec = service.NeutralSpec(
        name=body.name,
        email=body.email,
        phone=body.phone,
        password=body.password,
        roles=list(body.roles),
        categories=body.categories,
        languages=body.languages,
        regions=body.regions,
        max_active_cases=body.max_active_cases,
        conflict_platform_ids=body.conflicts.platform_ids,
        conflict_seller_ids=body.conflicts.seller_ids,
        language=body.language,
    )
    return NeutralCreated(neutral_id=service.register_neutral(session, spec))


@router.get("/v1/neutrals", tags=["neutrals"])
def list_neutrals(_admin: AdminParty, session: UnitOfWork) -> list[dict[str, Any]]:
    """Every neutral's load and availability (operator view)."""
    return service.neutral_loads(session)


@router.get("/v1/neutrals/{neutral_id}", tags=["neutrals"])
def get_neutral(neutral_id: str, party: CurrentParty, session: UnitOfWork) -> dict[str, Any]:
    """A neutral's profile: the operator, or the neutral themself."""
    if not (party.is_admin or party.neutral_id == neutral_id):
        raise Problem(404, "Not Found", "no such neutral")
    n = session.get(Neutral, neutral_id)
    if n is None:
        raise Problem(404, "Not Found", "no such neutral")
    return service.neutral_view(session, n)


@router.patch("/v1/neutrals/{neutral_id}", tags=["neutrals"])
def patch_neutral(
    neutral_id: str, body: NeutralPatch, request: Request, _admin: AdminParty, session: UnitOfWork
) -> dict[str, Any]:
    """Change availability (leave, working hours), capacity, skills or conflicts (admin)."""
    changes: dict[str, Any] = body.model_dump(exclude_unset=True, exclude={"clear_working_hours"})
    if body.clear_working_hours:
        changes["working_hours"] = None
    elif body.working_hours is None:
        changes.pop("working_hours", None)
    n = service.update_neutral(session, neutral_id, changes, settings_of(request))
    return service.neutral_view(session, n)


@router.delete("/v1/neutrals/{neutral_id}/personal-data", tags=["neutrals"])
def delete_neutral_personal_data(
    neutral_id: str, request: Request, _admin: AdminParty, session: UnitOfWork
) -> dict[str, Any]:
    """Erase a neutral who left (admin): name, e-mail, phone, login and the keys their contact
    travelled under go; their assignments and decisions stay under their id, for statistics.
    409 while they still have active cases."""
    counts = privacy.erase_neutral(
        session, neutral_id, settings_of(request), request.app.state.keys
    )
    return {"neutral_id": neutral_id, "status": "erased", "counts": counts}


@router.get("/v1/queue", tags=["routing"])
def get_waiting_queue(_admin: AdminParty, session: UnitOfWork) -> list[dict[str, Any]]:
    """Cases waiting for an eligible neutral, oldest first (operator view)."""
    return service.waiting_queue(session)


@router.get("/v1/cases/{case_id}/routing", tags=["routing"])
def get_routing(case_id: str, _admin: AdminParty, session: UnitOfWork) -> list[dict[str, Any]]:
    """Every routing decision on a case with the candidates each rule excluded (admin)."""
    return service.routing_history(session, case_id)


# --- neutrals' login and work -----------------------------------------------------------------


def login_limit(settings: MediationSettings) -> Limit:
    return Limit("neutral-login", settings.login_max_attempts, settings.login_window_s)


def issue_neutral_token(tokens: TokenService, n: Neutral, ttl_s: int) -> str:
    roles = tuple(n.roles.split(","))
    return tokens.issue(
        role=n.primary_role,  # type: ignore[arg-type]
        subject=n.neutral_id,
        ttl=timedelta(seconds=ttl_s),
        neutral_id=n.neutral_id,
        roles=roles,
    )


def login(request: Request, email: str, password: str) -> tuple[str, Neutral]:
    """Rate-limited password check shared by the API and the dashboard; raises 401/429."""
    settings = settings_of(request)
    client = request.client.host if request.client else "unknown"
    # The count commits in its own transaction, so failed attempts are remembered.
    with _sessions(request)() as session, session.begin():
        hit(session, login_limit(settings), f"email:{email.strip().lower()}")
        hit(
            session,
            Limit("neutral-login-ip", settings.login_max_attempts * 5, settings.login_window_s),
            f"ip:{client}",
        )
    with _sessions(request)() as session, session.begin():
        n = service.authenticate(session, email, password)
    if n is None:
        raise Problem(401, "Unauthorized", "wrong email or password")
    token = issue_neutral_token(request.app.state.tokens, n, settings.token_ttl_s)
    return token, n


@router.post("/v1/auth/login", tags=["auth"], response_model=TokenOut)
def post_login(body: LoginIn, request: Request) -> TokenOut:
    """A neutral's password login -> a mediator/arbitrator JWT."""
    token, n = login(request, body.email, body.password)
    return TokenOut(
        access_token=token,
        expires_in=settings_of(request).token_ttl_s,
        neutral_id=n.neutral_id,
        roles=n.roles.split(","),
    )


@router.get("/v1/assignments", tags=["cases"])
def get_assignments(party: CurrentParty, session: UnitOfWork) -> list[dict[str, Any]]:
    """The caller's active assignments, the nearest deadline first."""
    require_role(party, "mediator", "arbitrator")
    assert party.neutral_id is not None
    return service.my_assignments(session, party.neutral_id)


@router.get("/v1/cases/{case_id}", tags=["cases"])
def get_case(case_id: str, party: CurrentParty, session: UnitOfWork) -> dict[str, Any]:
    """Mediation's record of a case assigned to the caller (404 for anyone else's)."""
    return service.case_view(session, case_id, caller_of(party))


@router.post("/v1/cases/{case_id}/proposals", status_code=201, tags=["cases"])
def post_proposal(
    case_id: str, body: ProposalIn, party: CurrentParty, session: UnitOfWork
) -> dict[str, Any]:
    """The mediator proposes a settlement; both parties answer it through complaints."""
    p = service.make_proposal(
        session, case_id, caller_of(party), body.outcome, body.amount, body.terms
    )
    return {"proposal_id": p.proposal_id, "status": p.status}


@router.post("/v1/cases/{case_id}/messages", status_code=201, tags=["cases"])
def post_message(
    case_id: str, body: MessageIn, request: Request, party: CurrentParty
) -> dict[str, Any]:
    """The neutral writes to the parties: stored by complaints (or queued for it if down)."""
    message_id = send_message(request, case_id, caller_of(party), bearer_token(request), body.body)
    return {"message_id": message_id, "delivery": "stored" if message_id else "queued"}


def send_message(
    request: Request, case_id: str, caller: service.Caller, token: str, text: str
) -> str | None:
    """Access check, then complaints over HTTP with no transaction open, then our record."""
    sessions = _sessions(request)
    with sessions() as session, session.begin():
        service.case_view(session, case_id, caller)  # 404 before anything leaves this service
    client: ComplaintsClient = request.app.state.complaints
    try:
        message_id = client.post_message(case_id, token, text)
    except ComplaintsRefused as exc:
        raise Problem(
            exc.status if exc.status != 401 else 502, "Message refused", str(exc)
        ) from exc
    except ComplaintsUnavailable:
        message_id = None  # travels by the outbox instead; see service.record_message
    with sessions() as session, session.begin():
        service.record_message(session, case_id, caller, message_id, text)
    return message_id


@router.post("/v1/cases/{case_id}/escalate", tags=["cases"])
def post_escalate(
    case_id: str, body: EscalateIn, request: Request, party: CurrentParty, session: UnitOfWork
) -> dict[str, Any]:
    """The mediator refers the case to arbitration; arbitrator(s) are routed at once."""
    case = service.escalate_to_arbitration(
        session, case_id, caller_of(party), body.reason, settings_of(request)
    )
    return {"case_id": case.case_id, "stage": case.stage, "waiting_role": case.waiting_role}


@router.post("/v1/cases/{case_id}/decision", tags=["cases"])
def post_decision(
    case_id: str,
    body: DecisionIn,
    request: Request,
    response: Response,
    party: CurrentParty,
    session: UnitOfWork,
) -> dict[str, Any]:
    """An arbitrator's reasoned decision; a panel decides when two of three agree."""
    decision, votes, size = service.submit_decision(
        session,
        case_id,
        caller_of(party),
        body.outcome,
        body.amount,
        body.reasons,
        settings_of(request),
    )
    if decision is None:
        response.status_code = 202
        return {"status": "vote_recorded", "votes": votes, "panel_size": size}
    response.status_code = 201
    return {
        "status": "decided",
        "decision_id": decision.decision_id,
        "outcome": decision.outcome,
        "amount": decision.amount,
        "reasons": decision.reasons,
        "decided_by": decision.decided_by.split(","),
        "votes": votes,
        "panel_size": size,
    }


# --- personal data (other platform services only) ---------------------------------------------


@router.post("/internal/v1/privacy/export", tags=["internal"], response_model=PrivacyExportOut)
def post_privacy_export(
    body: PrivacyExportIn, request: Request, _caller: ServiceParty, session: UnitOfWork
) -> PrivacyExportOut:
    """Everything mediation holds about one data subject, in clear, for their access request."""
    records = privacy.export(
        session, body.subject_id, body.order_ids, body.case_ids, settings_of(request)
    )
    return PrivacyExportOut(
        subject_id=body.subject_id, generated_at=utcnow().isoformat(), records=records
    )
