"""The portal's privacy pages: the notice, "Download my data" and "Delete my data".

The data-subject requests go through the JSON API's contract (`POST /v1/privacy/requests`,
`GET /v1/privacy/requests/{id}`), called in-process with the consumer token the portal keeps in
its session cookie (the token the SMS code flow issued): the portal adds forms, CSRF and pages,
and the API stays the one place the rules live. The status page refreshes itself (no script: the
portal's Content-Security-Policy allows none) until the request is completed or deferred.
"""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import quote

import httpx
from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse
from starlette.responses import RedirectResponse, Response

from complaints.api import order_for_caller
from complaints.portal.i18n import TEXT, translate, translate_privacy_reason
from complaints.portal.notice import notice_context
from complaints.portal.routes import (
    PRIVACY_KINDS,
    REQUEST_ID,
    SECURITY_HEADERS,
    SESSION_COOKIE,
    _deps,
    _lang,
    _Redirect,
    _render,
    _see_other,
    _signed_in,
    remember_request,
)
from odr_shared.auth import Party

router = APIRouter(include_in_schema=False)

API = "/v1/privacy/requests"
PENDING = ("received", "in_progress")
POLL_S = 5


@router.get("/privacy", response_class=HTMLResponse)
def privacy_notice(request: Request) -> Response:
    return _render(
        request, "privacy.html", **notice_context(_deps(request).settings, _lang(request))
    )


async def _api(
    request: Request, method: str, path: str, json: dict[str, Any] | None = None
) -> httpx.Response:
    """Call the service's own JSON API in-process as the signed-in consumer."""
    ip = request.client.host if request.client else "127.0.0.1"
    transport = httpx.ASGITransport(app=request.app, raise_app_exceptions=False, client=(ip, 0))
    token = request.cookies.get(SESSION_COOKIE, "")
    async with httpx.AsyncClient(transport=transport, base_url="http://portal.internal") as c:
        return await c.request(
            method,
            path,
            json=json,
            headers={"Authorization": f"Bearer {token}", "Accept-Language": _lang(request)},
        )


def _open_case(request: Request, party: Party) -> dict[str, Any] | None:
    order_code = (party.order_id or "").partition(":")[2]
    order = order_for_caller(_deps(request), party, order_code, None)
    return next(
        (c for c in order["cases"] if c["status"] not in ("resolved", "closed", "withdrawn")),
        None,
    )


@router.get("/privacy/erase", response_class=HTMLResponse)
def erase_page(request: Request) -> Response:
    try:
        party = _signed_in(request)
    except _Redirect as r:
        return _see_other(r.url)
    return _render(
        request,
        "privacy_erase.html",
        open_case=_open_case(request, party),
        error=request.query_params.get("e"),
    )


@router.post("/portal/privacy/requests", response_class=HTMLResponse)
async def make_request(
    request: Request,
    csrf: Annotated[str, Form()] = "",
    kind: Annotated[str, Form()] = "",
    confirm: Annotated[str, Form()] = "",
) -> Response:
    try:
        _signed_in(request, csrf)
    except _Redirect as r:
        return _see_other(r.url)
    if kind not in PRIVACY_KINDS:
        return _see_other("/order?e=err_invalid#privacy")
    if kind == "erasure" and confirm != "yes":
        # Erasure cannot be undone: it needs the explicit tick on the confirmation page.
        return _see_other("/privacy/erase?e=err_confirm")
    answer = await _api(request, "POST", API, {"kind": kind})
    body = _json(answer)
    request_id = str(body.get("request_id") or "")
    if answer.status_code in (200, 201, 202) and REQUEST_ID.match(request_id):
        response = _see_other(f"/privacy/requests/{quote(request_id)}?new=1")
        remember_request(request, response, request_id, kind)
        return response
    if answer.status_code == 409 and REQUEST_ID.match(request_id):
        # The same kind of request is already under way: show that one.
        return _see_other(f"/privacy/requests/{quote(request_id)}")
    if answer.status_code == 401:
        return _see_other("/?e=err_session")
    back = "/privacy/erase" if kind == "erasure" else "/order"
    if answer.status_code == 429:
        return _see_other(back + "?e=err_privacy_too_many")
    return _see_other(back + "?e=err_privacy_unavailable")


def _json(r: httpx.Response) -> dict[str, Any]:
    try:
        body = r.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


async def _fetch_request(request: Request, request_id: str) -> dict[str, Any] | Response | None:
    if not REQUEST_ID.match(request_id):
        return None
    answer = await _api(request, "GET", f"{API}/{quote(request_id)}")
    if answer.status_code == 401:
        return _see_other("/?e=err_session")
    if answer.status_code != 200:
        return None
    body = _json(answer)
    return body if body.get("kind") in PRIVACY_KINDS else None


@router.get("/privacy/requests/{request_id}", response_class=HTMLResponse)
async def request_page(request: Request, request_id: str) -> Response:
    try:
        _signed_in(request)
    except _Redirect as r:
        return _see_other(r.url)
    req = await _fetch_request(request, request_id)
    if isinstance(req, Response):
        return req
    if req is None:
        return _render(request, "not_found.html", 404)
    req.setdefault("request_id", request_id)
    status = str(req.get("status") or "received")
    req["status"] = status
    if req.get("reason"):
        req["reason"] = translate_privacy_reason(str(req["reason"]), _lang(request))
    download_url = None
    if req.get("export_url"):
        download_url = f"/privacy/requests/{quote(request_id)}/export"
    return _render(
        request,
        "privacy_request.html",
        req=req,
        new=request.query_params.get("new") == "1",
        polling=status in PENDING,
        poll_s=POLL_S,
        download_url=download_url,
        services=_services(req, _lang(request)),
    )


def _services(req: dict[str, Any], lang: str) -> list[dict[str, str]]:
    """Each service's part of the request, in the reader's words."""
    reports = req.get("services")
    rows = []
    for name, report in sorted(reports.items() if isinstance(reports, dict) else []):
        got = report if isinstance(report, dict) else {}
        status = str(got.get("status") or "in_progress")
        rows.append(
            {
                "name": str(name),
                "label": translate(f"svc_{name}", lang) if f"svc_{name}" in TEXT else str(name),
                "status": status,
                "status_label": translate(f"rs_{status}", lang)
                if f"rs_{status}" in TEXT
                else status,
                "until": str(got.get("until") or ""),
            }
        )
    return rows


@router.get("/privacy/requests/{request_id}/export")
async def download_export(request: Request, request_id: str) -> Response:
    """The export file, fetched for this buyer with their token: a link needs no bearer header."""
    try:
        _signed_in(request)
    except _Redirect as r:
        return _see_other(r.url)
    req = await _fetch_request(request, request_id)
    if isinstance(req, Response):
        return req
    url = str((req or {}).get("export_url") or "")
    if not url:
        return _render(request, "not_found.html", 404)
    base = str(_deps(request).settings.public_base_url).rstrip("/")
    if url.startswith(base + "/"):
        url = url[len(base) :]
    if not url.startswith("/"):
        # Elsewhere (a signed link to object storage): the browser goes there itself.
        return RedirectResponse(url, status_code=303)
    got = await _api(request, "GET", url)
    if got.status_code != 200:
        return _render(request, "not_found.html", 404)
    filename = f"du-lieu-cua-toi-{request_id}.json"
    return Response(
        got.content,
        media_type=got.headers.get("content-type", "application/json"),
        headers={
            **SECURITY_HEADERS,
            "Content-Disposition": f'attachment; filename="{filename}"',
            "Cache-Control": "no-store",
        },
    )
