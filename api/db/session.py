"""Engine, sessions and the row-level-security scope of each transaction.

Every transaction begins with ``set_config('app.tenant_id', ..., true)`` and
``set_config('app.bypass_rls', ..., true)`` (transaction-local, like ``SET LOCAL``)
taken from the session's :class:`Scope`. The RLS policies in the initial migration
read these settings, so a bug in an application-level check still cannot read or
write another tenant's rows.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.orm import Session, SessionTransaction, sessionmaker


@dataclass(frozen=True)
class Scope:
    """Which tenant's rows a transaction may see. ``system`` bypasses RLS."""

    tenant_id: uuid.UUID | None = None
    bypass: bool = False

    @classmethod
    def tenant(cls, tenant_id: uuid.UUID) -> Scope:
        return cls(tenant_id=tenant_id)

    @classmethod
    def system(cls) -> Scope:
        return cls(bypass=True)

    @classmethod
    def nobody(cls) -> Scope:
        return cls()


class ScopedSession(Session):
    """A Session whose transactions carry an RLS :class:`Scope`."""

    @property
    def scope(self) -> Scope:
        return self.info.get("scope", Scope.nobody())


@event.listens_for(ScopedSession, "after_begin")
def _apply_scope(session: ScopedSession, _tx: SessionTransaction, connection: Connection) -> None:
    scope = session.scope
    connection.execute(
        text("SELECT set_config('app.tenant_id', :tenant, true), set_config('app.bypass_rls', :bypass, true)"),
        {"tenant": str(scope.tenant_id) if scope.tenant_id else "", "bypass": "on" if scope.bypass else "off"},
    )


class Database:
    """Owns the engine and hands out scoped sessions."""

    def __init__(self, url: str, **engine_kwargs) -> None:
        self.engine: Engine = create_engine(url, pool_pre_ping=True, **engine_kwargs)
        self._factory = sessionmaker(self.engine, class_=ScopedSession, expire_on_commit=False)

    def session(self, scope: Scope) -> ScopedSession:
        session = self._factory()
        session.info["scope"] = scope
        return session

    @contextmanager
    def transaction(self, scope: Scope) -> Iterator[ScopedSession]:
        """One unit of work: commits on success, rolls back on error."""
        with self.session(scope) as session, session.begin():
            yield session

    def dispose(self) -> None:
        self.engine.dispose()
