"""Engines, sessions and the row-level-security scope of each transaction.

Two database roles, two engines. Tenant-scoped work runs as the app role: every such
transaction begins with ``set_config('app.tenant_scope', '<tenant>.<hmac>', true)``
(transaction-local), and the RLS policies (migration 0013) let it see only that tenant's
rows, and only when the HMAC, keyed by a secret the app role cannot read and bound to the
connection's backend, verifies. Nothing the app role sets shows it another tenant's rows or
all of them. System-scope work (login, signup, platform endpoints, webhooks, workers' jobs)
runs as the system role, to which the policies grant every row. A bug in an
application-level check still cannot read or write another tenant's rows.
"""

from __future__ import annotations

import hashlib
import hmac
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.orm import Session, SessionTransaction, sessionmaker

from api.db.async_reads import AsyncSystemReads


@dataclass(frozen=True)
class Scope:
    """Which tenant's rows a transaction may see. ``system`` sees all: the system role's engine."""

    tenant_id: uuid.UUID | None = None
    system_wide: bool = False

    @classmethod
    def tenant(cls, tenant_id: uuid.UUID) -> Scope:
        return cls(tenant_id=tenant_id)

    @classmethod
    def system(cls) -> Scope:
        return cls(system_wide=True)

    @classmethod
    def nobody(cls) -> Scope:
        return cls()


class ScopeSigner:
    """Signs a tenant scope for one backend connection with the database's scope key.

    The key is read once, through the system role (the app role has no access to it).
    """

    def __init__(self, system_engine: Engine) -> None:
        self._system_engine = system_engine
        self._key: bytes | None = None

    def value(self, tenant_id: uuid.UUID, backend_pid: int) -> str:
        tenant = str(tenant_id)
        mac = hmac.new(self._scope_key(), f"{tenant}.{backend_pid}".encode(), hashlib.sha256).hexdigest()
        return f"{tenant}.{mac}"

    def _scope_key(self) -> bytes:
        if self._key is None:
            with self._system_engine.connect() as connection:
                self._key = bytes(connection.execute(text("SELECT key FROM rls_scope_key")).scalar_one())
        return self._key


class ScopedSession(Session):
    """A Session whose transactions carry an RLS :class:`Scope`."""

    @property
    def scope(self) -> Scope:
        return self.info.get("scope", Scope.nobody())


@event.listens_for(ScopedSession, "after_begin")
def _apply_scope(session: ScopedSession, _tx: SessionTransaction, connection: Connection) -> None:
    scope = session.scope
    if scope.tenant_id is None:
        return  # the system role sees every row, the app role without a scope none
    backend_pid = connection.connection.dbapi_connection.info.backend_pid
    connection.execute(
        text("SELECT set_config('app.tenant_scope', :scope, true)"),
        {"scope": session.info["signer"].value(scope.tenant_id, backend_pid)},
    )


class Database:
    """Owns the app and the system engines and hands out scoped sessions."""

    def __init__(self, url: str, system_url: str, **engine_kwargs) -> None:
        self.engine: Engine = create_engine(url, pool_pre_ping=True, **engine_kwargs)
        self.system_engine: Engine = create_engine(system_url, pool_pre_ping=True, **engine_kwargs)
        self._signer = ScopeSigner(self.system_engine)
        self._app = sessionmaker(self.engine, class_=ScopedSession, expire_on_commit=False)
        self._system = sessionmaker(self.system_engine, class_=ScopedSession, expire_on_commit=False)
        # Opened by the API's lifespan, in its event loop; workers never open it. Its reads from
        # another loop use the system engine in autocommit, as its own connections are.
        self.async_system_reads = AsyncSystemReads(
            system_url, self.system_engine.execution_options(isolation_level="AUTOCOMMIT"))

    @classmethod
    def from_settings(cls, settings, **engine_kwargs) -> Database:
        return cls(settings.app_dsn(), settings.system_dsn(), **engine_kwargs)

    def session(self, scope: Scope) -> ScopedSession:
        if scope.system_wide and scope.tenant_id is not None:
            raise ValueError("a scope is either one tenant's or system-wide")
        session = (self._system if scope.system_wide else self._app)()
        session.info["scope"] = scope
        session.info["signer"] = self._signer
        return session

    @contextmanager
    def transaction(self, scope: Scope) -> Iterator[ScopedSession]:
        """One unit of work: commits on success, rolls back on error."""
        with self.session(scope) as session, session.begin():
            yield session

    def dispose(self) -> None:
        self.engine.dispose()
        self.system_engine.dispose()
