"""Quota use of a tenant's namespaces, read from its cluster when the page is shown."""

from __future__ import annotations

from dataclasses import dataclass

from components.naming import TENANT_LABEL

REQUEST_TIMEOUT_SECONDS = 5


@dataclass(frozen=True)
class QuotaLine:
    namespace: str
    resource: str
    used: str
    hard: str


class QuotaUnavailable(Exception):
    """The cluster could not be read; the page says so instead of failing."""


def quota_use(slug: str, cluster: str) -> list[QuotaLine]:
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException
    from urllib3.exceptions import HTTPError

    from api.billing.metering import kube_client_for_cluster

    try:
        core = client.CoreV1Api(kube_client_for_cluster(cluster))
        namespaces = core.list_namespace(label_selector=f"{TENANT_LABEL}={slug}",
                                         _request_timeout=REQUEST_TIMEOUT_SECONDS).items
        lines = []
        for namespace in sorted(namespaces, key=lambda n: n.metadata.name):
            name = namespace.metadata.name
            for quota in core.list_namespaced_resource_quota(name, _request_timeout=REQUEST_TIMEOUT_SECONDS).items:
                hard, used = quota.status.hard or {}, quota.status.used or {}
                lines += [QuotaLine(name, resource, used.get(resource, "0"), hard[resource]) for resource in sorted(hard)]
        return lines
    except (ApiException, HTTPError, OSError, LookupError, ValueError) as exc:
        raise QuotaUnavailable(f"cluster {cluster} could not be read: {type(exc).__name__}") from None
