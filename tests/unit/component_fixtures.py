"""Argument builders shared by the component tests."""

from __future__ import annotations

from components.catalog import get_tier
from components.cluster import Cluster, ExistingCluster
from components.endpoints import DatabaseEndpoint

KUBECONFIG = "apiVersion: v1\nkind: Config\n# test cluster\n"


def cluster() -> Cluster:
    """A fresh cluster connection (its provider is registered by the first object on it)."""
    return Cluster("test", KUBECONFIG)


def target() -> ExistingCluster:
    return ExistingCluster(cluster(), internal_cidrs=("10.96.0.0/12", "198.18.0.0/15"))


DATABASE = DatabaseEndpoint(host="203.0.113.10", port=5432, cidr="203.0.113.10/32")
IMAGE = "ghcr.io/cameleer/server@sha256:" + "ab" * 32
ADMIN_URL = "postgresql://admin:admin-secret@203.0.113.10:5432/cameleer"
LICENSE = "eyJhbGciOiJFZERTQSJ9.license.signature"


def tier(name: str):
    return get_tier(name)
