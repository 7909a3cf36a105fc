"""The OpenAPI document lists, for each operation, the problem responses it can give.

A route declares the ones of its own logic (``api.problems.problems``: a 409 of a state, a 429
of a limit, ...). Those that follow from how the route is built are added here, from the route
itself, so that no route forgets one:

* an access token read (``bearer``, required or optional): 401, and 503 (its keys are in the secrets server);
* a role check: 403; a role check on a tenant or an operation named in the path: 404;
* parameters or a body: 422 ``/problems/validation-error`` (FastAPI's own 422 schema is not
  what the server answers); a body: 400, when it cannot be parsed at all.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from pydantic import TypeAdapter

from api.auth.dependencies import OperationAccess, PlatformAccess, TenantAccess, bearer
from api.problems import PROBLEM_JSON, ProblemDetails

_GENERIC = {
    400: "`/problems/bad-request`: the body cannot be parsed",
    401: "`/problems/unauthorized`: no access token, or one that is invalid, expired or revoked",
    403: "`/problems/forbidden`: the caller's role does not allow this",
    404: "`/problems/not-found`: no such resource, or none the caller may see",
    422: "`/problems/validation-error`: the request does not match this document (`errors` says where)",
    503: "`/problems/secrets-unavailable`: the secrets server cannot verify or sign now (`Retry-After`)",
}
_PROBLEM_SCHEMA = {"$ref": "#/components/schemas/ProblemDetails"}


def _calls(dependant: Dependant) -> Iterator[Any]:
    for dependency in dependant.dependencies:
        yield dependency.call
        yield from _calls(dependency)


def _derived_statuses(route: APIRoute, operation: dict[str, Any]) -> set[int]:
    calls = list(_calls(route.dependant))
    statuses: set[int] = set()
    if any(call is bearer for call in calls):
        statuses |= {401, 503}
    if any(isinstance(call, (TenantAccess, OperationAccess, PlatformAccess)) for call in calls):
        statuses.add(403)
    if any(isinstance(call, (TenantAccess, OperationAccess)) for call in calls):
        statuses.add(404)
    if operation.get("parameters") or operation.get("requestBody"):
        statuses.add(422)
    if operation.get("requestBody"):
        statuses.add(400)
    return statuses


def _problem(code: int) -> dict[str, Any]:
    response: dict[str, Any] = {"description": _GENERIC[code], "content": {PROBLEM_JSON: {"schema": _PROBLEM_SCHEMA}}}
    if code == 503:
        response["headers"] = {"Retry-After": {"description": "Seconds to wait before trying again",
                                               "schema": {"type": "integer"}}}
    return response


def _is_fastapis_422(response: dict[str, Any]) -> bool:
    return "application/json" in response.get("content", {})


def _complete(document: dict[str, Any], routes: list[APIRoute]) -> None:
    for route in routes:
        for method in route.methods:
            operation = document["paths"][route.path_format][method.lower()]
            responses = operation["responses"]
            for code in sorted(_derived_statuses(route, operation)):
                if str(code) not in responses or (code == 422 and _is_fastapis_422(responses["422"])):
                    responses[str(code)] = _problem(code)
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    schemas.setdefault("ProblemDetails", TypeAdapter(ProblemDetails).json_schema(ref_template="#/components/schemas/{model}"))
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)


def install_openapi(app: FastAPI) -> None:
    build: Callable[[], dict[str, Any]] = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = build()
            routes = [r for r in app.routes if isinstance(r, APIRoute) and r.include_in_schema]
            _complete(document, routes)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
