"""The objects of the policy_violations program, importable by the test as well.

`CASES` maps each mandatory policy of the pack to (resource name, object): the object breaks
that policy and no other. `CONTROLS` are compliant objects that must draw no violation at
all (one of them is the default-deny policy the `tenant-namespace-labels` case's namespace
needs, so that namespace breaks only the labels rule: it has no label at all, and is a
tenant namespace by its name alone).
"""

from __future__ import annotations

import copy

from components import naming

NAMESPACE = "policy-violations"
PINNED = "ghcr.io/cameleer/server@sha256:" + "0123456789abcdef" * 4


def _probe(path: str) -> dict:
    return {"httpGet": {"path": path, "port": 8080}, "periodSeconds": 10}


def compliant_deployment(name: str) -> dict:
    labels = {"app.kubernetes.io/name": name}
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": NAMESPACE, "labels": labels},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
                    "containers": [{
                        "name": "server",
                        "image": PINNED,
                        "resources": {"requests": {"cpu": "100m", "memory": "128Mi"},
                                      "limits": {"cpu": "500m", "memory": "256Mi"}},
                        "securityContext": {"allowPrivilegeEscalation": False, "privileged": False,
                                            "capabilities": {"drop": ["ALL"]}},
                        "livenessProbe": _probe("/health/live"),
                        "readinessProbe": _probe("/health/ready"),
                    }],
                },
            },
        },
    }


def _changed(name: str, change) -> dict:
    deployment = copy.deepcopy(compliant_deployment(name))
    pod = deployment["spec"]["template"]["spec"]
    change(pod, pod["containers"][0])
    return deployment


def _privileged(_pod, container):
    container["securityContext"]["privileged"] = True


def _host_access(pod, _container):
    pod["hostNetwork"] = True
    pod["volumes"] = [{"name": "node-root", "hostPath": {"path": "/"}}]


def _root_capable(pod, container):
    del pod["securityContext"]["runAsNonRoot"]
    container["securityContext"] = {"privileged": False, "capabilities": {"drop": ["ALL"], "add": ["SYS_ADMIN"]}}


def _unlimited(_pod, container):
    del container["resources"]["limits"]


def _unpinned(_pod, container):
    container["image"] = "nginx:1.27"


def namespace(name: str, labels: dict[str, str] | None = None) -> dict:
    metadata = {"name": name, "labels": labels} if labels else {"name": name}
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": metadata}


def tenant_namespace(name: str) -> dict:
    return namespace(name, {**naming.tenant_labels("policy", "low", "prod"), **naming.pod_security_labels()})


def default_deny(namespace: str) -> dict:
    return {
        "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"name": "default-deny", "namespace": namespace},
        "spec": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]},
    }


CASES: dict[str, tuple[str, dict]] = {
    "no-privileged-containers": ("privileged", _changed("privileged", _privileged)),
    "no-host-access": ("host-access", _changed("host-access", _host_access)),
    "restricted-security-context": ("root-capable", _changed("root-capable", _root_capable)),
    "resource-limits": ("unlimited", _changed("unlimited", _unlimited)),
    "pinned-images": ("unpinned", _changed("unpinned", _unpinned)),
    "tenant-namespace-labels": ("unlabelled-namespace", namespace("tenant-policy-unlabelled")),
    "tenant-namespace-default-deny": ("undenied-namespace", tenant_namespace("tenant-policy-undenied")),
}

CONTROLS: dict[str, dict] = {
    "compliant": compliant_deployment("compliant"),
    "unlabelled-namespace-default-deny": default_deny("tenant-policy-unlabelled"),
    "compliant-namespace": tenant_namespace("tenant-policy-compliant"),
    "compliant-namespace-default-deny": default_deny("tenant-policy-compliant"),
}
