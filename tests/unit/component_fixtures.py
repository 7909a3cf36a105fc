"""Argument builders shared by the component tests."""

from __future__ import annotations

from components.catalog import get_tier
from components.cluster import ExistingCluster
from components.endpoints import DatabaseEndpoint
from components.providers.kubernetes import Cluster

CLUSTER = Cluster(kubeconfig="/tmp/kubeconfig")
TARGET = ExistingCluster(CLUSTER, internal_cidrs=("10.96.0.0/12", "198.18.0.0/15"))
DATABASE = DatabaseEndpoint(host="203.0.113.10", port=5432, cidr="203.0.113.10/32")
IMAGE = "ghcr.io/cameleer/server@sha256:" + "ab" * 32
ADMIN_URL = "postgresql://admin:admin-secret@203.0.113.10:5432/cameleer"
LICENSE = "eyJhbGciOiJFZERTQSJ9.license.signature"


def tier(name: str):
    return get_tier(name)
