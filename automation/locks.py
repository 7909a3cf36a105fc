"""Who may run an engine operation now, and whose stack lock is dead.

Two layers:

* In this process, `OperationGate` bounds how many engine processes run at once (a
  semaphore) and never lets two operations touch the same stack (a lock per stack).
* In the state backend, the engine itself locks a stack for the length of an operation:
  a JSON file `.pulumi/locks/<org>/<project>/<stack>/<uuid>.json` (file backend) or a row
  with that key (postgres backend), holding the CLI's pid, user, host and start time. A
  process killed mid-update leaves that lock behind, and every later operation fails with
  "the stack is currently locked". `BackendLocks` lists those locks and `assess()` says
  whether the owner is provably gone:

  - same host: stale when the pid is gone, a zombie, or now some other program;
    live when a `pulumi` process still has that pid;
  - another host, while this operation holds the stack's lease (leases.py): stale, whatever
    its age; every engine client of the backend leases the stack first, so a lock no live
    lease covers belongs to a holder whose heartbeat stopped;
  - another host, without leases: live (it cannot be checked from here) until it is older
    than `stale_after`, then stale.

  A stale lock is removed deliberately (`pulumi cancel`) by `recovery.py`, and reported;
  a live one is a conflict the caller retries later. Neither is ever ignored.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from enum import Enum
from pathlib import Path
from typing import Any, Protocol

from .errors import ErrorKind, OperationError
from .history import parse_time
from .settings import SettingsError, file_backend_root, postgres_backend_table

LOCK_DIR = ".pulumi/locks"
STACKS_DIR = ".pulumi/stacks"
ATTRS_SUFFIX = ".attrs"  # fileblob's metadata sidecar


# --------------------------------------------------------------------------- backend locks

@dataclass(frozen=True)
class BackendLock:
    key: str  # the path (file) or key (postgres) of the lock
    pid: int
    username: str
    hostname: str
    timestamp: datetime | None

    @property
    def owner(self) -> str:
        return f"{self.username}@{self.hostname} (pid {self.pid})"

    def to_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "pid": self.pid,
            "username": self.username,
            "hostname": self.hostname,
            "timestamp": self.timestamp.isoformat() if self.timestamp else None,
        }

    @classmethod
    def from_json(cls, key: str, content: bytes | str) -> BackendLock:
        data = json.loads(content)
        return cls(
            key=key,
            pid=int(data.get("pid", 0)),
            username=str(data.get("username", "")),
            hostname=str(data.get("hostname", "")),
            timestamp=parse_time(data.get("timestamp")),
        )


class Verdict(str, Enum):
    LIVE = "live"
    STALE = "stale"


@dataclass(frozen=True)
class LockAssessment:
    lock: BackendLock
    verdict: Verdict
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {**self.lock.to_dict(), "verdict": self.verdict.value, "reason": self.reason}


class ProcessState(str, Enum):
    RUNNING = "running"
    ZOMBIE = "zombie"
    GONE = "gone"


@dataclass(frozen=True)
class ProcessInfo:
    state: ProcessState
    name: str | None = None  # the executable's name when known (/proc/<pid>/comm)


def probe_process(pid: int) -> ProcessInfo:
    """What lives at `pid` on this host."""
    if pid <= 0:
        return ProcessInfo(ProcessState.GONE)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return ProcessInfo(ProcessState.GONE)
    except PermissionError:
        pass  # exists, owned by someone else
    proc = Path("/proc") / str(pid)
    name = None
    try:
        name = (proc / "comm").read_text().strip()
        for line in (proc / "status").read_text().splitlines():
            if line.startswith("State:") and "Z" in line.split()[1]:
                return ProcessInfo(ProcessState.ZOMBIE, name)
    except (FileNotFoundError, ProcessLookupError):
        return ProcessInfo(ProcessState.GONE)
    except OSError:
        pass
    return ProcessInfo(ProcessState.RUNNING, name)


def assess(
    lock: BackendLock,
    *,
    now: datetime | None = None,
    hostname: str | None = None,
    stale_after_seconds: float,
    leased: bool = False,
    probe: Callable[[int], ProcessInfo] = probe_process,
) -> LockAssessment:
    """Is the owner of `lock` provably gone? `leased`: the caller holds the stack's lease."""
    now = now or datetime.now(timezone.utc)
    hostname = hostname or socket.gethostname()
    if lock.hostname == hostname:
        info = probe(lock.pid)
        if info.state is ProcessState.GONE:
            return LockAssessment(lock, Verdict.STALE, f"pid {lock.pid} no longer exists on {hostname}")
        if info.state is ProcessState.ZOMBIE:
            return LockAssessment(lock, Verdict.STALE, f"pid {lock.pid} has exited (zombie)")
        if info.name is not None and "pulumi" not in info.name:
            return LockAssessment(
                lock, Verdict.STALE, f"pid {lock.pid} is now {info.name!r}, not a Pulumi process"
            )
        return LockAssessment(lock, Verdict.LIVE, f"pid {lock.pid} is still running on {hostname}")
    if leased:
        return LockAssessment(
            lock, Verdict.STALE,
            f"held from {lock.hostname} by an operation without a live lease (this operation holds the stack's lease)",
        )
    if lock.timestamp is None:
        return LockAssessment(lock, Verdict.LIVE, f"held from {lock.hostname}; age unknown")
    age = (now - lock.timestamp).total_seconds()
    if age > stale_after_seconds:
        return LockAssessment(
            lock, Verdict.STALE,
            f"held from {lock.hostname} for {age / 3600:.1f} h, longer than the "
            f"{stale_after_seconds / 3600:.1f} h any operation may take",
        )
    return LockAssessment(
        lock, Verdict.LIVE, f"held from {lock.hostname} for {age:.0f} s (cannot check that host)"
    )


class BackendLocks(Protocol):
    def list(self, stack: str) -> list[BackendLock]: ...

    def remove_torn_writes(self, stack: str) -> list[str]:
        """Remove what a killed engine left half-written for `stack`; the paths removed."""
        ...


class FileBackendLocks:
    """Locks of a `file://` backend: JSON files under `<root>/.pulumi/locks/`."""

    def __init__(self, root: Path, project: str) -> None:
        self.root = Path(root)
        self.project = project

    def _dirs(self, stack: str) -> list[Path]:
        base = self.root / LOCK_DIR
        # Project-scoped layout (the default), and the legacy one without org/project.
        return [base / "organization" / self.project / stack, base / stack]

    def list(self, stack: str) -> list[BackendLock]:
        locks = []
        for directory in self._dirs(stack):
            if not directory.is_dir():
                continue
            for path in sorted(directory.glob("*.json")):
                try:
                    locks.append(BackendLock.from_json(str(path), path.read_bytes()))
                except FileNotFoundError:
                    continue  # released while we looked
                except (ValueError, json.JSONDecodeError):
                    locks.append(BackendLock(str(path), 0, "?", "?", None))
        return locks

    def remove_torn_writes(self, stack: str) -> list[str]:
        """Delete the stack's unreadable `.attrs` sidecars (see `Settings.engine_backend_url`).

        A sidecar holds only a content type the engine never uses, and a missing one reads
        as the default; a torn one makes every read of its blob fail with `error: EOF`.
        """
        candidates = [*self.root.glob(f"{STACKS_DIR}/**/{stack}.json*{ATTRS_SUFFIX}"),
                      *(p for d in self._dirs(stack) for p in d.glob(f"*{ATTRS_SUFFIX}"))]
        removed = []
        for path in candidates:
            try:
                json.loads(path.read_bytes())
            except FileNotFoundError:
                continue
            except ValueError:
                path.unlink(missing_ok=True)
                removed.append(str(path))
        return removed


class PostgresBackendLocks:
    """Locks of a `postgres://` backend: rows of the state table whose key is a lock path.

    The engine stores each blob as JSON `{"data": <base64>}` keyed by its path, prefixed with
    the database name from the URL (`pulumi_state/.pulumi/locks/organization/cameleer/...`).
    """

    def __init__(self, url: str, project: str) -> None:
        self.dsn, self.table, self.key_prefix = postgres_table(url)
        self.project = project

    def list(self, stack: str) -> list[BackendLock]:
        import psycopg

        prefixes = [f"{self.key_prefix}{LOCK_DIR}/organization/{self.project}/{stack}/",
                    f"{self.key_prefix}{LOCK_DIR}/{stack}/"]
        locks = []
        with psycopg.connect(self.dsn, connect_timeout=10) as conn:
            for prefix in prefixes:
                rows = conn.execute(
                    f"SELECT key, data::text FROM {self.table} WHERE key LIKE %s",  # noqa: S608
                    (prefix.replace("%", r"\%").replace("_", r"\_") + "%",),
                ).fetchall()
                for key, data in rows:
                    if "/" in key[len(prefix):]:
                        continue
                    try:
                        blob = base64.b64decode(json.loads(data)["data"])
                        locks.append(BackendLock.from_json(key, blob))
                    except (ValueError, KeyError, json.JSONDecodeError):
                        locks.append(BackendLock(key, 0, "?", "?", None))
        return locks

    def remove_torn_writes(self, stack: str) -> list[str]:
        return []  # each blob is one row, written in one statement


def postgres_table(url: str) -> tuple[str, str, str]:
    """`postgres_backend_table`, with an unsafe table name as a configuration error."""
    try:
        found = postgres_backend_table(url)
    except SettingsError as exc:
        raise OperationError(ErrorKind.CONFIG, str(exc)) from None
    if found is None:
        raise OperationError(ErrorKind.CONFIG, f"not a postgres:// backend URL: {url.partition('://')[0]}://")
    return found


def backend_locks_for(backend_url: str, project: str) -> BackendLocks | None:
    """The lock inspector for a backend URL, or None where locks cannot be read directly."""
    scheme = backend_url.partition("://")[0].lower()
    root = file_backend_root(backend_url)
    if root is not None:
        return FileBackendLocks(root, project)
    if scheme in ("postgres", "postgresql"):
        return PostgresBackendLocks(backend_url, project)
    return None


# --------------------------------------------------------------------------- in-process gate

class OperationGate:
    """At most `max_concurrent` engine operations at once, and one per stack."""

    def __init__(self, max_concurrent: int) -> None:
        if max_concurrent < 1:
            raise ValueError("max_concurrent must be at least 1")
        self.max_concurrent = max_concurrent
        self._slots = threading.BoundedSemaphore(max_concurrent)
        self._stack_locks: dict[str, threading.Lock] = {}
        self._owners: dict[str, str] = {}
        self._registry = threading.Lock()

    def _lock_for(self, stack: str) -> threading.Lock:
        with self._registry:
            return self._stack_locks.setdefault(stack, threading.Lock())

    def busy(self, stack: str) -> str | None:
        """The operation now holding `stack` in this process, if any."""
        with self._registry:
            return self._owners.get(stack)

    @contextmanager
    def hold(self, stack: str, operation: str, *, wait: float | None = None) -> Iterator[None]:
        """Hold `stack` (and one engine slot) for `operation`.

        `wait=None` waits as long as it takes for the stack; `wait=0` fails at once when
        another operation of this process has it; a number waits that many seconds. A
        stack that stays busy raises a CONFLICT error (retryable).
        """
        lock = self._lock_for(stack)
        if wait is None:
            acquired = lock.acquire()
        elif wait <= 0:
            acquired = lock.acquire(blocking=False)
        else:
            acquired = lock.acquire(timeout=wait)
        if not acquired:
            raise OperationError(
                ErrorKind.CONFLICT,
                f"{self.busy(stack) or 'another operation'} is already running on this stack "
                "in this process",
                stack=stack, operation=operation, retry_after=5.0,
            )
        try:
            with self._registry:
                self._owners[stack] = operation
            # The stack first, then the engine slot: a queued operation on a busy stack
            # must not sit on a slot others could use.
            with self._slots:
                yield
        finally:
            with self._registry:
                self._owners.pop(stack, None)
            lock.release()
