"""Rendering console pages: one Jinja2 environment, its filters, and the response every page returns."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.templating import Jinja2Templates
from markupsafe import Markup, escape

from api.console.session import Viewer, remember_csrf

TEMPLATES = Jinja2Templates(directory=Path(__file__).parent / "templates")


def when(value: datetime | None) -> Markup:
    """A time in UTC, marked up for console.js to show in the viewer's zone (UTC stays on hover)."""
    if value is None:
        return Markup('<span class="muted">—</span>')
    utc = value.astimezone(UTC)
    iso = utc.isoformat(timespec="seconds").replace("+00:00", "Z")
    shown = utc.strftime("%Y-%m-%d %H:%M:%S UTC")
    return Markup(f'<time datetime="{iso}" title="{shown}">{shown}</time>')


def status_badge(value: str | None) -> Markup:
    if not value:
        return Markup('<span class="muted">—</span>')
    kind = str(value).lower()
    return Markup(f'<span class="badge badge-{escape(kind)}">{escape(value)}</span>')


TEMPLATES.env.filters["when"] = when
TEMPLATES.env.filters["badge"] = status_badge
TEMPLATES.env.globals["now"] = lambda: datetime.now(UTC)


def render(request: Request, viewer: Viewer | None, template: str, *, status_code: int = 200, **context: Any):
    """The page, with the browser's CSRF cookie when it is new."""
    csrf = viewer.csrf_token if viewer else context.pop("csrf_token")
    response = TEMPLATES.TemplateResponse(
        request, template, {"viewer": viewer, "csrf_token": csrf, **context}, status_code=status_code
    )
    remember_csrf(response, request, csrf)
    return response
