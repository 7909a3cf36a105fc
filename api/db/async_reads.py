"""Single-statement reads of the system role from the event loop, for the API's hottest path.

SQLAlchemy's sync engine serves every other request from the thread pool. A tenant server's
license poll (api.licensing.server_route) is the one read a whole fleet repeats all day, and
there the thread-pool hop, the checkout's ping and the ORM layers cost more than the query: it
runs on a small psycopg async pool instead, with the statement prepared on each connection.

The pool belongs to the event loop that opened it: the API's lifespan opens it in the server's
loop and closes it. A read from any other loop (a test client that skipped the lifespan, an ASGI
client running its own loop) or before the lifespan runs the same statement in a thread, on the
system engine's pool: slower, never wrong.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, NamedTuple

import psycopg
from psycopg.rows import namedtuple_row
from psycopg_pool import AsyncConnectionPool
from sqlalchemy import Engine, Executable
from sqlalchemy.dialects.postgresql.psycopg import PGDialect_psycopg
from starlette.concurrency import run_in_threadpool

from api.settings import libpq_dsn

log = logging.getLogger(__name__)
POOL_SIZE = 4
APPLICATION_NAME = "cameleer-api-system-reads"  # the pool's connections, as pg_stat_activity lists them
CHECKOUT_TIMEOUT_SECONDS = 5.0


class CompiledRead(NamedTuple):
    """A SQLAlchemy statement rendered once for psycopg, with its fixed parameters."""

    sql: str
    fixed_params: dict[str, Any]


def compile_read(statement: Executable) -> CompiledRead:
    """One definition of a statement, SQLAlchemy's, rendered once for psycopg."""
    compiled = statement.compile(dialect=PGDialect_psycopg())
    return CompiledRead(str(compiled), dict(compiled.params))


class AsyncSystemReads:
    def __init__(self, system_url: str, system_engine: Engine, max_size: int = POOL_SIZE) -> None:
        self._conninfo = libpq_dsn(system_url)
        self._max_size = max_size
        self._system_engine = system_engine  # in autocommit, like the pool's connections
        self._pool: AsyncConnectionPool | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def open(self) -> None:
        """Opens the pool in the running loop, unless another loop has it open already (another
        app on the same Services, as tests build them: that loop keeps it)."""
        if self._pool is not None:
            return
        pool = AsyncConnectionPool(
            self._conninfo, min_size=1, max_size=self._max_size, open=False,
            timeout=CHECKOUT_TIMEOUT_SECONDS, name="system-reads",
            # Autocommit: one statement is atomic on its own, without BEGIN and COMMIT round trips.
            kwargs={"autocommit": True, "row_factory": namedtuple_row, "application_name": APPLICATION_NAME})
        await pool.open(wait=True)
        self._pool, self._loop = pool, asyncio.get_running_loop()

    async def close(self) -> None:
        """Closes the pool if the running loop is the one that opened it."""
        if self._pool is None or asyncio.get_running_loop() is not self._loop:
            return
        pool, self._pool, self._loop = self._pool, None, None
        await pool.close()

    async def first(self, read: CompiledRead, **params: Any) -> NamedTuple | None:
        """The statement's first row. A connection the server dropped (a restart) fails the
        first statement on it: that read is tried once more, on another connection."""
        params = {**read.fixed_params, **params}
        if self._pool is None or asyncio.get_running_loop() is not self._loop:
            return await run_in_threadpool(self._first_in_thread, read.sql, params)
        try:
            return await self._first(self._pool, read.sql, params)
        except psycopg.OperationalError as exc:
            log.warning("system read failed on a pooled connection, trying once more: %s", exc)
            return await self._first(self._pool, read.sql, params)

    @staticmethod
    async def _first(pool: AsyncConnectionPool, sql: str, params: dict[str, Any]) -> NamedTuple | None:
        async with pool.connection() as connection:
            cursor = await connection.execute(sql, params, prepare=True)
            return await cursor.fetchone()

    def _first_in_thread(self, sql: str, params: dict[str, Any]) -> NamedTuple | None:
        with self._system_engine.connect() as connection:
            return connection.exec_driver_sql(sql, params).first()
