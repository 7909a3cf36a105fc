"""A stack's update history, read straight from the state backend: no engine process.

For every update (and refresh, destroy, import) the engine writes one document next to the
stack's checkpoint, `.pulumi/history/<project>/<stack>/<stack>-<unix nanoseconds>.history.json`
(`.json.gz` when the backend compresses), in a `file://` backend as a file and in a
`postgres://` backend as a `{"data": <base64>}` row under that key. The document is the
engine's `backend.UpdateInfo` (kind, startTime/endTime in Unix seconds, message,
environment, result, resourceChanges, version); `pulumi stack history --json` prints the same
fields, newest first, which is the order of the names reversed. The layout is the engine's
and not a public API: tests/integration/test_automation_engine.py
(test_history_read_from_the_backend_is_what_the_engine_prints) pins it against
`pulumi stack history --json` of a real stack in both backends.
"""

from __future__ import annotations

import base64
import gzip
import json
from collections.abc import Iterator
from typing import Any

from .errors import ErrorKind, OperationError
from .history import HistoryEntry, parse_history
from .locks import postgres_table
from .settings import file_backend_root

HISTORY_DIR = ".pulumi/history"
SUFFIXES = (".history.json", ".history.json.gz")


class HistoryReader:
    """The update histories of one project's stacks in one backend."""

    def __init__(self, backend_url: str, project: str) -> None:
        self.project = project
        self._root = file_backend_root(backend_url)
        scheme = backend_url.partition("://")[0].lower()
        self._postgres = postgres_table(backend_url) if scheme in ("postgres", "postgresql") else None
        if self._root is None and self._postgres is None:
            raise OperationError(ErrorKind.CONFIG, f"stack history cannot be read from "
                                 f"{backend_url.partition('://')[0]}:// backends without the engine "
                                 "(file:// and postgres:// only)")

    def read(self, stack: str, *, limit: int | None = None) -> list[HistoryEntry]:
        """The stack's updates, newest first (none for a stack that was never updated or is gone)."""
        blobs = self._file_blobs(stack) if self._root is not None else self._postgres_blobs(stack)
        documents = [_document(content) for _name, content in sorted(blobs, reverse=True)]
        # The whole history is parsed: DIY backends number versions only that way.
        entries = parse_history(documents)
        return entries[:limit] if limit else entries

    def _file_blobs(self, stack: str) -> Iterator[tuple[str, bytes]]:
        directory = self._root / HISTORY_DIR / self.project / stack
        for path in directory.glob(f"{stack}-*"):
            if path.name.endswith(SUFFIXES):
                try:
                    yield path.name, path.read_bytes()
                except FileNotFoundError:
                    continue  # removed while we listed: the stack is being removed

    def _postgres_blobs(self, stack: str) -> Iterator[tuple[str, bytes]]:
        import psycopg

        dsn, table, key_prefix = self._postgres
        prefix = f"{key_prefix}{HISTORY_DIR}/{self.project}/{stack}/"
        with psycopg.connect(dsn, connect_timeout=10) as conn:
            rows = conn.execute(
                f"SELECT key, data::text FROM {table} WHERE key LIKE %s",  # noqa: S608 - table checked
                (prefix.replace("%", r"\%").replace("_", r"\_") + "%",),
            ).fetchall()
        for key, blob in rows:
            name = key[len(prefix):]
            if "/" not in name and name.endswith(SUFFIXES):
                yield name, base64.b64decode(json.loads(blob)["data"])


def _document(content: bytes) -> dict[str, Any]:
    if content[:2] == b"\x1f\x8b":
        content = gzip.decompress(content)
    return json.loads(content)
