"""The redirect after a successful form post (Post/Redirect/Get).

When the viewer's access token was renewed on this request, its refresh token was used up:
the redirect must carry the new cookies, or the browser's next request would present the
used one, which ends the session as a reuse.
"""

from __future__ import annotations

from fastapi import Request
from fastapi.responses import RedirectResponse

from api.console.session import Viewer, set_session_cookies


def see_other(request: Request, viewer: Viewer | None, url: str) -> RedirectResponse:
    response = RedirectResponse(url, status_code=303)
    if viewer is not None and viewer.renewed:
        set_session_cookies(response, request, viewer.renewed)
    return response
