"""Console errors: an HTML page with the reason, never a stack trace."""

from __future__ import annotations

from fastapi import Request

from api.console.session import csrf_token
from api.console.templating import render


class ConsoleError(Exception):
    def __init__(self, status: int, title: str, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.title = title
        self.detail = detail


def render_error(request: Request, status: int, title: str, detail: str):
    return render(request, None, "error.html", status_code=status, title=title, detail=detail,
                  csrf_token=csrf_token(request))
