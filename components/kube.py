"""Small helpers for declaring Kubernetes objects as children of a component."""

from __future__ import annotations

from typing import Any, Sequence

import pulumi

from components.providers.kubernetes import Cluster, KubeObject


def manifest(api_version: str, kind: str, name: str, *, namespace: str | None = None,
             labels: dict[str, str] | None = None, **body: Any) -> dict:
    """A Kubernetes object as a dict: apiVersion, kind, metadata, then the body's fields."""
    metadata: dict[str, Any] = {"name": name}
    if namespace is not None:
        metadata["namespace"] = namespace
    if labels:
        metadata["labels"] = dict(labels)
    return {"apiVersion": api_version, "kind": kind, "metadata": metadata, **body}


def child_object(parent: pulumi.Resource, name: str, cluster: Cluster, manifest: dict, *,
                 depends_on: Sequence[pulumi.Resource] = (), secret: bool = False) -> KubeObject:
    """Register `manifest` on `cluster` as a child of `parent`.

    `secret` keeps the whole applied manifest encrypted in state (e.g. a Secret's data).
    """
    return KubeObject(
        name,
        cluster=cluster,
        manifest=manifest,
        opts=pulumi.ResourceOptions(
            parent=parent,
            depends_on=list(depends_on),
            additional_secret_outputs=["manifest"] if secret else None,
        ),
    )
