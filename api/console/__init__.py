"""The operators' and auditors' console: server-rendered pages under ``/console``.

The pages read what the API reads, through the same sessions, roles and row-level security,
and change things only through the same domain functions (and so the same audit records).
Reading works without JavaScript; ``static/console.js`` adds local times and live progress.
"""

from __future__ import annotations

from http import HTTPStatus
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import RedirectResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from api.console.errors import ConsoleError, render_error
from api.console.middleware import ConsoleResponseMiddleware, is_console_path
from api.console.pages import PAGE_ROUTERS
from api.console.session import PATH, CsrfRefused, LoginRequired
from api.problems import Problem


def install_console(app: FastAPI) -> None:
    app.mount(f"{PATH}/static", StaticFiles(directory=Path(__file__).parent / "static"), name="console-static")
    for router in PAGE_ROUTERS:
        app.include_router(router, include_in_schema=False)
    app.add_exception_handler(LoginRequired, _to_login)
    app.add_exception_handler(CsrfRefused, _csrf_refused)
    app.add_exception_handler(ConsoleError, _console_error)
    for kind in (Problem, StarletteHTTPException, RequestValidationError):
        app.add_exception_handler(kind, _as_page_on_console(app.exception_handlers[kind]))
    app.add_middleware(ConsoleResponseMiddleware)


def _as_page_on_console(api_handler):
    """The API's handler answers problem documents; on a console path the same error is a page."""

    async def handler(request: Request, exc: Exception):
        if not is_console_path(request.url.path):
            return await api_handler(request, exc)
        if isinstance(exc, Problem):
            return render_error(request, exc.status, exc.title, exc.detail or exc.title)
        if isinstance(exc, RequestValidationError):
            return render_error(request, 422, "Not understood", "; ".join(e.get("msg", "") for e in exc.errors()))
        return render_error(request, exc.status_code, HTTPStatus(exc.status_code).phrase, str(exc.detail))

    return handler


async def _to_login(request: Request, exc: LoginRequired) -> RedirectResponse:
    return RedirectResponse(f"{PATH}/login?next={exc.next_url}", status_code=303)


async def _csrf_refused(request: Request, exc: CsrfRefused):
    return render_error(request, 403, "Request refused", str(exc))


async def _console_error(request: Request, exc: ConsoleError):
    return render_error(request, exc.status, exc.title, exc.detail)
