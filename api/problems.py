"""RFC 9457 problem details (``application/problem+json``) for every error the API returns."""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

PROBLEM_JSON = "application/problem+json"
log = logging.getLogger(__name__)


class ProblemDetails(BaseModel):
    """The OpenAPI shape of an error response."""

    model_config = ConfigDict(extra="allow")

    type: str
    title: str
    status: int
    detail: str | None = None
    instance: str | None = None


# A 429 always says when to try again; a 503 does when it knows (the secrets server, the mail relay).
_RETRY_AFTER = {"Retry-After": {"description": "Seconds to wait before trying again", "schema": {"type": "integer"}}}


def documented_problem(code: int, description: str | None = None) -> dict[str, Any]:
    """The OpenAPI response of one problem status; ``description`` names its problem types."""
    response: dict[str, Any] = {"model": ProblemDetails, "content": {PROBLEM_JSON: {}},
                                "description": description or HTTPStatus(code).phrase}
    if code in (429, 503):
        response["headers"] = _RETRY_AFTER
    return response


def problems(described: dict[int, str]) -> dict[int | str, dict[str, Any]]:
    """A route's own problem responses, by status. Those that follow from how the route is built
    (401, 403, 404 of its access check, 422 of its parameters, 503 of token keys) are added to
    the document by ``api.openapi``."""
    return {code: documented_problem(code, text) for code, text in described.items()}


class Problem(Exception):
    """Raise to answer with a problem document. ``code`` becomes the type URI ``/problems/<code>``."""

    def __init__(
        self,
        status: int,
        code: str,
        detail: str | None = None,
        *,
        title: str | None = None,
        headers: dict[str, str] | None = None,
        **extensions: Any,
    ) -> None:
        super().__init__(detail or code)
        self.status = status
        self.code = code
        self.title = title or HTTPStatus(status).phrase
        self.detail = detail
        self.headers = headers
        self.extensions = extensions


def not_found(what: str) -> Problem:
    return Problem(404, "not-found", f"{what} does not exist or you have no access to it.")


def forbidden(detail: str) -> Problem:
    return Problem(403, "forbidden", detail)


def unauthorized(detail: str) -> Problem:
    return Problem(401, "unauthorized", detail, headers={"WWW-Authenticate": "Bearer"})


def too_many_requests(code: str, detail: str, retry_after: int) -> Problem:
    return Problem(429, code, detail, headers={"Retry-After": str(retry_after)})


def problem_response(
    request: Request,
    status: int,
    code: str,
    title: str,
    detail: str | None,
    headers: dict[str, str] | None = None,
    **extensions: Any,
) -> JSONResponse:
    body = {"type": f"/problems/{code}", "title": title, "status": status, "instance": request.url.path}
    if detail:
        body["detail"] = detail
    body.update(extensions)
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


async def _problem(request: Request, exc: Problem) -> JSONResponse:
    return problem_response(request, exc.status, exc.code, exc.title, exc.detail, exc.headers, **exc.extensions)


def allowed_methods(request: Request) -> str:
    """Every method of the request's path, for a 405's ``Allow``. Starlette's router lists only
    those of the first route matching the path, and FastAPI makes one route per method."""
    methods: set[str] = set()
    for route in request.app.router.routes:
        match, _ = route.matches(request.scope)
        if match is not Match.NONE:
            methods.update(getattr(route, "methods", None) or ())
    return ", ".join(sorted(methods))


async def _http_exception(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    code = HTTPStatus(exc.status_code).phrase.lower().replace(" ", "-")
    title = HTTPStatus(exc.status_code).phrase
    detail = exc.detail if isinstance(exc.detail, str) and exc.detail != title else None
    headers = dict(getattr(exc, "headers", None) or {})
    if exc.status_code == 405:
        headers["Allow"] = allowed_methods(request)
    return problem_response(request, exc.status_code, code, title, detail, headers or None)


async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    errors = [
        {"location": list(map(str, err.get("loc", ()))), "message": err.get("msg", ""), "type": err.get("type", "")}
        for err in exc.errors()
    ]
    summary = "; ".join(f"{'.'.join(e['location'])}: {e['message']}" for e in errors)
    return problem_response(request, 422, "validation-error", "Request validation failed", summary, errors=errors)


async def _unhandled(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return problem_response(request, 500, "internal-error", "Internal Server Error", "An unexpected error occurred.")


def install_problem_handlers(app: FastAPI) -> None:
    app.add_exception_handler(Problem, _problem)
    app.add_exception_handler(StarletteHTTPException, _http_exception)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(Exception, _unhandled)
