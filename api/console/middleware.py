"""What every console answer carries, pages, redirects, errors and static files alike: the
security headers, its server time, and the cookies of a session renewed while serving it.

A plain ASGI middleware that passes every other path straight through (the API's hot paths
pay nothing for the console).
"""

from __future__ import annotations

import time

from fastapi import Request, Response
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.console.session import PATH, renewed_on, set_session_cookies

CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
}


def is_console_path(path: str) -> bool:
    return path == PATH or path.startswith(PATH + "/")


class ConsoleResponseMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not is_console_path(scope["path"]):
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers.update(SECURITY_HEADERS)
                if not scope["path"].startswith(f"{PATH}/static/"):
                    headers["Cache-Control"] = "no-store"
                headers["Server-Timing"] = f"app;dur={(time.perf_counter() - started) * 1000:.1f}"
                for cookie in _renewed_session_cookies(scope):
                    headers.append("set-cookie", cookie)
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _renewed_session_cookies(scope: Scope) -> list[str]:
    request = Request(scope)
    renewed = renewed_on(request)
    if renewed is None:
        return []
    carrier = Response()
    set_session_cookies(carrier, request, renewed)
    return [value.decode("latin-1") for name, value in carrier.raw_headers if name == b"set-cookie"]
