"""Stack leases: which live process may run engine operations on a stack, judged by heartbeat.

The engine's own backend lock says *that* a stack is being changed, not whether its owner is
still alive; from another host (a worker in another pod) nothing could tell. A lease fills
that gap: a row per stack in PostgreSQL naming its holder (host name, pid, a random token),
the operation, the holder's process namespace and the session of its current engine
process, and an expiry that a thread of the holder pushes forward every few seconds while
the operation runs. A holder that dies stops beating; once its lease has expired any other
process takes it over, ends what is left of the dead holder's engine processes when they
live in the same process namespace, and recovers the stack (recovery.py).

    store = PostgresLeases(dsn)
    identity = HolderIdentity("worker-7")
    acquisition = store.acquire("tenant-acme", identity.new_holder(), identity, "update", op_id, ttl_seconds=30)
    held = HeldLease(store, acquisition, heartbeat_seconds=10, ttl_seconds=30).start()
    ...                 # acquisition.previous: the expired lease taken over, if any
    held.release()

Timestamps are the database server's (`now()`), so the hosts' clocks never matter. The
table is created by the platform's migration 0014 (`stack_leases`); it is system data,
without row-level security.
"""

from __future__ import annotations

import logging
import os
import secrets
import signal
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from .errors import ErrorKind, OperationError

log = logging.getLogger(__name__)

TABLE = "stack_leases"
# Every engine process of a leased operation carries its holder in its environment, so that
# recovery can tell the dead holder's processes from whatever reused their ids.
HOLDER_VARIABLE = "CAMELEER_LEASE_HOLDER"
_COLUMNS = ("stack, holder, host, pid, process_namespace, operation, operation_id, session_id, "
            "acquired_at, heartbeat_at, expires_at")


# --------------------------------------------------------------------------- identity

def process_namespace() -> str:
    """The PID namespace of this process, unique across machines and reboots: process ids
    (and so sessions) mean the same thing only to processes that share it."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        namespace = os.readlink("/proc/self/ns/pid")
    except OSError:
        return f"{socket.gethostname()}:unknown"
    return f"{boot}/{namespace}"


@dataclass(frozen=True)
class HolderIdentity:
    """Who asks for a lease: this process, under the host name it is configured with."""

    host: str
    pid: int = field(default_factory=os.getpid)
    namespace: str = field(default_factory=process_namespace)

    def new_holder(self) -> str:
        """A holder id for one acquisition: host, pid and a random token (a pid can be reused)."""
        return f"{self.host}:{self.pid}:{secrets.token_hex(6)}"


@dataclass(frozen=True)
class Lease:
    stack: str
    holder: str
    host: str
    pid: int
    process_namespace: str
    operation: str
    operation_id: str | None
    session_id: int | None  # of the engine process last started: its pid, process group and session
    acquired_at: datetime
    heartbeat_at: datetime
    expires_at: datetime

    def describe(self) -> str:
        return (f"{self.operation} by {self.host} (pid {self.pid}), last heartbeat "
                f"{self.heartbeat_at.isoformat()}")

    def to_dict(self) -> dict[str, Any]:
        return {"stack": self.stack, "holder": self.holder, "host": self.host, "pid": self.pid,
                "operation": self.operation, "operation_id": self.operation_id,
                "session_id": self.session_id,
                "heartbeat_at": self.heartbeat_at.isoformat(), "expires_at": self.expires_at.isoformat()}


@dataclass(frozen=True)
class Acquisition:
    lease: Lease
    previous: Lease | None  # an expired lease of another holder, taken over


class LeaseHeld(OperationError):
    """The stack's lease is held by a live holder (a retryable conflict)."""

    def __init__(self, current: Lease, seconds_left: float) -> None:
        super().__init__(ErrorKind.CONFLICT, f"stack is leased to a running operation: {current.describe()}",
                         stack=current.stack, operation=current.operation,
                         retry_after=max(1.0, seconds_left))
        self.current = current
        self.seconds_left = seconds_left


def holder_gone(lease: Lease, identity: HolderIdentity) -> bool:
    """Whether the lease's holder is known dead before its lease expires: it ran in this PID
    namespace (this machine, since its boot) and no process has its pid. A reused pid keeps
    the lease until it expires, which is the safe way to be wrong."""
    if lease.process_namespace != identity.namespace:
        return False
    try:
        os.kill(lease.pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


# --------------------------------------------------------------------------- store

class LeaseStore(Protocol):
    def acquire(self, stack: str, holder: str, identity: HolderIdentity, operation: str,
                operation_id: str | None, ttl_seconds: float) -> Acquisition:
        """Take the stack's lease if it is free, expired, or already `holder`'s; else LeaseHeld."""
        ...

    def renew(self, stack: str, holder: str, ttl_seconds: float) -> bool:
        """Push the expiry forward; False when `holder` no longer holds the lease."""
        ...

    def note_engine_session(self, stack: str, holder: str, sid: int | None) -> None: ...

    def release(self, stack: str, holder: str) -> None: ...

    def get(self, stack: str) -> Lease | None: ...


class PostgresLeases:
    """Leases as rows of `stack_leases`; each call is one short transaction of its own."""

    def __init__(self, dsn: str, *, connect_timeout: int = 10) -> None:
        scheme, sep, rest = dsn.partition("://")
        # A SQLAlchemy URL (`postgresql+psycopg://`, as the platform's settings hold) works too.
        self.dsn = f"{scheme.split('+', 1)[0]}{sep}{rest}" if sep else dsn
        self.connect_timeout = connect_timeout

    def _connect(self):
        import psycopg
        from psycopg.rows import dict_row

        return psycopg.connect(self.dsn, connect_timeout=self.connect_timeout, autocommit=True, row_factory=dict_row)

    def acquire(self, stack: str, holder: str, identity: HolderIdentity, operation: str,
                operation_id: str | None, ttl_seconds: float) -> Acquisition:
        values = {"stack": stack, "holder": holder, "host": identity.host, "pid": identity.pid,
                  "namespace": identity.namespace, "operation": operation, "operation_id": operation_id,
                  "ttl": float(ttl_seconds)}
        with self._connect() as conn, conn.transaction():
            inserted = conn.execute(
                f"INSERT INTO {TABLE} (stack, holder, host, pid, process_namespace, operation, operation_id, "  # noqa: S608
                "acquired_at, heartbeat_at, expires_at) VALUES (%(stack)s, %(holder)s, %(host)s, %(pid)s, "
                "%(namespace)s, %(operation)s, %(operation_id)s, now(), now(), now() + make_interval(secs => %(ttl)s)) "
                f"ON CONFLICT (stack) DO NOTHING RETURNING {_COLUMNS}", values).fetchone()
            if inserted is not None:
                return Acquisition(Lease(**inserted), None)
            current = conn.execute(
                f"SELECT {_COLUMNS}, extract(epoch FROM expires_at - now()) AS seconds_left "  # noqa: S608
                f"FROM {TABLE} WHERE stack = %s FOR UPDATE", (stack,)).fetchone()
            seconds_left = float(current.pop("seconds_left"))
            previous = Lease(**current)
            if previous.holder != holder and seconds_left > 0 and not holder_gone(previous, identity):
                raise LeaseHeld(previous, seconds_left)
            taken = conn.execute(
                f"UPDATE {TABLE} SET holder = %(holder)s, host = %(host)s, pid = %(pid)s, "  # noqa: S608
                "process_namespace = %(namespace)s, operation = %(operation)s, operation_id = %(operation_id)s, "
                "session_id = NULL, acquired_at = now(), heartbeat_at = now(), "
                f"expires_at = now() + make_interval(secs => %(ttl)s) WHERE stack = %(stack)s RETURNING {_COLUMNS}",
                values).fetchone()
        return Acquisition(Lease(**taken), previous if previous.holder != holder else None)

    def renew(self, stack: str, holder: str, ttl_seconds: float) -> bool:
        with self._connect() as conn:
            row = conn.execute(
                f"UPDATE {TABLE} SET heartbeat_at = now(), expires_at = now() + make_interval(secs => %s) "  # noqa: S608
                "WHERE stack = %s AND holder = %s RETURNING stack", (float(ttl_seconds), stack, holder)).fetchone()
        return row is not None

    def note_engine_session(self, stack: str, holder: str, sid: int | None) -> None:
        with self._connect() as conn:
            conn.execute(f"UPDATE {TABLE} SET session_id = %s WHERE stack = %s AND holder = %s",  # noqa: S608
                         (sid, stack, holder))

    def release(self, stack: str, holder: str) -> None:
        with self._connect() as conn:
            conn.execute(f"DELETE FROM {TABLE} WHERE stack = %s AND holder = %s", (stack, holder))  # noqa: S608

    def get(self, stack: str) -> Lease | None:
        with self._connect() as conn:
            row = conn.execute(f"SELECT {_COLUMNS} FROM {TABLE} WHERE stack = %s", (stack,)).fetchone()  # noqa: S608
        return Lease(**row) if row else None


# --------------------------------------------------------------------------- holding a lease

class HeldLease:
    """A lease this process holds, renewed by a thread until `release()`."""

    def __init__(self, store: LeaseStore, acquisition: Acquisition, *, heartbeat_seconds: float,
                 ttl_seconds: float) -> None:
        self.store = store
        self.lease = acquisition.lease
        self.previous = acquisition.previous
        self.heartbeat_seconds = heartbeat_seconds
        self.ttl_seconds = ttl_seconds
        self.lost = threading.Event()
        self._stopped = threading.Event()
        self._engine_session: int | None = None
        self._thread = threading.Thread(target=self._beat, name=f"lease-{self.lease.stack}", daemon=True)

    @property
    def stack(self) -> str:
        return self.lease.stack

    @property
    def holder(self) -> str:
        return self.lease.holder

    def environment(self) -> dict[str, str]:
        return {HOLDER_VARIABLE: self.holder}

    def start(self) -> HeldLease:
        self._thread.start()
        return self

    def release(self) -> None:
        """Stop renewing and give the lease up (one that cannot be deleted expires on its own)."""
        self._stopped.set()
        self._thread.join(timeout=self.heartbeat_seconds + 15)
        try:
            self.store.release(self.stack, self.holder)
        except Exception as exc:  # noqa: BLE001 - see above
            log.warning("%s: could not release the lease (it expires in %.0f s): %s", self.stack,
                        self.ttl_seconds, exc)

    def engine_started(self, sid: int) -> None:
        self._engine_session = sid
        try:
            self.store.note_engine_session(self.stack, self.holder, sid)
        except Exception as exc:  # noqa: BLE001 - the session is a recovery aid, the lease stands without it
            log.warning("%s: could not record the engine's session: %s", self.stack, exc)

    def engine_ended(self, sid: int) -> None:
        if self._engine_session == sid:
            self._engine_session = None

    def _beat(self) -> None:
        failing_since: float | None = None
        while not self._stopped.wait(self.heartbeat_seconds):
            try:
                held = self.store.renew(self.stack, self.holder, self.ttl_seconds)
            except Exception as exc:  # noqa: BLE001 - a database hiccup: keep trying until the lease would lapse
                log.warning("%s: lease renewal failed: %s", self.stack, exc)
                failing_since = failing_since or time.monotonic()
                held = time.monotonic() - failing_since < self.ttl_seconds
            else:
                failing_since = None
            if not held:
                self._lose()
                return

    def _lose(self) -> None:
        """Another process may take the stack over now: this one's engine must not go on."""
        self.lost.set()
        session = self._engine_session
        log.error("%s: lease lost (not renewed in time); ending this operation's engine (session %s)",
                  self.stack, session)
        if session is not None:
            end_session(session)


class ActiveLeases:
    """The leases this process holds, by stack: the environment that tags their engine
    processes, and the sessions those start (a `processes.ProcessWatcher`)."""

    def __init__(self) -> None:
        self._by_stack: dict[str, HeldLease] = {}
        self._lock = threading.Lock()

    @contextmanager
    def active(self, held: HeldLease) -> Iterator[HeldLease]:
        with self._lock:
            self._by_stack[held.stack] = held
        try:
            yield held
        finally:
            with self._lock:
                self._by_stack.pop(held.stack, None)

    def holds(self, stack: str) -> bool:
        with self._lock:
            return stack in self._by_stack

    def environment(self, stack: str) -> dict[str, str]:
        with self._lock:
            held = self._by_stack.get(stack)
        return held.environment() if held else {}

    def _holding(self, env) -> HeldLease | None:
        holder = env.get(HOLDER_VARIABLE)
        with self._lock:
            return next((held for held in self._by_stack.values() if held.holder == holder), None)

    def started(self, env, sid: int) -> None:
        held = self._holding(env)
        if held is not None:
            held.engine_started(sid)

    def ended(self, env, sid: int) -> None:
        held = self._holding(env)
        if held is not None:
            held.engine_ended(sid)


# --------------------------------------------------------------------------- a dead holder's processes

def session_members(lease: Lease, *, proc: Path = Path("/proc")) -> dict[int, bool]:
    """The live processes of `lease`'s last engine session, each with whether it carries the
    lease's holder in its environment. Empty when the lease's processes live in another PID
    namespace (another machine or container: they cannot be seen, or signalled, from here).

    A session, not a process group: the engine starts each plugin in a process group of its
    own, inside the session it leads (processes.py)."""
    if lease.session_id is None or lease.process_namespace != process_namespace():
        return {}
    return _session(lease.session_id, f"{HOLDER_VARIABLE}={lease.holder}".encode(), proc)


def _session(sid: int, marker: bytes | None, proc: Path = Path("/proc")) -> dict[int, bool]:
    members = {}
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if os.getsid(int(entry.name)) != sid or _zombie(entry):
                continue
            members[int(entry.name)] = marker is None or marker in (entry / "environ").read_bytes().split(b"\0")
        except (ProcessLookupError, FileNotFoundError, PermissionError):
            continue
    return members


def _zombie(entry: Path) -> bool:
    return (entry / "stat").read_text().rpartition(")")[2].split()[0] == "Z"


def end_processes(lease: Lease, *, wait_seconds: float = 10.0) -> list[int]:
    """SIGKILL what is left of a dead holder's engine session; the pids ended.

    A session id, like a pid, can belong to something else once its session is gone, so only
    the members that carry the lease's holder are signalled (again, until none is left: one
    may fork while the others die)."""
    ended: list[int] = []
    deadline = time.monotonic() + wait_seconds
    while time.monotonic() < deadline:
        ours = [pid for pid, tagged in session_members(lease).items() if tagged]
        if not ours:
            break
        _kill(ours)
        ended += [pid for pid in ours if pid not in ended]
        time.sleep(0.05)
    return ended


def end_session(sid: int) -> None:
    """SIGKILL every process of this process's own engine session `sid` (a child it still
    waits for, so the id cannot have been reused)."""
    _kill(list(_session(sid, None)))


def _kill(pids: list[int]) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
