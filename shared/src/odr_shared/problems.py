"""RFC 9457 problem+json for every error a service answers."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"


class Problem(Exception):
    """Raise from a route or a service function to answer a problem+json document."""

    def __init__(
        self,
        status: int,
        title: str,
        detail: str,
        *,
        type_: str = "about:blank",
        headers: dict[str, str] | None = None,
        **extensions: Any,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.title = title
        self.detail = detail
        self.type = type_
        self.headers = headers or {}
        self.extensions = extensions


def problem_response(
    status: int,
    title: str,
    detail: str,
    *,
    instance: str | None = None,
    type_: str = "about:blank",
    headers: dict[str, str] | None = None,
    **extensions: Any,
) -> JSONResponse:
    body: dict[str, Any] = {"type": type_, "title": title, "status": status, "detail": detail}
    if instance:
        body["instance"] = instance
    body.update(extensions)
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def answer_problem(exc: Problem, path: str) -> JSONResponse:
    """The problem+json answer to a raised Problem (also for ASGI code outside the routes)."""
    return problem_response(
        exc.status,
        exc.title,
        exc.detail,
        instance=path,
        type_=exc.type,
        headers=exc.headers,
        **exc.extensions,
    )


def answer_unexpected(path: str) -> JSONResponse:
    """Call inside the `except` block: logs the error, answers 500 without its details."""
    log.exception("unhandled error", extra={"path": path})
    return problem_response(
        500, "Internal Server Error", "an unexpected error occurred", instance=path
    )


def not_found(what: str = "resource") -> Problem:
    return Problem(404, "Not Found", f"no such {what}")


def _field(loc: tuple[Any, ...] | list[Any]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header", "form")]
    return ".".join(parts) or ".".join(str(p) for p in loc)


def validation_errors(errors: Any) -> list[dict[str, str]]:
    return [{"field": _field(e.get("loc", ())), "reason": str(e.get("msg", ""))} for e in errors]


def install_problem_handlers(app: FastAPI) -> None:
    @app.exception_handler(Problem)
    async def _problem(request: Request, exc: Problem) -> JSONResponse:
        return answer_problem(exc, request.url.path)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = validation_errors(exc.errors())
        first = errors[0] if errors else {"field": "body", "reason": "invalid"}
        return problem_response(
            422,
            "Unprocessable Content",
            f"{first['field']}: {first['reason']}",
            instance=request.url.path,
            errors=errors,
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        titles = {404: "Not Found", 405: "Method Not Allowed", 401: "Unauthorized"}
        return problem_response(
            exc.status_code,
            titles.get(exc.status_code, "Error"),
            str(exc.detail),
            instance=request.url.path,
            headers=getattr(exc, "headers", None),
        )

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        return answer_unexpected(request.url.path)


PROBLEM_SCHEMA: dict[str, Any] = {
    "title": "Problem",
    "type": "object",
    "description": "RFC 9457 problem details",
    "required": ["title", "status"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "instance": {"type": "string"},
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"field": {"type": "string"}, "reason": {"type": "string"}},
            },
        },
    },
}


def document_problems(app: FastAPI) -> None:
    """Make /openapi.json say what the handlers above answer: FastAPI documents its own
    `HTTPValidationError` JSON for 422, but every error here is problem+json."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = build()
        schema.setdefault("components", {}).setdefault("schemas", {})["Problem"] = PROBLEM_SCHEMA
        ref = {"schema": {"$ref": "#/components/schemas/Problem"}}
        for path_item in schema.get("paths", {}).values():
            for operation in path_item.values():
                if not isinstance(operation, dict):
                    continue
                for status, response in operation.get("responses", {}).items():
                    if status[:1] in ("4", "5") and isinstance(response, dict):
                        response["content"] = {PROBLEM_JSON: ref}
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
