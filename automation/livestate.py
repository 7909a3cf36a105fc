"""The live objects of a cluster, read the way Argo CD and Flux read them: one list per kind.

`ClusterReader.list_kinds` fetches every object of the given kinds that carries the
platform's `app.kubernetes.io/managed-by` label, across all namespaces, one paginated
request per kind (never one per stack or per object). Kinds whose declared objects lack
that label are listed without the selector. Objects come back as the API server's JSON
(no model classes: decoding thousands of objects into them would cost more than the
request).

`watch_kind` follows one kind from a resourceVersion on, for watch mode (watch.py).

Every object but a Secret is kept without `metadata.managedFields` (often half its size):
only the pre-check's rule for encrypted values reads them, and only Secrets carry those.
Without them, that rule cannot prove an object unchanged and flags it: never a false clean.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from components.naming import MANAGED_BY, MANAGED_BY_LABEL

MANAGED_SELECTOR = f"{MANAGED_BY_LABEL}={MANAGED_BY}"
PAGE_SIZE = 500
REQUEST_TIMEOUT_SECONDS = 30


@dataclass(frozen=True, order=True)
class Kind:
    api_version: str  # `v1`, `apps/v1`
    kind: str

    def __str__(self) -> str:
        return f"{self.api_version}/{self.kind}" if "/" in self.api_version else f"{self.api_version} {self.kind}"


@dataclass(frozen=True, order=True)
class ObjectKey:
    api_version: str
    kind: str
    namespace: str  # "" for cluster-scoped objects
    name: str

    @property
    def of_kind(self) -> Kind:
        return Kind(self.api_version, self.kind)

    def __str__(self) -> str:
        where = f"{self.namespace}/" if self.namespace else ""
        return f"{self.kind} {where}{self.name}"


SECRET = Kind("v1", "Secret")


def key_of(obj: dict[str, Any], api_version: str | None = None) -> ObjectKey:
    metadata = obj.get("metadata") or {}
    return ObjectKey(api_version or obj.get("apiVersion", ""), obj.get("kind", ""),
                     metadata.get("namespace") or "", metadata.get("name", ""))


def _slim(obj: dict[str, Any], kind: Kind) -> dict[str, Any]:
    obj.setdefault("apiVersion", kind.api_version)
    obj.setdefault("kind", kind.kind)
    if kind != SECRET:
        (obj.get("metadata") or {}).pop("managedFields", None)
    return obj


class ClusterReader:
    """Lists and watches one cluster's objects through a kubeconfig's content."""

    def __init__(self, name: str, kubeconfig: str) -> None:
        from .readiness import api_client

        self.name = name
        self._api = api_client(kubeconfig)
        self._plurals: dict[Kind, str] = {}
        self._discovered: set[str] = set()
        self._lock = threading.Lock()
        self.requests = 0

    def close(self) -> None:
        self._api.close()

    def list_kinds(self, kinds: Iterable[Kind], *, unselected: Iterable[Kind] = ()) -> dict[ObjectKey, dict]:
        """Every managed object of `kinds` (of `unselected` kinds: every object), by key."""
        unselected = set(unselected)
        found: dict[ObjectKey, dict] = {}
        for kind in sorted(set(kinds) | unselected):
            selector = None if kind in unselected else MANAGED_SELECTOR
            items, _version = self.list_kind(kind, selector=selector)
            for obj in items:
                found[key_of(obj, kind.api_version)] = obj
        return found

    def list_kind(self, kind: Kind, *, selector: str | None = MANAGED_SELECTOR) -> tuple[list[dict], str]:
        """All objects of one kind (paginated), and the list's resourceVersion to watch from."""
        items: list[dict] = []
        token = None
        while True:
            query = [("limit", PAGE_SIZE)]
            if selector:
                query.append(("labelSelector", selector))
            if token:
                query.append(("continue", token))
            page = self._get(self.collection_path(kind), query)
            for obj in page.get("items") or []:
                items.append(_slim(obj, kind))
            token = (page.get("metadata") or {}).get("continue")
            if not token:
                return items, (page.get("metadata") or {}).get("resourceVersion", "")

    def watch_kind(self, kind: Kind, resource_version: str, *, selector: str | None = MANAGED_SELECTOR,
                   timeout_seconds: int = 300) -> Iterator[tuple[str, dict]]:
        """(type, object) events of one kind after `resource_version`: ADDED, MODIFIED,
        DELETED, BOOKMARK; ERROR (e.g. 410 Gone: relist) ends the stream."""
        query = [("watch", "true"), ("resourceVersion", resource_version), ("allowWatchBookmarks", "true"),
                 ("timeoutSeconds", timeout_seconds)]
        if selector:
            query.append(("labelSelector", selector))
        response = self._api.call_api(
            self.collection_path(kind), "GET", query_params=query, header_params={"Accept": "application/json"},
            auth_settings=["BearerToken"], _preload_content=False, _request_timeout=(10, timeout_seconds + 30),
        )[0]
        self.requests += 1
        try:
            buffer = b""
            for chunk in response.stream(65536):
                buffer += chunk
                while b"\n" in buffer:
                    line, buffer = buffer.split(b"\n", 1)
                    if line.strip():
                        event = json.loads(line)
                        yield event.get("type", ""), _slim(event.get("object") or {}, kind)
        finally:
            response.release_conn()

    def collection_path(self, kind: Kind) -> str:
        prefix = "/api/v1" if kind.api_version == "v1" else f"/apis/{kind.api_version}"
        return f"{prefix}/{self._plural(kind)}"

    def _plural(self, kind: Kind) -> str:
        with self._lock:
            if kind not in self._plurals and kind.api_version not in self._discovered:
                prefix = "/api/v1" if kind.api_version == "v1" else f"/apis/{kind.api_version}"
                for resource in self._get(prefix, []).get("resources") or []:
                    if "/" not in resource["name"]:
                        self._plurals[Kind(kind.api_version, resource["kind"])] = resource["name"]
                self._discovered.add(kind.api_version)
            if kind not in self._plurals:
                raise LookupError(f"cluster {self.name} serves no {kind}")
            return self._plurals[kind]

    def _get(self, path: str, query: list[tuple[str, Any]]) -> dict[str, Any]:
        response = self._api.call_api(
            path, "GET", query_params=query, header_params={"Accept": "application/json"},
            auth_settings=["BearerToken"], _preload_content=False, _request_timeout=REQUEST_TIMEOUT_SECONDS,
        )[0]
        self.requests += 1
        return json.loads(response.data)
