"""What console pages depend on: the viewer, and form posts checked for CSRF."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Form, Request

from api.console.session import CSRF_FIELD, Viewer, check_csrf, viewer_of
from api.dependencies import ServicesDep


def current_viewer(request: Request, services: ServicesDep) -> Viewer:
    return viewer_of(request, services)


def checked_form(request: Request, csrf_token: Annotated[str | None, Form(alias=CSRF_FIELD)] = None) -> None:
    check_csrf(request, csrf_token)


ConsoleViewer = Annotated[Viewer, Depends(current_viewer)]
CsrfChecked = Depends(checked_form)
