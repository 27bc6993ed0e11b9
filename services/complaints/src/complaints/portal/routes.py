"""Portal routes: forms in, use cases called, pages out (post/redirect/get)."""

from __future__ import annotations

import hmac
import inspect
import re
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from pydantic import ValidationError
from starlette.datastructures import UploadFile

from complaints import service
from complaints.api import order_for_caller
from complaints.domain import CATEGORIES, DESIRED_OUTCOMES, VN_TZ
from complaints.portal.i18n import LANGUAGES, TEXT, translate, translate_reason
from complaints.schemas import CaseIn
from complaints.service import Deps
from complaints.storage import content_disposition
from odr_shared.auth import InvalidToken, Party
from odr_shared.problems import Problem

router = APIRouter(include_in_schema=False)
templates = Jinja2Templates(directory=Path(__file__).parent / "templates")
SESSION_COOKIE = "odr_portal"
SECURITY_HEADERS = {
    # No script and no framing: the portal needs neither.
    "Content-Security-Policy": "default-src 'self'; script-src 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}
LANG_COOKIE = "odr_lang"
# The ids of this browser's latest data requests (ids only: each page still needs the owner's
# token), so a buyer who signs in again days later finds them on the order page.
PRIVACY_REQUESTS_COOKIE = "odr_privacy_requests"
KEEP_PRIVACY_REQUESTS = 5
PRIVACY_KINDS = ("access", "erasure")
REQUEST_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,100}$")


def _vntime(value: str | datetime | None) -> str:
    if not value:
        return ""
    at = datetime.fromisoformat(value) if isinstance(value, str) else value
    return at.astimezone(VN_TZ).strftime("%d/%m/%Y %H:%M")


def _money(value: int | None) -> str:
    return "" if value is None else f"{value:,}".replace(",", ".") + " ₫"


def _vnwhen(value: str | datetime | None) -> str:
    """Like vntime, for values that may be a bare date ("2026-12-04") or a naive UTC time."""
    if not value:
        return ""
    if isinstance(value, str) and len(value) == 10:
        return datetime.fromisoformat(value).strftime("%d/%m/%Y")
    at = datetime.fromisoformat(value) if isinstance(value, str) else value
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    return at.astimezone(VN_TZ).strftime("%d/%m/%Y %H:%M")


templates.env.filters["vntime"] = _vntime
templates.env.filters["vnwhen"] = _vnwhen
templates.env.filters["money"] = _money

# Cases a neutral (mediator or arbitrator) already holds: evidence added now reaches them.
WITH_NEUTRAL = ("escalated", "in_mediation", "in_arbitration")
CONSENT_FIELD = "consent_share_with_neutral"


def _deps(request: Request) -> Deps:
    deps: Deps = request.app.state.deps
    return deps


def _lang(request: Request) -> str:
    lang = request.query_params.get("lang") or request.cookies.get(LANG_COOKIE) or "vi"
    return lang if lang in LANGUAGES else "vi"


def _party(request: Request) -> Party | None:
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        return None
    try:
        party = _deps(request).tokens.verify(token)
    except InvalidToken:
        return None
    return party if party.role == "consumer" else None


def _csrf(request: Request, party: Party) -> str:
    return _deps(request).cipher.lookup_hash(f"csrf:{party.token_id}")


def _render(request: Request, name: str, status: int = 200, **ctx: Any) -> HTMLResponse:
    lang = _lang(request)
    party = _party(request)
    if (
        ctx.get("error")
        and ctx["error"] not in TEXT
        and ctx["error"] not in ("too_many", "bad_code")
    ):
        ctx["error"] = "err_conflict"
    ctx.update(
        lang=lang,
        t=lambda key, **kw: translate(key, lang).format(**kw) if kw else translate(key, lang),
        reason=lambda text: translate_reason(text, lang),
        other_lang="en" if lang == "vi" else "vi",
        signed_in=party is not None,
        csrf=_csrf(request, party) if party else "",
        categories=CATEGORIES,
        outcomes=DESIRED_OUTCOMES,
    )
    response = templates.TemplateResponse(request, name, ctx, status_code=status)
    response.headers.update(SECURITY_HEADERS)
    if request.query_params.get("lang") in LANGUAGES:
        response.set_cookie(LANG_COOKIE, lang, max_age=365 * 86400, samesite="lax")
    return response


def _signed_in(request: Request, csrf: str | None = None) -> Party:
    party = _party(request)
    if party is None:
        raise _Redirect("/?e=err_session")
    if csrf is not None and not hmac.compare_digest(csrf, _csrf(request, party)):
        raise Problem(403, "Forbidden", "csrf: the form is stale; reload the page")
    return party


class _Redirect(Exception):
    def __init__(self, url: str) -> None:
        self.url = url


def _see_other(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)


def _error_key(exc: Problem) -> str:
    return {413: "err_too_large", 415: "err_type", 422: "err_invalid"}.get(
        exc.status, "err_conflict"
    )


def _consent(form: Any) -> bool:
    """The buyer ticked "I agree that my evidence is shared with the neutral"."""
    return str(form.get(CONSENT_FIELD) or "").lower() in ("yes", "on", "true", "1")


def _call(fn: Callable[..., Any], *args: Any, consent: bool) -> Any:
    """Call a use case, handing it the consent when it takes a `consent_share_with_neutral`."""
    if CONSENT_FIELD in inspect.signature(fn).parameters:
        return fn(*args, **{CONSENT_FIELD: consent})
    return fn(*args)


@router.get("/", response_class=HTMLResponse)
def home(request: Request) -> Response:
    return _render(request, "lookup.html", error=request.query_params.get("e"))


@router.post("/portal/otp", response_class=HTMLResponse)
def send_code(
    request: Request, order_code: Annotated[str, Form()], phone: Annotated[str, Form()]
) -> Response:
    ip = request.client.host if request.client else "unknown"
    try:
        service.request_otp(_deps(request), order_code, phone, ip, _lang(request))
    except Problem as exc:
        if exc.status != 429:
            raise
        return _render(
            request, "lookup.html", 429, error="too_many", retry=exc.extensions.get("retry_after")
        )
    return _render(request, "verify.html", order_code=order_code, phone=phone)


@router.post("/portal/verify", response_class=HTMLResponse)
def verify_code(
    request: Request,
    order_code: Annotated[str, Form()],
    phone: Annotated[str, Form()],
    code: Annotated[str, Form()],
) -> Response:
    deps = _deps(request)
    ip = request.client.host if request.client else "unknown"
    try:
        token = service.verify_otp(deps, order_code, phone, code, ip)
    except Problem as exc:
        err = "too_many" if exc.status == 429 else "bad_code"
        return _render(
            request,
            "verify.html",
            400 if exc.status != 429 else 429,
            order_code=order_code,
            phone=phone,
            error=err,
            retry=exc.extensions.get("retry_after"),
        )
    response = _see_other("/order")
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=deps.settings.consumer_token_ttl_s,
        httponly=True,
        samesite="lax",
        secure=deps.settings.secure_cookies,
    )
    return response


@router.post("/portal/logout")
def logout() -> Response:
    response = _see_other("/")
    response.delete_cookie(SESSION_COOKIE)
    return response


def recent_requests(request: Request) -> list[dict[str, str]]:
    """This browser's latest requests, newest first: [{id, kind}]."""
    out = []
    for item in request.cookies.get(PRIVACY_REQUESTS_COOKIE, "").split("|"):
        request_id, _, kind = item.partition("~")
        if kind in PRIVACY_KINDS and REQUEST_ID.match(request_id):
            out.append({"id": request_id, "kind": kind})
    return out[:KEEP_PRIVACY_REQUESTS]


def remember_request(request: Request, response: Response, request_id: str, kind: str) -> None:
    kept = [r for r in recent_requests(request) if r["id"] != request_id]
    items = [f"{request_id}~{kind}", *(f"{r['id']}~{r['kind']}" for r in kept)]
    response.set_cookie(
        PRIVACY_REQUESTS_COOKIE,
        "|".join(items[:KEEP_PRIVACY_REQUESTS]),  # no quoting needed: ~ and | are cookie-safe
        max_age=30 * 86400,
        httponly=True,
        samesite="lax",
        secure=_deps(request).settings.secure_cookies,
    )


def _order_page(request: Request, party: Party, **ctx: Any) -> Response:
    deps = _deps(request)
    order_code = (party.order_id or "").partition(":")[2]
    order = order_for_caller(deps, party, order_code, None)
    open_case = next(
        (c for c in order["cases"] if c["status"] not in ("resolved", "closed", "withdrawn")), None
    )
    return _render(
        request,
        "order.html",
        order=order,
        open_case=open_case,
        privacy_requests=recent_requests(request),
        **ctx,
    )


@router.get("/order", response_class=HTMLResponse)
def order_page(request: Request) -> Response:
    try:
        party = _signed_in(request)
    except _Redirect as r:
        return _see_other(r.url)
    return _order_page(request, party, error=request.query_params.get("e"), form={})


@router.post("/portal/cases", response_class=HTMLResponse)
async def file_case(request: Request) -> Response:
    form = await request.form()
    try:
        party = _signed_in(request, str(form.get("csrf", "")))
    except _Redirect as r:
        return _see_other(r.url)
    deps = _deps(request)
    fields = {k: str(v) for k, v in form.items() if isinstance(v, str)}
    amount = fields.get("claimed_amount", "").replace(".", "").replace(",", "").strip()
    try:
        body = CaseIn(
            order_code=(party.order_id or "").partition(":")[2],
            category=fields.get("category", ""),
            description=fields.get("description", ""),
            desired_outcome=fields.get("desired_outcome", ""),
            claimed_amount=int(amount) if amount.isdigit() else None,
            language=_lang(request),
        )
    except ValidationError as exc:
        bad = sorted({str(e["loc"][0]) for e in exc.errors()})
        return _order_page(request, party, error="err_invalid", bad_fields=bad, form=fields)
    try:
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
    except Problem as exc:
        if exc.status == 409 and exc.extensions.get("case_id"):
            return _see_other(f"/cases/{exc.extensions['case_id']}")
        raise
    error = ""
    for upload in form.getlist("evidence"):
        if isinstance(upload, str) or not upload.filename:
            continue
        error = await _upload(deps, party, rec.id, upload, _consent(form)) or error
    return _see_other(f"/cases/{rec.id}" + (f"?e={error}" if error else ""))


async def _upload(
    deps: Deps, party: Party, case_id: str, upload: UploadFile, consent: bool
) -> str | None:
    content = await upload.read(deps.settings.evidence_max_bytes + 1)
    try:
        name = upload.filename or "evidence"
        _call(service.add_evidence, deps, party, case_id, name, content, consent=consent)
    except Problem as exc:
        return _error_key(exc)
    return None


@router.get("/cases/{case_id}", response_class=HTMLResponse)
def case_page(request: Request, case_id: str) -> Response:
    try:
        party = _signed_in(request)
    except _Redirect as r:
        return _see_other(r.url)
    try:
        case = service.get_case(_deps(request), party, case_id)
    except Problem as exc:
        if exc.status != 404:
            raise
        return _render(request, "not_found.html", 404)
    return _render(
        request,
        "case.html",
        case=case,
        with_neutral=case["status"] in WITH_NEUTRAL,
        error=request.query_params.get("e"),
    )


@router.get("/cases/{case_id}/evidence/{evidence_id}")
def evidence_file(request: Request, case_id: str, evidence_id: str) -> Response:
    try:
        party = _signed_in(request)
    except _Redirect as r:
        return _see_other(r.url)
    ev, content = service.read_evidence(_deps(request), party, case_id, evidence_id)
    return Response(
        content,
        media_type=ev.content_type,
        headers={
            "Content-Disposition": content_disposition("inline", ev.filename),
            "X-Content-Type-Options": "nosniff",
            "Content-Security-Policy": "default-src 'none'; img-src 'self'; media-src 'self'",
        },
    )


@router.post("/cases/{case_id}/{action}", response_class=HTMLResponse)
@router.post("/cases/{case_id}/{thing}/{item_id}/{action}", response_class=HTMLResponse)
async def case_action(
    request: Request,
    case_id: str,
    action: str,
    thing: str | None = None,
    item_id: str | None = None,
) -> Response:
    form = await request.form()
    try:
        party = _signed_in(request, str(form.get("csrf", "")))
    except _Redirect as r:
        return _see_other(r.url)
    deps = _deps(request)
    reason = str(form.get("reason") or "").strip() or None
    error: str | None = None
    try:
        if thing is None and action == "messages":
            text = str(form.get("text") or "").strip()
            if text:
                service.post_message(deps, party, case_id, text[:5000])
        elif thing is None and action == "evidence":
            upload = form.get("evidence")
            if isinstance(upload, UploadFile) and upload.filename:
                # Once a neutral holds the case, new evidence reaches them: consent first.
                status = service.get_case(deps, party, case_id)["status"]
                if status in WITH_NEUTRAL and not _consent(form):
                    error = "err_consent"
                else:
                    error = await _upload(deps, party, case_id, upload, _consent(form))
        elif thing is None and action == "escalate":
            # Escalating hands the case file, evidence included, to a neutral: consent first.
            if _consent(form):
                _call(service.escalate, deps, party, case_id, reason, consent=True)
            else:
                error = "err_consent"
        elif thing is None and action == "withdraw":
            service.withdraw(deps, party, case_id, reason)
        elif thing == "offers" and item_id and action in ("accept", "reject"):
            service.answer_offer(deps, party, case_id, item_id, action == "accept", reason)
        elif thing == "proposals" and item_id and action in ("accept", "reject"):
            service.answer_proposal(deps, party, case_id, item_id, action == "accept", reason)
        else:
            raise Problem(404, "Not Found", "no such page")
    except Problem as exc:
        if exc.status in (401, 403, 404):
            raise
        error = _error_key(exc)
    url = f"/cases/{quote(case_id)}"
    return _see_other(url + (f"?e={error}" if error else ""))
