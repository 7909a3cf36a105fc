"""Kubernetes objects as plain dicts."""

from __future__ import annotations

from typing import Any


def manifest(api_version: str, kind: str, name: str, *, namespace: str | None = None,
             labels: dict[str, str] | None = None, **body: Any) -> dict:
    """A Kubernetes object as a dict: apiVersion, kind, metadata, then the body's fields."""
    metadata: dict[str, Any] = {"name": name}
    if namespace is not None:
        metadata["namespace"] = namespace
    if labels:
        metadata["labels"] = dict(labels)
    return {"apiVersion": api_version, "kind": kind, "metadata": metadata, **body}
