"""Watch mode: keep list/watch on every cluster the stacks use and report drift as it happens.

`DriftWatcher` holds the live objects of every kind the stacks declare (one list, then one
watch per kind and cluster) and each stack's declaration from its checkpoint. A watch event
marks the stack that declared the object; the stack is compared again (precheck.py's rule)
within the next tick, and a change of verdict goes to the sink: `drifted` with the
findings, `cleared` once it is back. Checkpoints are re-read when their version changes, so
an update or a correction is seen as the new expectation; tenant schemas are observed on
each resync, for all stacks through one connection (there is no watch for them).

On start (and after a watch expires past its resourceVersion: 410 Gone) every kind is
listed again and every stack compared, so a change made while the watcher was down is
reported the same as one made while it ran.

Corrections: a stack whose policy says so (`fix_all`, or its setting `cameleer:driftCorrection:
auto`) is corrected through StackOperations.correct_drift, recorded in its history with the
reason "drift correction", at most once per stack per `fix_interval` seconds (another
controller fighting over a field cannot make it loop).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Protocol

from .checkpoints import CheckpointReader
from .errors import ErrorKind, OperationError
from .history import UpdateMetadata
from .livestate import MANAGED_SELECTOR, ClusterReader, Kind, ObjectKey, key_of
from .operations import StackOperations
from .precheck import (Finding, StackDeclaration, StackVerdict, connect_cluster, database_findings,
                       declaration_of, default_cluster_name, object_finding)
from .tenants import tenant_database_admin_url

log = logging.getLogger(__name__)

WATCH_CORRECTION_REASON = "drift correction"
CORRECTION_SETTING = "cameleer:driftCorrection"


@dataclass(frozen=True)
class WatchEvent:
    event: str  # ready | drifted | cleared | correction | error
    stack: str | None = None
    findings: tuple[Finding, ...] = ()
    detail: str = ""
    data: Mapping[str, Any] = field(default_factory=dict)
    at: datetime = field(default_factory=lambda: datetime.now(timezone.utc))

    def to_dict(self) -> dict[str, Any]:
        return {"schema": "cameleer.drift-watch/v1", "event": self.event, "stack": self.stack,
                "at": self.at.isoformat().replace("+00:00", "Z"), "findings": [f.to_dict() for f in self.findings],
                "detail": self.detail, **self.data}


class WatchSink(Protocol):
    def __call__(self, event: WatchEvent) -> None: ...


class _ClusterCache:
    """The live objects of one cluster, by key, fed by one thread per kind."""

    def __init__(self, reader: ClusterReader, changed: Callable[[str, ObjectKey], None]) -> None:
        self.reader, self.changed = reader, changed
        self.objects: dict[ObjectKey, dict] = {}
        self.kinds: dict[Kind, bool] = {}  # kind -> listed without the selector
        self.lock = threading.Lock()
        self.stopping = threading.Event()

    def follow(self, kind: Kind, unselected: bool) -> None:
        if kind in self.kinds:
            return
        self.kinds[kind] = unselected
        version = self._relist(kind)
        threading.Thread(target=self._watch, args=(kind, version), daemon=True,
                         name=f"watch-{self.reader.name}-{kind.kind}").start()

    def _relist(self, kind: Kind) -> str:
        selector = None if self.kinds[kind] else MANAGED_SELECTOR
        items, version = self.reader.list_kind(kind, selector=selector)
        fresh = {key_of(obj, kind.api_version): obj for obj in items}
        with self.lock:
            gone = [k for k in self.objects if k.of_kind == kind and k not in fresh]
            for key in gone:
                del self.objects[key]
            self.objects.update(fresh)
        for key in [*gone, *fresh]:
            self.changed(self.reader.name, key)
        return version

    def _watch(self, kind: Kind, version: str) -> None:
        selector = None if self.kinds[kind] else MANAGED_SELECTOR
        while not self.stopping.is_set():
            try:
                for type_, obj in self.reader.watch_kind(kind, version, selector=selector):
                    if type_ == "ERROR":
                        raise _Expired(str(obj.get("message", obj)))
                    version = (obj.get("metadata") or {}).get("resourceVersion") or version
                    if type_ == "BOOKMARK":
                        continue
                    key = key_of(obj, kind.api_version)
                    with self.lock:
                        if type_ == "DELETED":
                            self.objects.pop(key, None)
                        else:
                            self.objects[key] = obj
                    self.changed(self.reader.name, key)
            except Exception as exc:  # noqa: BLE001 - expired or broken: list again and go on
                if self.stopping.is_set():
                    return
                log.info("watch of %s on %s ended (%s); listing again", kind, self.reader.name, exc)
                time.sleep(1)
                try:
                    version = self._relist(kind)
                except Exception as relist_error:  # noqa: BLE001 - the cluster is away: retry
                    log.warning("listing %s on %s failed: %s", kind, self.reader.name, relist_error)

    def get(self, key: ObjectKey) -> dict | None:
        with self.lock:
            return self.objects.get(key)


class _Expired(Exception):
    pass


class DriftWatcher:
    def __init__(self, ops: StackOperations, sink: WatchSink, *, fix_all: bool = False,
                 fix_interval: float = 600.0, resync_seconds: float = 30.0, tick_seconds: float = 0.25,
                 shard: tuple[int, int] = (0, 1), environ: Mapping[str, str] | None = None) -> None:
        import os

        self.ops, self.sink = ops, sink
        self.fix_all, self.fix_interval = fix_all, fix_interval
        self.resync_seconds, self.tick_seconds = resync_seconds, tick_seconds
        self.shard = shard
        self.environ = dict(environ) if environ is not None else {**os.environ, **ops.factory.env_vars()}
        self.reader = CheckpointReader(ops.settings.backend_url, ops.factory.project_name)
        self.default_cluster = default_cluster_name(self.environ)
        self.clusters: dict[str, _ClusterCache] = {}
        self.declarations: dict[str, StackDeclaration] = {}
        self.versions: dict[str, str] = {}
        self.owners: dict[tuple[str, ObjectKey], str] = {}  # (cluster, object) -> stack
        self.owned: dict[str, list[tuple[str, ObjectKey]]] = {}  # stack -> its entries in owners
        self.verdicts: dict[str, StackVerdict] = {}
        self.schema_findings: dict[str, list[Finding]] = {}  # as of the last resync
        self.last_fix: dict[str, float] = {}
        self.correcting: set[str] = set()
        self.dirty: set[str] = set()
        self.dirty_lock = threading.Lock()
        self.stopping = threading.Event()
        self.corrections: queue.Queue[str] = queue.Queue()
        self.resync_now = threading.Event()  # set after a correction rewrote a checkpoint

    # -- lifecycle ------------------------------------------------------------------

    def run(self, *, until: Callable[[], bool] | None = None) -> None:
        """Watch until `stop()` (or `until()` is true)."""
        threading.Thread(target=self._correct_forever, daemon=True, name="drift-corrections").start()
        self._resync(initial=True)
        self.sink(WatchEvent("ready", data={"stacks": len(self.declarations),
                                            "objects": sum(len(c.objects) for c in self.clusters.values())}))
        next_resync = time.monotonic() + self.resync_seconds
        while not self.stopping.is_set() and not (until and until()):
            if time.monotonic() >= next_resync or self.resync_now.is_set():
                self.resync_now.clear()
                self._resync()
                next_resync = time.monotonic() + self.resync_seconds
            self._evaluate_dirty()
            self.stopping.wait(self.tick_seconds)
        self.stop()

    def stop(self) -> None:
        self.stopping.set()
        for cache in self.clusters.values():
            cache.stopping.set()

    # -- state ------------------------------------------------------------------------

    def _resync(self, *, initial: bool = False) -> None:
        versions = self.reader.versions()
        changed = [s for s, v in versions.items() if self.versions.get(s) != v]
        for stack in set(self.declarations) - set(versions):
            self._forget(stack)
        if changed:
            for stack, checkpoint in self.reader.read(changed).items():
                declaration = declaration_of(checkpoint)
                if self._in_shard(declaration):
                    self._learn(declaration)
                self.versions[stack] = versions[stack]
        # Schemas have no watch: observed for every stack on each resync, in one connection.
        schema_findings = self._observe_schemas()
        with self.dirty_lock:
            self.dirty |= set(changed) | {s for s, f in schema_findings.items() if f != self.schema_findings.get(s)}
            if initial:
                self.dirty |= set(self.declarations)
        self.schema_findings = schema_findings
        self._evaluate_dirty()

    def _observe_schemas(self) -> dict[str, list[Finding]]:
        declarations = [d for d in self.declarations.values() if d.schemas]
        if not declarations:
            return {}
        try:
            admin_url = tenant_database_admin_url(self.environ)
        except Exception:  # noqa: BLE001 - the schemas are then reported unverifiable
            admin_url = None
        return dict(database_findings(declarations, admin_url))

    def _in_shard(self, declaration: StackDeclaration) -> bool:
        clusters = {d.cluster or self.default_cluster for d in declaration.objects} or {self.default_cluster}
        return any(in_shard(cluster, self.shard) for cluster in clusters)

    def _learn(self, declaration: StackDeclaration) -> None:
        stack = declaration.stack
        self._forget(stack, keep_verdict=True)
        self.declarations[stack] = declaration
        owned = self.owned.setdefault(stack, [])
        for declared in declaration.objects:
            cluster = declared.cluster or self.default_cluster
            self.owners[(cluster, declared.key)] = stack
            owned.append((cluster, declared.key))
            cache = self._cluster(cluster)
            if cache is not None:
                cache.follow(declared.key.of_kind, unselected=not declared.selectable)

    def _forget(self, stack: str, *, keep_verdict: bool = False) -> None:
        self.declarations.pop(stack, None)
        for entry in self.owned.pop(stack, ()):
            if self.owners.get(entry) == stack:
                del self.owners[entry]
        if not keep_verdict and self.verdicts.pop(stack, None) is not None:
            self.sink(WatchEvent("cleared", stack, detail="the stack is gone"))

    def _cluster(self, name: str) -> _ClusterCache | None:
        if name not in self.clusters:
            try:
                reader = connect_cluster(name, self.environ)
            except LookupError as exc:
                self.sink(WatchEvent("error", detail=str(exc)))
                return None
            self.clusters[name] = _ClusterCache(reader, self._object_changed)
        return self.clusters[name]

    def _object_changed(self, cluster: str, key: ObjectKey) -> None:
        stack = self.owners.get((cluster, key))
        if stack is not None:
            with self.dirty_lock:
                self.dirty.add(stack)

    # -- verdicts -----------------------------------------------------------------------

    def _evaluate_dirty(self) -> None:
        with self.dirty_lock:
            stacks, self.dirty = self.dirty, set()
        for stack in sorted(stacks):
            self._refresh_declaration(stack)
            declaration = self.declarations.get(stack)
            # Mid-operation (ours or anyone's) the state is in motion: hold the verdict until
            # the operation has written its checkpoint. Pending operations left by a crash
            # are the drift job's and recovery's (they go to the engine there).
            if declaration is not None and not declaration.pending and stack not in self.correcting:
                self._judge(stack, self._verdict(declaration))

    def _refresh_declaration(self, stack: str) -> None:
        """Re-read the stack's checkpoint if it changed since it was read: an update that
        changes an object writes its checkpoint (with pending operations) first, so its own
        changes are never reported as drift."""
        version = self.reader.version(stack)
        if version is not None and version != self.versions.get(stack):
            for checkpoint in self.reader.read([stack]).values():
                self._learn(declaration_of(checkpoint))
            self.versions[stack] = version

    def _verdict(self, declaration: StackDeclaration) -> StackVerdict:
        findings = list(declaration.findings)
        for declared in declaration.objects:
            cache = self.clusters.get(declared.cluster or self.default_cluster)
            if cache is None:
                findings.append(Finding(declared.resource, "unverified", detail="cluster not reachable"))
            elif (finding := object_finding(declared, cache.get(declared.key))) is not None:
                findings.append(finding)
        findings += self.schema_findings.get(declaration.stack, [])
        return StackVerdict(declaration.stack, tuple(findings), len(declaration.objects) + len(declaration.schemas))

    def _judge(self, stack: str, verdict: StackVerdict) -> None:
        before = self.verdicts.get(stack)
        if verdict.clean:
            if before is not None:
                del self.verdicts[stack]
                self.sink(WatchEvent("cleared", stack))
            return
        self.verdicts[stack] = verdict
        if before is None or before.findings != verdict.findings:
            self.sink(WatchEvent("drifted", stack, verdict.findings))
            if self._should_correct(stack):
                self.corrections.put(stack)

    # -- corrections ------------------------------------------------------------------------

    def _should_correct(self, stack: str) -> bool:
        if stack in self.correcting:
            return False
        if not self.fix_all and str(self.ops.factory.read_stack_config(stack).get(CORRECTION_SETTING)) != "auto":
            return False
        last = self.last_fix.get(stack)
        if last is not None and time.monotonic() - last < self.fix_interval:
            self.sink(WatchEvent("correction", stack, detail=f"skipped: corrected less than "
                                 f"{self.fix_interval:g}s ago", data={"result": "skipped"}))
            return False
        self.last_fix[stack] = time.monotonic()
        self.correcting.add(stack)
        return True

    def _correct_forever(self) -> None:
        while not self.stopping.is_set():
            try:
                stack = self.corrections.get(timeout=0.5)
            except queue.Empty:
                continue
            metadata = UpdateMetadata(self.ops.settings.actor, WATCH_CORRECTION_REASON, kind="drift-correction")
            try:
                result = self.ops.correct_drift(stack, metadata)
                self.sink(WatchEvent("correction", stack, data={"result": "succeeded",
                                                                "resource_changes": result.resource_changes}))
            except Exception as exc:  # noqa: BLE001 - reported; the watch goes on
                self.sink(WatchEvent("correction", stack, detail=str(exc)[:500], data={"result": "failed"}))
            self.correcting.discard(stack)
            with self.dirty_lock:
                self.dirty.add(stack)
            self.resync_now.set()


def watch_metrics(port: int | None) -> WatchSink:
    """Prometheus counters and a gauge for watch mode, served on `port` (none: not served)."""
    from prometheus_client import Counter, Gauge, start_http_server

    drifted = Gauge("cameleer_drift_watch_stacks_drifted", "Stacks the watcher sees drifted now")
    detections = Counter("cameleer_drift_watch_detections_total", "Drift reports of the watcher")
    corrections = Counter("cameleer_drift_watch_corrections_total", "Corrections started by the watcher",
                          ["result"])
    current: set[str] = set()
    if port is not None:
        start_http_server(port, addr="127.0.0.1")

    def observe(event: WatchEvent) -> None:
        if event.event == "drifted":
            detections.inc()
            current.add(event.stack)
        elif event.event == "cleared":
            current.discard(event.stack)
        elif event.event == "correction":
            corrections.labels(event.data.get("result", "unknown")).inc()
        drifted.set(len(current))

    return observe


def in_shard(cluster: str, shard: tuple[int, int]) -> bool:
    """Watchers split the clusters among themselves: shard (i, n) takes the clusters whose
    name hashes to i modulo n, and every stack on them."""
    index, count = shard
    return zlib.crc32(cluster.encode()) % count == index


def parse_shard(text: str) -> tuple[int, int]:
    """`I/N` -> (I, N), with 0 <= I < N."""
    index, _, count = text.partition("/")
    try:
        shard = int(index), int(count)
    except ValueError:
        raise OperationError(ErrorKind.CONFIG, f"--shard must be I/N (e.g. 0/3), not {text!r}") from None
    if not 0 <= shard[0] < shard[1]:
        raise OperationError(ErrorKind.CONFIG, f"--shard {text}: need 0 <= I < N")
    return shard
