"""Driving the console with a test client: sign in through the form, read CSRF tokens, post forms."""

from __future__ import annotations

import re
import uuid

from fastapi.testclient import TestClient

from api.auth.roles import PlatformRole
from api.auth.users import create_user
from api.db.session import Scope
from api.services import Services
from tests.api.conftest import STRONG_PASSWORD

CSRF_INPUT = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_of(html: str) -> str:
    found = CSRF_INPUT.search(html)
    assert found, "the page has no form with a CSRF token"
    return found.group(1)


def console_login(client: TestClient, email: str, password: str = STRONG_PASSWORD, *, next_url: str | None = None):
    """Sign in through the login form; answers the form post's response (303 on success)."""
    form = client.get("/console/login")
    assert form.status_code == 200, form.text
    data = {"email": email, "password": password, "csrf_token": csrf_of(form.text)}
    if next_url:
        data["next"] = next_url
    return client.post("/console/login", data=data, follow_redirects=False)


def platform_viewer(client: TestClient, services: Services, role: PlatformRole) -> str:
    """A platform user signed in to the console in ``client``; answers its email."""
    email = f"{role.value}-{uuid.uuid4().hex[:8]}@platform.example.com"
    with services.db.transaction(Scope.system()) as session:
        create_user(session, email, STRONG_PASSWORD, platform_role=role)
    assert console_login(client, email).status_code == 303
    return email


def post_form(client: TestClient, page_url: str, action: str, data: dict | None = None):
    """Post a form the way the browser would: with the CSRF token of the page it is on."""
    page = client.get(page_url)
    assert page.status_code == 200, page.text
    return client.post(action, data={"csrf_token": csrf_of(page.text), **(data or {})}, follow_redirects=False)


def forged_post(client: TestClient, action: str, data: dict | None = None, *, page_url: str = "/console/tenants"):
    """A post to ``action`` with a valid CSRF token taken from a page the viewer may open:
    what a viewer crafting the request by hand could send."""
    return post_form(client, page_url, action, data)
