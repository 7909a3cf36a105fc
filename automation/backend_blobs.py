"""Reading a `file://` or `postgres://` state backend's blobs without the engine.

A `file://` backend keeps each blob as a file under its root; a `postgres://` backend keeps
it as a row `(key, data)` whose data is `{"data": <base64>}` (gocloud's blob layout over the
engine's PostgreSQL driver). The checkpoint and history readers share this.
"""

from __future__ import annotations

import base64
import json

from .errors import ErrorKind, OperationError
from .locks import postgres_table
from .settings import file_backend_root


class BackendBlobs:
    """One project's blobs in one backend; ``what`` names them in the error for other backends."""

    def __init__(self, backend_url: str, project: str, what: str) -> None:
        self.project = project
        self._root = file_backend_root(backend_url)
        scheme = backend_url.partition("://")[0].lower()
        self._postgres = postgres_table(backend_url) if scheme in ("postgres", "postgresql") else None
        if self._root is None and self._postgres is None:
            raise OperationError(ErrorKind.CONFIG, f"{what} cannot be read from {scheme}:// backends without "
                                 "the engine (file:// and postgres:// only)")

    def _postgres_rows(self, prefix: str, *, with_data: bool = True) -> list[tuple[str, bytes, str]]:
        """``(key after prefix, content, row version)`` of every row whose key starts with the
        backend's key prefix + ``prefix``; content is empty without ``with_data``."""
        import psycopg

        dsn, table, key_prefix = self._postgres
        full_prefix = key_prefix + prefix
        data = "data::text" if with_data else "''"
        with psycopg.connect(dsn, connect_timeout=10) as conn:
            rows = conn.execute(
                f"SELECT key, {data}, xmin::text FROM {table} WHERE key LIKE %s",  # noqa: S608 - table checked
                (full_prefix.replace("%", r"\%").replace("_", r"\_") + "%",),
            ).fetchall()
        return [(key[len(full_prefix):], base64.b64decode(json.loads(blob)["data"]) if with_data else b"", version)
                for key, blob, version in rows]
