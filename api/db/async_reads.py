"""Single-statement reads of the system role from the event loop, for the API's hottest path.

SQLAlchemy's sync engine serves every other request from the thread pool. A tenant server's
license poll (api.licensing.server_route) is the one read a whole fleet repeats all day, and
there the thread-pool hop, the checkout's ping and the ORM layers cost more than the query: it
runs on a small psycopg async pool instead, with the statement prepared on each connection.

The pool belongs to one event loop: the API's lifespan opens it and closes it.
"""

from __future__ import annotations

import logging
from typing import Any, NamedTuple

import psycopg
from psycopg.rows import namedtuple_row
from psycopg_pool import AsyncConnectionPool
from sqlalchemy import Executable
from sqlalchemy.dialects.postgresql.psycopg import PGDialect_psycopg

from api.settings import libpq_dsn

log = logging.getLogger(__name__)
POOL_SIZE = 4
APPLICATION_NAME = "cameleer-api-system-reads"  # pg_stat_activity names the pool's connections so
CHECKOUT_TIMEOUT_SECONDS = 5.0


class CompiledRead(NamedTuple):
    """A SQLAlchemy statement rendered once for psycopg, with its fixed parameters."""

    sql: str
    fixed_params: dict[str, Any]


def compile_read(statement: Executable) -> CompiledRead:
    """Keeps one definition of a statement: the SQLAlchemy one the sync path executes."""
    compiled = statement.compile(dialect=PGDialect_psycopg())
    return CompiledRead(str(compiled), dict(compiled.params))


class AsyncSystemReads:
    def __init__(self, system_url: str, max_size: int = POOL_SIZE) -> None:
        self._pool = AsyncConnectionPool(
            libpq_dsn(system_url), min_size=1, max_size=max_size, open=False,
            timeout=CHECKOUT_TIMEOUT_SECONDS, name="system-reads",
            # Autocommit: one statement is atomic on its own, without BEGIN and COMMIT round trips.
            kwargs={"autocommit": True, "row_factory": namedtuple_row, "application_name": APPLICATION_NAME})

    @property
    def is_open(self) -> bool:
        return not self._pool.closed

    async def open(self) -> None:
        await self._pool.open(wait=True)

    async def close(self) -> None:
        await self._pool.close()

    async def first(self, read: CompiledRead, **params: Any) -> NamedTuple | None:
        """The statement's first row. A connection the server dropped (a restart) fails the
        first statement on it: that read is tried once more, on another connection."""
        try:
            return await self._first(read, params)
        except psycopg.OperationalError as exc:
            log.warning("system read failed on a pooled connection, trying once more: %s", exc)
            return await self._first(read, params)

    async def _first(self, read: CompiledRead, params: dict[str, Any]) -> NamedTuple | None:
        async with self._pool.connection() as connection:
            cursor = await connection.execute(read.sql, {**read.fixed_params, **params}, prepare=True)
            return await cursor.fetchone()
