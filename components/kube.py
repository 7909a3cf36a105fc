"""Kubernetes objects: built as plain dicts, declared as typed pulumi-kubernetes resources.

Components write each object as the manifest a person would (`manifest(...)`), which keeps
them readable and lets the policy pack and tests read the same shape; `declare` turns it
into the matching `pulumi_kubernetes` resource (`kubernetes:apps/v1:Deployment`, ...) on the
cluster's provider.

Every object is applied with server-side apply under the field manager `cameleer`, and with
`pulumi.com/patchForce`: a field someone changed with `kubectl` (scale, edit, label, patch)
is owned by that manager afterwards, and only a forced apply takes it back. Without it the
drift correction would fail with a field-manager conflict.

Fields the program does not declare are left to their managers, with one exception that is
the provider's: before each apply it takes over what client-side `kubectl*` commands wrote
(its `fixCSAFieldManagers`), so a label added with a plain `kubectl label` goes with the
next update of that object. Tools that set their own field manager keep their fields.
"""

from __future__ import annotations

import importlib
import re
from typing import Any

import pulumi

FIELD_MANAGER = "cameleer"
# Which stack declared an object: read by operators and the fleet's drift tooling.
OWNER_ANNOTATION = "cameleer.io/owner"
PATCH_FORCE_ANNOTATION = "pulumi.com/patchForce"
FIELD_MANAGER_ANNOTATION = "pulumi.com/patchFieldManager"

# apiVersion -> the pulumi_kubernetes module holding its kinds.
_SDK_MODULES = {
    "v1": "core.v1",
    "apps/v1": "apps.v1",
    "networking.k8s.io/v1": "networking.v1",
    "rbac.authorization.k8s.io/v1": "rbac.v1",
    "scheduling.k8s.io/v1": "scheduling.v1",
    "policy/v1": "policy.v1",
    "batch/v1": "batch.v1",
}


def manifest(api_version: str, kind: str, name: str, *, namespace: str | None = None,
             labels: dict[str, str] | None = None, **body: Any) -> dict:
    """A Kubernetes object as a dict: apiVersion, kind, metadata, then the body's fields."""
    metadata: dict[str, Any] = {"name": name}
    if namespace is not None:
        metadata["namespace"] = namespace
    if labels:
        metadata["labels"] = dict(labels)
    return {"apiVersion": api_version, "kind": kind, "metadata": metadata, **body}


def resource_class(api_version: str, kind: str) -> type[pulumi.CustomResource]:
    """The pulumi_kubernetes class of an object (`v1`, `Namespace` -> core.v1.Namespace)."""
    module = _SDK_MODULES.get(api_version)
    if module is None:
        raise ValueError(f"no pulumi-kubernetes module is mapped for apiVersion {api_version!r}")
    return getattr(importlib.import_module(f"pulumi_kubernetes.{module}"), kind)


def managed_annotations(owner: str) -> dict[str, str]:
    return {OWNER_ANNOTATION: owner, PATCH_FORCE_ANNOTATION: "true", FIELD_MANAGER_ANNOTATION: FIELD_MANAGER}


def declare(resource_name: str, body: dict, provider: pulumi.ProviderResource,
            opts: pulumi.ResourceOptions | None = None) -> pulumi.CustomResource:
    """Declare the object `body` (a manifest) as its typed resource on `provider`."""
    fields = dict(body)
    cls = resource_class(fields.pop("apiVersion"), fields.pop("kind"))
    metadata = dict(fields.pop("metadata"))
    owner = f"{pulumi.get_project()}/{pulumi.get_stack()}"
    metadata["annotations"] = {**(metadata.get("annotations") or {}), **managed_annotations(owner)}
    arguments = {_snake_case(key): value for key, value in fields.items()}
    return cls(resource_name, metadata=metadata, **arguments,
               opts=pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(provider=provider)))


def _snake_case(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()
