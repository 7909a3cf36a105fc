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

import gzip
import json
from collections.abc import Iterator
from typing import Any

from .backend_blobs import BackendBlobs
from .history import HistoryEntry, parse_history

HISTORY_DIR = ".pulumi/history"
SUFFIXES = (".history.json", ".history.json.gz")


class HistoryReader(BackendBlobs):
    """The update histories of one project's stacks in one backend."""

    def __init__(self, backend_url: str, project: str) -> None:
        super().__init__(backend_url, project, "stack history")

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
        for name, content, _version in self._postgres_rows(f"{HISTORY_DIR}/{self.project}/{stack}/"):
            if "/" not in name and name.endswith(SUFFIXES):
                yield name, content


def _document(content: bytes) -> dict[str, Any]:
    if content[:2] == b"\x1f\x8b":
        content = gzip.decompress(content)
    return json.loads(content)
