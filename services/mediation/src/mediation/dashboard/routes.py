"""Dashboard routes: login, my queue, case detail with actions, the operator's view."""

from __future__ import annotations

import hashlib
import hmac
import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from sqlalchemy.orm import Session

from mediation import service
from mediation.api import caller_of, login, send_message, settings_of
from mediation.complaints_client import ComplaintsClient, ComplaintsUnavailable
from mediation.dashboard.i18n import LANGUAGES, TEXT, translate
from mediation.domain import OUTCOMES, VN_TZ, sla_colour
from odr_shared.auth import InvalidToken, Party, TokenService
from odr_shared.db import utcnow
from odr_shared.logs import mask_email, mask_name, mask_phone
from odr_shared.problems import Problem

log = logging.getLogger(__name__)
router = APIRouter(prefix="/dashboard", include_in_schema=False)
templates = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))

COOKIE = "odr_dashboard"
# Pages carry case data: no framing, no third-party anything, no sniffing, no referrer leaks.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; style-src 'self' 'unsafe-inline'; "
    "script-src 'none'; frame-ancestors 'none'; form-action 'self'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}
LANG_COOKIE = "odr_lang"


def _lang(request: Request) -> str:
    asked = request.query_params.get("lang") or request.cookies.get(LANG_COOKIE) or "vi"
    return asked if asked in LANGUAGES else "vi"


def _party(request: Request) -> tuple[Party, str] | None:
    token = request.cookies.get(COOKIE)
    if not token:
        return None
    tokens: TokenService = request.app.state.tokens
    try:
        party = tokens.verify(token)
    except InvalidToken:
        return None
    if not (party.is_admin or party.has_role("mediator", "arbitrator")):
        return None
    return party, token


def _csrf(request: Request, token: str) -> str:
    """A per-session form token: forms must echo it, so another site cannot post for you."""
    key = settings_of(request).jwt_secret.encode()
    return hmac.new(key, b"csrf:" + token.encode(), hashlib.sha256).hexdigest()


def _check_csrf(request: Request, token: str, given: str) -> None:
    if not hmac.compare_digest(_csrf(request, token), given):
        raise Problem(403, "Forbidden", "the form token is missing or wrong; reload the page")


def _local(value: str | datetime | None) -> str:
    if not value:
        return ""
    try:
        when = datetime.fromisoformat(value) if isinstance(value, str) else value
    except ValueError:
        return str(value)  # not a date (another service's odd answer): shown as is
    if when.tzinfo is None:
        return str(value)
    return when.astimezone(VN_TZ).strftime("%d/%m/%Y %H:%M")


def _money(amount: object) -> str:
    """đồng with Vietnamese thousands dots; anything unexpected from complaints shown as is."""
    if amount is None or amount == "":
        return "—"
    if not isinstance(amount, int | str) or not str(amount).isdigit():
        return str(amount)
    return f"{int(amount):,}".replace(",", ".") + " ₫"


def _render(
    request: Request,
    name: str,
    context: dict[str, Any],
    *,
    party: Party | None = None,
    token: str | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    lang = _lang(request)
    ctx = {
        "lang": lang,
        "t": lambda key, **kw: translate(lang, key, **kw),
        "local": _local,
        "money": _money,
        "party": party,
        "csrf": _csrf(request, token) if token else "",
        "flash_ok": translate(lang, "done") if request.query_params.get("done") else None,
        "flash_error": request.query_params.get("error"),
        **context,
    }
    response = templates.TemplateResponse(request, name, ctx, status_code=status_code)
    if request.query_params.get("lang") in LANGUAGES:
        response.set_cookie(
            LANG_COOKIE, lang, max_age=365 * 86400, samesite="lax", path="/dashboard"
        )
    response.headers["Cache-Control"] = "no-store"
    response.headers.update(SECURITY_HEADERS)
    return response


def _to_login(request: Request) -> RedirectResponse:
    return RedirectResponse("/dashboard/login", status_code=303)


def _set_session(request: Request, response: Response, token: str) -> None:
    response.set_cookie(
        COOKIE,
        token,
        httponly=True,
        samesite="strict",
        secure=settings_of(request).public_base_url.startswith("https"),
        path="/dashboard",
        max_age=settings_of(request).token_ttl_s,
    )


# The operator's data-subject request queue, read from complaints (GET /v1/privacy/requests).
DSR_STATUSES = ("received", "in_progress", "deferred", "completed")
DSR_OPEN = ("received", "in_progress", "deferred")
DSR_FILTERS = ("open", *DSR_STATUSES, "all")
DSR_LIMIT = 200


def _dsr_filter(request: Request) -> str:
    asked = request.query_params.get("dsr") or "open"
    return asked if asked in DSR_FILTERS else "open"


def _label(lang: str, prefix: str, value: str) -> str:
    """A known value in the page's language; anything else complaints sends, as is."""
    key = f"{prefix}{value}"
    return translate(lang, key) if key in TEXT else value


def _when(value: object) -> datetime:
    try:
        when = datetime.fromisoformat(str(value))
    except ValueError:
        return datetime.max.replace(tzinfo=UTC)
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def _text(value: object) -> str:
    return "" if value is None else str(value)


def _dsr_row(item: dict[str, Any], lang: str) -> dict[str, Any]:
    """Only the fields the page shows: never the subject id, never the request's errors."""
    parts = []
    services = item.get("services")
    for name, report in sorted(services.items() if isinstance(services, dict) else []):
        report = report if isinstance(report, dict) else {}
        status = _text(report.get("status"))
        parts.append(
            {
                "name": _text(name),
                "status": status,
                "status_label": _label(lang, "dsr_status_", status),
                "reason": _text(report.get("reason")),
                "until": _text(report.get("until")),
            }
        )
    kind, status, source = (_text(item.get(k)) for k in ("kind", "status", "source"))
    return {
        "request_id": _text(item.get("request_id")),
        "kind": kind,
        "kind_label": _label(lang, "dsr_kind_", kind),
        "status": status,
        "status_label": _label(lang, "dsr_status_", status),
        "source": source,
        "source_label": _label(lang, "dsr_source_", source),
        "platform_id": _text(item.get("platform_id")),
        "acknowledged_at": _text(item.get("acknowledged_at")),
        "due_at": _text(item.get("due_at")),
        "completed_at": _text(item.get("completed_at")),
        "reason": _text(item.get("reason")),
        "until": _text(item.get("until")),
        "overdue": item.get("overdue") is True,
        "services": parts,
    }


def _privacy_queue(
    client: ComplaintsClient, token: str, which: str, lang: str
) -> tuple[list[dict[str, Any]], bool]:
    """(the requests the filter shows, earliest due first; whether the list was cut short).

    "open" asks complaints once per open status, so completed requests (which pile up, and
    sort first: their due dates have passed) never crowd the open ones out of the page.
    """
    statuses: tuple[str | None, ...]
    if which == "open":
        statuses = DSR_OPEN
    elif which == "all":
        statuses = (None,)
    else:
        statuses = (which,)
    items: list[dict[str, Any]] = []
    cut = False
    for status in statuses:
        page = client.privacy_requests(token, status=status, limit=DSR_LIMIT)
        cut = cut or len(page) >= DSR_LIMIT
        items.extend(page)
    if len(statuses) > 1:
        items.sort(key=lambda i: (_when(i.get("due_at")), _when(i.get("acknowledged_at"))))
    cut = cut or len(items) > DSR_LIMIT
    return [_dsr_row(i, lang) for i in items[:DSR_LIMIT]], cut


def _operator_home(request: Request, party: Party, token: str) -> Response:
    sessions = request.app.state.sessions
    with sessions() as session, session.begin():
        queue = service.waiting_queue(session)
        loads = service.neutral_loads(session)
    # Complaints is asked outside the transaction; if it fails, the rest of the page still shows.
    which = _dsr_filter(request)
    client: ComplaintsClient = request.app.state.complaints
    requests: list[dict[str, Any]] = []
    cut = False
    error = False
    try:
        requests, cut = _privacy_queue(client, token, which, _lang(request))
    except ComplaintsUnavailable as exc:
        log.warning("the data-subject request queue could not be loaded: %s", exc)
        error = True
    return _render(
        request,
        "operator.html",
        {
            "queue": queue,
            "loads": loads,
            "dsr_requests": requests,
            "dsr_filter": which,
            "dsr_filters": DSR_FILTERS,
            "dsr_cut": cut,
            "dsr_limit": DSR_LIMIT,
            "dsr_error": error,
        },
        party=party,
        token=token,
    )


@router.get("")
def home(request: Request) -> Response:
    found = _party(request)
    if found is None:
        return _to_login(request)
    party, token = found
    if party.is_admin:
        return _operator_home(request, party, token)
    sessions = request.app.state.sessions
    with sessions() as session, session.begin():
        assert party.neutral_id is not None
        rows = service.my_assignments(session, party.neutral_id)
    now = utcnow()
    for row in rows:
        row["sla"] = sla_colour(datetime.fromisoformat(row["due_at"]), now)
    return _render(request, "queue.html", {"assignments": rows}, party=party, token=token)


@router.get("/login")
def login_page(request: Request) -> Response:
    return _render(request, "login.html", {})


@router.post("/login")
def login_submit(request: Request, email: str = Form(...), password: str = Form(...)) -> Response:
    lang = _lang(request)
    try:
        token, _n = login(request, email, password)
    except Problem as exc:
        if exc.status == 429:
            msg = translate(lang, "too_many", s=exc.headers.get("Retry-After", "60"))
        else:
            msg = translate(lang, "bad_login")
        response = _render(request, "login.html", {"flash_error": msg}, status_code=exc.status)
        if "Retry-After" in exc.headers:
            response.headers["Retry-After"] = exc.headers["Retry-After"]
        return response
    redirect = RedirectResponse("/dashboard", status_code=303)
    _set_session(request, redirect, token)
    return redirect


@router.post("/operator-login")
def operator_login(request: Request, token: str = Form(...)) -> Response:
    tokens: TokenService = request.app.state.tokens
    try:
        party = tokens.verify(token.strip())
    except InvalidToken:
        party = None
    if party is None or not party.is_admin:
        return _render(
            request,
            "login.html",
            {"flash_error": translate(_lang(request), "bad_login")},
            status_code=401,
        )
    response = RedirectResponse("/dashboard", status_code=303)
    _set_session(request, response, token.strip())
    return response


@router.post("/logout")
def logout(request: Request, csrf: str = Form("")) -> Response:
    found = _party(request)
    if found is not None:
        _check_csrf(request, found[1], csrf)
    response = _to_login(request)
    response.delete_cookie(COOKIE, path="/dashboard")
    return response


def _mask_person(person: Any) -> dict[str, Any] | None:
    if not isinstance(person, dict):
        return None
    out: dict[str, Any] = {}
    if person.get("name"):
        out["name"] = mask_name(str(person["name"]))
    if person.get("phone"):
        out["phone"] = mask_phone(str(person["phone"]))
    if person.get("email"):
        out["email"] = mask_email(str(person["email"]))
    return out


def _entry(e: Any) -> dict[str, Any]:
    """One complaints timeline entry in the dashboard's shape, whatever its field names."""
    if not isinstance(e, dict):
        return {"at": "", "type": str(e), "actor": "", "summary": ""}
    actor = e.get("actor")
    if isinstance(actor, dict):
        actor = actor.get("role", "")
    return {
        "at": e.get("at") or e.get("time") or e.get("created_at") or "",
        "type": e.get("type") or e.get("kind") or e.get("event") or "",
        "actor": actor or e.get("actor_role") or "",
        "summary": _summary(e),
    }


def _summary(e: dict[str, Any]) -> str:
    if e.get("from_status") or e.get("to_status"):
        move = f"{e.get('from_status') or '·'} → {e.get('to_status') or '·'}"
        return f"{move}: {e['reason']}" if e.get("reason") else move
    for key in ("summary", "text", "detail", "note", "reason", "filename"):
        if e.get(key):
            return str(e[key])
    return ""


def _sort_key(e: dict[str, Any]) -> str:
    try:
        return datetime.fromisoformat(str(e["at"])).astimezone(VN_TZ).isoformat()
    except ValueError:
        return ""


def _list(doc: dict[str, Any], key: str) -> list[dict[str, Any]]:
    value = doc.get(key)
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


@router.get("/cases/{case_id}")
def case_page(request: Request, case_id: str) -> Response:
    found = _party(request)
    if found is None:
        return _to_login(request)
    party, token = found
    sessions = request.app.state.sessions
    with sessions() as session, session.begin():
        try:
            case = service.case_view(session, case_id, caller_of(party))
        except Problem as exc:
            if exc.status == 404:
                return _render(
                    request,
                    "queue.html",
                    {"assignments": [], "flash_error": exc.detail},
                    party=party,
                    token=token,
                    status_code=404,
                )
            raise
    client: ComplaintsClient = request.app.state.complaints
    remote: dict[str, Any] = {}
    complaints_error = False
    try:
        remote = client.get_case(case_id, token)
    except ComplaintsUnavailable:
        complaints_error = True
    timeline = [
        {**t, "actor": t["actor"]["role"], "summary": t["summary"]} for t in case["timeline"]
    ] + [_entry(e) for e in remote.get("timeline", []) if remote]
    timeline.sort(key=_sort_key)
    order = remote.get("order") if isinstance(remote.get("order"), dict) else {}
    # Mediation keeps the consumer's contact masked from case.escalated; complaints' copy (if
    # it ever sends one) is masked here before it reaches the page.
    own = {k: v for k, v in case["consumer"].items() if v}
    consumer = own or _mask_person(remote.get("consumer") or (order or {}).get("buyer"))
    messages = _list(remote, "messages") or [
        {**e, "author_role": (e.get("actor") or {}).get("role", ""), "created_at": e.get("at")}
        for e in _list(remote, "timeline")
        if e.get("kind") == "message"
    ]
    sla = sla_colour(
        datetime.fromisoformat(case["my_due_at"]) if case["my_due_at"] else None, utcnow()
    )
    return _render(
        request,
        "case.html",
        {
            "case": case,
            "order": order or {},
            "consumer": consumer,
            "timeline": timeline,
            "messages": messages,
            "evidence": _list(remote, "evidence"),
            "offers": _list(remote, "offers"),
            "complaints_error": complaints_error,
            "outcomes": OUTCOMES,
            "sla": sla,
        },
        party=party,
        token=token,
    )


def _act(request: Request, case_id: str, csrf: str, action: Any) -> Response:
    found = _party(request)
    if found is None:
        return _to_login(request)
    party, token = found
    _check_csrf(request, token, csrf)
    back = f"/dashboard/cases/{case_id}"
    sessions = request.app.state.sessions
    try:
        with sessions() as session, session.begin():
            action(session, caller_of(party), token)
    except Problem as exc:
        return RedirectResponse(f"{back}?error={quote(exc.detail)}", status_code=303)
    return RedirectResponse(f"{back}?done=1", status_code=303)


def _amount(raw: str) -> int | None:
    raw = raw.strip().replace(".", "").replace(",", "")
    if not raw:
        return None
    if not raw.isdigit():
        raise Problem(422, "Unprocessable Content", "amount: must be a whole number of đồng")
    return int(raw)


@router.post("/cases/{case_id}/message")
def act_message(
    request: Request, case_id: str, body: str = Form(...), csrf: str = Form("")
) -> Response:
    found = _party(request)
    if found is None:
        return _to_login(request)
    party, token = found
    _check_csrf(request, token, csrf)
    back = f"/dashboard/cases/{case_id}"
    try:
        send_message(request, case_id, caller_of(party), token, body)
    except Problem as exc:
        return RedirectResponse(f"{back}?error={quote(exc.detail)}", status_code=303)
    return RedirectResponse(f"{back}?done=1", status_code=303)


@router.post("/cases/{case_id}/propose")
def act_propose(
    request: Request,
    case_id: str,
    outcome: str = Form(...),
    amount: str = Form(""),
    terms: str = Form(...),
    csrf: str = Form(""),
) -> Response:
    def run(session: Session, caller: service.Caller, _token: str) -> None:
        service.make_proposal(session, case_id, caller, outcome, _amount(amount), terms)

    return _act(request, case_id, csrf, run)


@router.post("/cases/{case_id}/escalate")
def act_escalate(
    request: Request, case_id: str, reason: str = Form(...), csrf: str = Form("")
) -> Response:
    def run(session: Session, caller: service.Caller, _token: str) -> None:
        service.escalate_to_arbitration(session, case_id, caller, reason, settings_of(request))

    return _act(request, case_id, csrf, run)


@router.post("/cases/{case_id}/decide")
def act_decide(
    request: Request,
    case_id: str,
    outcome: str = Form(...),
    amount: str = Form(""),
    reasons: str = Form(...),
    csrf: str = Form(""),
) -> Response:
    def run(session: Session, caller: service.Caller, _token: str) -> None:
        if len(reasons.strip()) < 10:
            raise Problem(422, "Unprocessable Content", "reasons: give at least 10 characters")
        service.submit_decision(
            session, case_id, caller, outcome, _amount(amount), reasons, settings_of(request)
        )

    return _act(request, case_id, csrf, run)
