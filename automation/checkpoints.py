"""Every stack's last checkpoint, read straight from the state backend in bulk.

The drift pre-check (precheck.py) needs, per stack, what the engine last applied or read:
each resource's type, inputs and outputs. That is exactly the stack's checkpoint, the
document the engine writes at the end of every operation that changes the stack (update,
refresh, destroy, drift correction, import, `pulumi cancel`-recovery), so reading it keeps
the pre-check right across every one of those paths without a second index to keep in step.

The documents are read without starting the engine: one file per stack in a `file://`
backend, one row per stack in a `postgres://` backend. Their layout is the engine's
`apitype.VersionedCheckpoint` (`{"version": 3, "checkpoint": {"latest": <deployment>}}`),
the same deployment `pulumi stack export` prints; the layout of the backend itself
(`.pulumi/stacks/<project>/<stack>.json[.gz]`, a `{"data": <base64>}` row per blob) is the
engine's and not a public API, so tests/automation/test_checkpoints.py pins it against
`pulumi stack export` of a real stack.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .backend_blobs import BackendBlobs
from .errors import ErrorKind, OperationError
from .locks import STACKS_DIR

CHECKPOINT_VERSION = 3


@dataclass(frozen=True)
class Checkpoint:
    stack: str
    resources: tuple[dict[str, Any], ...]
    # Identifies this version of the document (the file's mtime_ns, the row's xmin): a
    # reader that keeps one in memory re-reads it when this changes.
    version: str
    # An operation was interrupted: the state may not match what the engine did.
    pending_operations: bool = False


def parse(stack: str, content: bytes, version: str) -> Checkpoint:
    if content[:2] == b"\x1f\x8b":
        content = gzip.decompress(content)
    document = json.loads(content)
    if document.get("version") != CHECKPOINT_VERSION:
        raise OperationError(ErrorKind.CONFIG, f"{stack}: checkpoint version {document.get('version')!r} "
                             f"is not {CHECKPOINT_VERSION}; the drift pre-check cannot read it")
    deployment = (document.get("checkpoint") or {}).get("latest") or {}
    return Checkpoint(stack, tuple(deployment.get("resources") or ()), version,
                      pending_operations=bool(deployment.get("pending_operations")))


class CheckpointReader(BackendBlobs):
    """The checkpoints of one project's stacks in one backend."""

    def __init__(self, backend_url: str, project: str) -> None:
        super().__init__(backend_url, project, "stack checkpoints")

    def read(self, stacks: Iterable[str] | None = None) -> dict[str, Checkpoint]:
        """Checkpoints by stack name: all of the project's stacks, or only `stacks`."""
        wanted = set(stacks) if stacks is not None else None
        blobs = self._file_blobs(wanted) if self._root is not None else self._postgres_blobs()
        found: dict[str, Checkpoint] = {}
        for stack, content, version in blobs:
            if wanted is None or stack in wanted:
                found[stack] = parse(stack, content, version)
        return found

    def versions(self) -> dict[str, str]:
        """The current version marker of every stack's checkpoint (cheap: no document read)."""
        if self._root is not None:
            return {stack: str(path.stat().st_mtime_ns) for stack, path in self._stack_files()}
        return {stack: version for stack, _content, version in self._postgres_blobs(with_data=False)}

    def version(self, stack: str) -> str | None:
        """One stack's version marker (None: no such stack), for a reader that holds it."""
        if self._root is not None:
            for suffix in (".json", ".json.gz"):
                try:
                    return str((self._root / STACKS_DIR / self.project / f"{stack}{suffix}").stat().st_mtime_ns)
                except FileNotFoundError:
                    continue
            return None
        return next((v for name, _c, v in self._postgres_blobs(with_data=False, stack=stack) if name == stack), None)

    # -- file:// ------------------------------------------------------------------

    def _stack_files(self, only: set[str] | None = None) -> Iterator[tuple[str, Path]]:
        directory = self._root / STACKS_DIR / self.project
        for suffix in (".json", ".json.gz"):
            paths = ((directory / f"{name}{suffix}" for name in only) if only is not None
                     else directory.glob(f"*{suffix}"))
            for path in paths:
                if only is None or path.exists():
                    yield path.name[: -len(suffix)], path

    def _file_blobs(self, only: set[str] | None = None) -> Iterator[tuple[str, bytes, str]]:
        for stack, path in self._stack_files(only):
            try:
                yield stack, path.read_bytes(), str(path.stat().st_mtime_ns)
            except FileNotFoundError:
                continue  # removed while we listed: the stack is gone

    # -- postgres:// --------------------------------------------------------------

    def _postgres_blobs(self, *, with_data: bool = True, stack: str = "") -> Iterator[tuple[str, bytes, str]]:
        rows = self._postgres_rows(f"{STACKS_DIR}/{self.project}/{stack}", with_data=with_data)
        for rest, content, version in rows:
            name = stack + rest
            for suffix in (".json", ".json.gz"):
                if name.endswith(suffix) and "/" not in name:
                    yield name[: -len(suffix)], content, version

