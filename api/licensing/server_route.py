"""``GET /api/license/{tenant_id}`` with the tenant server's credential: the fleet's poll.

Every tenant server polls its license, so this is the request the API answers most. Through
FastAPI's route it cost 2 ms of CPU (dependency resolution, the thread-pool hop of a sync
handler, SQLAlchemy's checkout ping and ORM layers around a 0.1 ms query) and saturated one
process near 300 requests/s. This route answers it in the event loop instead: one prepared
statement on the async pool of api.db.async_reads, the secret from the process's cache (an
OpenBao read in a thread on a miss), the body from the same LicenseAnswer the FastAPI route
uses. It sits first in the router and takes only requests that carry the server key header;
members' bearer tokens go on to the FastAPI route, which also documents both in the OpenAPI
document. Errors are the same problem details, through the app's exception handlers.
"""

from __future__ import annotations

import re
import uuid
from typing import NamedTuple

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Match
from starlette.types import Receive, Scope, Send

from api.db.async_reads import compile_read
from api.licensing.answer import LicenseAnswer
from api.licensing.issue import LICENSE_BY_SERVER_KEY
from api.middleware import request_state
from api.problems import Problem, not_found
from api.server_credential import store as server_credential
from api.services import Services

PATH = "/api/license/{tenant_id}"
_PATH = re.compile(r"/api/license/([^/]+)")
_KEY_HEADER = server_credential.KEY_HEADER.lower().encode()
_LICENSE_BY_SERVER_KEY = compile_read(LICENSE_BY_SERVER_KEY)


def _has_key_header(scope: Scope) -> bool:
    return any(name == _KEY_HEADER for name, _ in scope["headers"])


class ServerLicenseRoute(BaseRoute):
    path = PATH  # the metrics' and access log's route label, as FastAPI's route of this path has it

    def __init__(self, services: Services) -> None:
        self._services = services

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if scope["type"] != "http" or scope["method"] != "GET" or not _has_key_header(scope):
            return Match.NONE, {}
        found = _PATH.fullmatch(scope["path"])
        if found is None:
            return Match.NONE, {}
        try:
            tenant_id = uuid.UUID(found.group(1))
        except ValueError:
            return Match.NONE, {}  # FastAPI's route answers the malformed id with its 422
        return Match.FULL, {"route": self, "path_params": {"tenant_id": tenant_id}}

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope)
        services = self._services
        row = await self._admit(request, scope["path_params"]["tenant_id"])
        answer = LicenseAnswer(row, services.clock(), services.settings)
        if answer.matches(request.headers.get("if-none-match")):
            response = Response(status_code=304, headers=answer.headers)
        else:
            response = Response(answer.body().model_dump_json(), media_type="application/json",
                                headers=answer.headers)
        await response(scope, receive, send)

    async def _admit(self, request: Request, tenant_id: uuid.UUID) -> NamedTuple:
        """The tenant's license row, for a request signed with its server's credential."""
        services = self._services
        try:
            signed = server_credential.parse(request.headers.get(server_credential.KEY_HEADER),
                                             request.headers.get(server_credential.SIGNATURE_HEADER))
            row = await services.db.async_system_reads.first(_LICENSE_BY_SERVER_KEY, key_id=signed.key_id)
            if row is None:
                raise server_credential.CredentialRefused(server_credential.UNKNOWN_KEY)
            secret = services.server_secrets.get(signed.key_id) or await run_in_threadpool(
                server_credential.secret_of, signed.key_id, row.slug, services.tenant_secrets,
                services.server_secrets)
            server_credential.verify(signed, secret, server_credential.get_message(request.url.path),
                                     services.clock())
        except server_credential.CredentialRefused as exc:
            raise Problem(401, "server-credential-unauthorized", str(exc)) from None
        request_state(request)["actor"] = f"server-key:{signed.key_id}"
        if row.owner != tenant_id or row.license_id is None:
            raise not_found("License")
        return row
