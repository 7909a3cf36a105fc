"""Per-request plumbing: request id, access log, metrics, and the audit safety net.

Handlers audit their own state changes with meaningful action names. A state-changing
request that ends without any audit record (typically a rejected one: 401, 403, 404,
409, 422) gets a generic record here, so every such request leaves a trace.
"""

from __future__ import annotations

import logging
import time
import uuid

from fastapi import FastAPI, Request
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.audit.chain import AuditMeta, append
from api.db.session import Scope
from api.logs import request_id_var
from api.metrics import HTTP_DURATION, HTTP_REQUESTS

log = logging.getLogger("api.access")
STATE_CHANGING = {"POST", "PUT", "PATCH", "DELETE"}
_REQUEST_ID_OK = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")


def request_state(request: Request) -> dict:
    """Mutable per-request facts shared between middleware and handlers (lives in the ASGI scope)."""
    return request.scope.setdefault("cameleer", {"request_id": None, "audited": 0, "actor": None})


def _incoming_request_id(request: Request) -> str:
    candidate = request.headers.get("x-request-id", "")
    if 0 < len(candidate) <= 64 and set(candidate) <= _REQUEST_ID_OK:
        return candidate
    return uuid.uuid4().hex


def _route_label(request: Request) -> str:
    route = request.scope.get("route")
    return getattr(route, "path", "unmatched")


def _result_of(status: int) -> str:
    if status < 400:
        return "success"
    return "denied" if status in (401, 403, 404) else ("error" if status >= 500 else "rejected")


class RequestContextMiddleware:
    """A plain ASGI middleware (Starlette's BaseHTTPMiddleware runs each request in a task
    group with memory streams: a measurable share of a short request's time). The access
    log, the metrics and the audit safety net run when the response starts, before it is
    sent, as they did after ``call_next``."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        state = request_state(request)
        state["request_id"] = _incoming_request_id(request)
        token = request_id_var.set(state["request_id"])
        started = time.perf_counter()

        async def send_with_context(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message)["X-Request-ID"] = state["request_id"]
                self._finished(request, state, message["status"], time.perf_counter() - started)
            await send(message)

        try:
            await self.app(scope, receive, send_with_context)
        finally:
            request_id_var.reset(token)

    def _finished(self, request: Request, state: dict, status: int, elapsed: float) -> None:
        route = _route_label(request)
        HTTP_REQUESTS.labels(request.method, route, str(status)).inc()
        HTTP_DURATION.labels(request.method, route).observe(elapsed)
        log.info(
            "%s %s -> %s",
            request.method,
            route,
            status,
            extra={"request_id": state["request_id"], "duration_ms": round(elapsed * 1000, 1)},
        )
        if request.method in STATE_CHANGING and state["audited"] == 0:
            self._audit_unrecorded(request, state, status)

    @staticmethod
    def _audit_unrecorded(request: Request, state: dict, status: int) -> None:
        services = getattr(request.app.state, "services", None)
        if services is None:
            return
        meta = AuditMeta(
            actor=state.get("actor") or "anonymous",
            source_ip=request.client.host if request.client else None,
            request_id=state["request_id"],
        )
        try:
            with services.db.transaction(Scope.system()) as session:
                append(
                    session,
                    meta,
                    f"http.{request.method.lower()}",
                    f"{request.method} {request.url.path}",
                    result=_result_of(status),
                    details={"status": status},
                )
        except Exception:  # the response is already decided; never fail it here
            log.exception("could not write the audit record of a rejected request")


def install_middleware(app: FastAPI) -> None:
    app.add_middleware(RequestContextMiddleware)
