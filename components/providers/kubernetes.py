"""Kubernetes objects as Pulumi resources, through a dynamic provider.

Why not pulumi-kubernetes: its provider plugin cannot be built from the Go module proxy these
machines reach (every `github.com/pulumi/pulumi-kubernetes/provider/v4` version answers 403),
and nothing else here can supply it. This provider covers what the project's stacks need, on
the real engine and a real API server:

- create/update: server-side apply of the whole manifest under the field manager
  `cameleer` (force), so fields the program stops setting are removed and fields other
  managers own are left alone;
- read (refresh): the live object projected onto the manifest's shape. A field the program
  manages that someone changed shows up as drift; fields the API server or controllers add
  (defaults, status, uid, extra labels) do not;
- delete: foreground deletion, waiting until the object is gone (a Namespace waits for the
  controller-manager to finalize it);
- diff: a change of apiVersion, kind, name or namespace replaces; anything else updates.

It does not await rollouts: the local API server has no nodes, and readiness of workloads is
the control plane's readiness check, not the provider's.

Type tokens are `pulumi-python:dynamic/kubernetes:<Kind>`; the inputs are `cluster` (how to
reach the API server) and `manifest` (the object).
"""

from __future__ import annotations

import base64
import copy
import os
import time
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

import pulumi
from pulumi.dynamic import CreateResult, DiffResult, ReadResult, Resource, ResourceProvider, UpdateResult

FIELD_MANAGER = "cameleer"
# Which stack owns an object. Create refuses an object another stack (or nobody) owns, so
# that one stack can never adopt, and later delete, another's object.
OWNER_ANNOTATION = "cameleer.io/owner"
DELETE_TIMEOUT_SECONDS = 180
# Server-populated metadata that is never part of what a program manages.
_IGNORED_METADATA = frozenset({
    "uid", "resourceVersion", "generation", "creationTimestamp", "managedFields",
    "selfLink", "deletionTimestamp", "deletionGracePeriodSeconds", "finalizers", "ownerReferences",
})
_IDENTITY_PATHS = (("apiVersion",), ("kind",), ("metadata", "name"), ("metadata", "namespace"))


@dataclass(frozen=True)
class Cluster:
    """How to reach a cluster's API server: a kubeconfig file and an optional context.

    The kubeconfig's credentials never enter the stack's state, only its path.
    """

    kubeconfig: str
    context: str | None = None

    @classmethod
    def from_config(cls, config: pulumi.Config | None = None) -> "Cluster":
        """`cameleer:kubeconfig` / `cameleer:kubeContext`, falling back to $KUBECONFIG."""
        config = config or pulumi.Config("cameleer")
        kubeconfig = config.get("kubeconfig") or os.environ.get("KUBECONFIG")
        if not kubeconfig:
            raise ValueError(
                "no cluster configured: set `pulumi config set cameleer:kubeconfig <path>` "
                "or export KUBECONFIG (after `source .cameleer/services.env` for the local cluster)"
            )
        return cls(kubeconfig=os.path.abspath(os.path.expanduser(kubeconfig)), context=config.get("kubeContext"))

    def as_input(self) -> dict[str, Any]:
        return {key: value for key, value in asdict(self).items() if value is not None}


# ------------------------------------------------------------------------------ manifest shape


def project(live: Any, desired: Any) -> Any:
    """`live` restricted to the shape of `desired`: the managed view of a live object.

    Dicts keep only the desired keys; lists are projected element by element, and a list of a
    different length is taken whole (an added or removed element is drift in itself).
    """
    if isinstance(desired, dict) and isinstance(live, dict):
        return {key: project(live[key], value) for key, value in desired.items() if key in live}
    if isinstance(desired, list) and isinstance(live, list):
        if len(desired) != len(live):
            return live
        return [project(item, want) for item, want in zip(live, desired)]
    return live


def identity(manifest: dict) -> tuple[str, str, str, str | None]:
    metadata = manifest.get("metadata") or {}
    return manifest["apiVersion"], manifest["kind"], metadata["name"], metadata.get("namespace")


def object_id(manifest: dict) -> str:
    _, kind, name, namespace = identity(manifest)
    return f"{kind}/{namespace}/{name}" if namespace else f"{kind}/{name}"


def changed_paths(old: Any, new: Any, prefix: str = "") -> list[str]:
    """Property paths (dotted, list indexes in brackets) whose values differ."""
    if isinstance(old, dict) and isinstance(new, dict):
        paths: list[str] = []
        for key in sorted(set(old) | set(new)):
            path = f"{prefix}.{key}" if prefix else key
            paths += changed_paths(old.get(key), new.get(key), path) if key in old and key in new else [path]
        return paths
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        paths = []
        for index, (a, b) in enumerate(zip(old, new)):
            paths += changed_paths(a, b, f"{prefix}[{index}]")
        return paths
    return [] if old == new else [prefix]


def _strip_server_metadata(obj: dict) -> dict:
    obj = copy.deepcopy(obj)
    metadata = obj.get("metadata") or {}
    for key in _IGNORED_METADATA:
        metadata.pop(key, None)
    obj.pop("status", None)
    return obj


# ------------------------------------------------------------------------------ API access


class _Api:
    """A dynamic Kubernetes client for one cluster, created lazily in the provider process."""

    _clients: ClassVar[dict[tuple[str, str | None], Any]] = {}

    def __init__(self, cluster: dict) -> None:
        from kubernetes import config as kube_config, dynamic  # heavy import: provider process only

        key = (cluster["kubeconfig"], cluster.get("context"))
        if key not in self._clients:
            api_client = kube_config.new_client_from_config(config_file=key[0], context=key[1])
            self._clients[key] = dynamic.DynamicClient(api_client)
        self.client = self._clients[key]

    def resource(self, api_version: str, kind: str):
        return self.client.resources.get(api_version=api_version, kind=kind)

    def apply(self, manifest: dict, owner: str) -> dict:
        api_version, kind, name, namespace = identity(manifest)
        body = copy.deepcopy(manifest)
        body["metadata"].setdefault("annotations", {})[OWNER_ANNOTATION] = owner
        applied = self.resource(api_version, kind).server_side_apply(
            body=body, name=name, namespace=namespace,
            field_manager=FIELD_MANAGER, force_conflicts=True,
        )
        return applied.to_dict()

    def get(self, manifest: dict) -> dict | None:
        from kubernetes.dynamic.exceptions import NotFoundError

        api_version, kind, name, namespace = identity(manifest)
        try:
            return self.resource(api_version, kind).get(name=name, namespace=namespace).to_dict()
        except NotFoundError:
            return None

    def delete(self, manifest: dict) -> None:
        from kubernetes.dynamic.exceptions import NotFoundError

        api_version, kind, name, namespace = identity(manifest)
        try:
            self.resource(api_version, kind).delete(
                name=name, namespace=namespace, body={"propagationPolicy": "Foreground"},
            )
        except NotFoundError:
            return
        deadline = time.monotonic() + DELETE_TIMEOUT_SECONDS
        while self.get(manifest) is not None:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{object_id(manifest)} still exists {DELETE_TIMEOUT_SECONDS}s after deletion")
            time.sleep(1)


# ------------------------------------------------------------------------------ provider


def _live_view(live: dict, manifest: dict) -> dict:
    """The live object as the program would have written it, before projection.

    The API server stores a Secret's `stringData` base64-encoded under `data`; decode the
    keys the program wrote as `stringData` so that an unchanged Secret is not drift.
    """
    live = _strip_server_metadata(live)
    if live.get("kind") == "Secret" and "stringData" in manifest:
        encoded = live.get("data") or {}
        live["stringData"] = {
            key: base64.b64decode(encoded[key]).decode() for key in manifest["stringData"] if key in encoded
        }
    return live


def _outputs(props: dict, live: dict) -> dict:
    manifest = props["manifest"]
    return {"cluster": props["cluster"], "owner": props.get("owner", ""),
            "manifest": project(_live_view(live, manifest), manifest)}


class ForeignObjectError(Exception):
    """The object exists and belongs to another stack, or to no stack."""


def _check_not_foreign(live: dict | None, manifest: dict, owner: str) -> None:
    """A create may take over its own object (left by an interrupted update), nothing else."""
    if live is None:
        return
    found = ((live.get("metadata") or {}).get("annotations") or {}).get(OWNER_ANNOTATION)
    if found != owner:
        held_by = f"stack {found}" if found else "no Cameleer stack"
        raise ForeignObjectError(
            f"{object_id(manifest)} already exists and belongs to {held_by}, not {owner}; "
            "delete it, or manage it from the stack that owns it"
        )


class KubeObjectProvider(ResourceProvider):
    serialize_as_secret_always = False

    def create(self, props: dict) -> CreateResult:
        api = _Api(props["cluster"])
        _check_not_foreign(api.get(props["manifest"]), props["manifest"], props["owner"])
        live = api.apply(props["manifest"], props["owner"])
        return CreateResult(object_id(props["manifest"]), _outputs(props, live))

    def diff(self, _id: str, olds: dict, news: dict) -> DiffResult:
        old, new = olds.get("manifest") or {}, news["manifest"]
        paths = [f"manifest.{path}" for path in changed_paths(old, new)]
        replaces = [
            "manifest." + ".".join(path) for path in _IDENTITY_PATHS
            if _dig(old, path) != _dig(new, path)
        ]
        if olds.get("cluster") != news.get("cluster"):
            paths.append("cluster")
        return DiffResult(changes=bool(paths), replaces=replaces, stables=[], delete_before_replace=True)

    def update(self, _id: str, _olds: dict, news: dict) -> UpdateResult:
        live = _Api(news["cluster"]).apply(news["manifest"], news["owner"])
        return UpdateResult(_outputs(news, live))

    def read(self, id_: str, props: dict) -> ReadResult:
        live = _Api(props["cluster"]).get(props["manifest"])
        if live is None:
            return ReadResult(id_=None, outs={})  # gone: refresh drops it from state
        return ReadResult(id_, _outputs(props, live))

    def delete(self, _id: str, props: dict) -> None:
        _Api(props["cluster"]).delete(props["manifest"])


def _dig(obj: dict, path: tuple[str, ...]) -> Any:
    for key in path:
        obj = (obj or {}).get(key)
    return obj


# ------------------------------------------------------------------------------ resources

_kind_classes: dict[str, type] = {}


def _resource_class(kind: str) -> type:
    """One Resource subclass per kind, so the type token reads `.../kubernetes:<Kind>`."""
    if kind not in _kind_classes:
        _kind_classes[kind] = type(kind, (_KubeObjectResource,), {}, module="kubernetes", name=kind)
    return _kind_classes[kind]


class _KubeObjectResource(Resource):
    manifest: pulumi.Output[dict]
    cluster: pulumi.Output[dict]

    def __init__(self, resource_name: str, props: dict, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(KubeObjectProvider(), resource_name, props, opts)


def KubeObject(  # noqa: N802 - reads as a resource class at call sites
    resource_name: str,
    *,
    cluster: Cluster,
    manifest: dict,
    opts: pulumi.ResourceOptions | None = None,
) -> _KubeObjectResource:
    """A Kubernetes object managed by server-side apply.

    A Secret's manifest is a secret in state as a whole, as is anything the program passes
    in as a secret Output.
    """
    kind = manifest["kind"]
    if kind == "Secret":
        opts = pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(additional_secret_outputs=["manifest"]))
    owner = f"{pulumi.get_project()}/{pulumi.get_stack()}"
    props = {"cluster": cluster.as_input(), "owner": owner, "manifest": manifest}
    return _resource_class(kind)(resource_name, props, opts)
