"""A tenant-shaped stack, small enough for engine tests of the automation layer.

Namespace `auto-<slug>`, a ConfigMap and a Deployment that satisfies the project's
CrossGuard pack, as typed pulumi-kubernetes resources on the provider of the cluster
`cameleer:cluster` (default eu1), whose kubeconfig is the file $KUBECONFIG names. The
Deployment is schedulable on the local cluster (no PriorityClass, modest requests), and
the provider awaits its rollout. Config (namespace `cameleer`): replicas, greeting, image,
and `holdSeconds`/`holdMarker` for a resource whose creation blocks (to kill an update in
the middle of it).
"""

import os
import pathlib
import time

import pulumi
from pulumi.dynamic import CreateResult, Resource, ResourceProvider

from components.cluster import Cluster
from components.kube import declare, manifest
from stacks.clusters import DEFAULT_LOCAL_CLUSTER, kubeconfig_content

PINNED = "ghcr.io/cameleer/server@sha256:" + "4f5e1c3b2a9d8e7f" * 4

config = pulumi.Config("cameleer")
slug = pulumi.get_stack().split("-", 1)[1]
namespace = f"auto-{slug}"
cluster_name = config.get("cluster") or DEFAULT_LOCAL_CLUSTER
# Only $KUBECONFIG counts: the file the test's environment passes.
cluster = Cluster(cluster_name, kubeconfig_content(
    cluster_name, {"KUBECONFIG": os.environ.get("KUBECONFIG", ""), "CAMELEER_CLUSTER": cluster_name}))
labels = {"app.kubernetes.io/name": "auto-server", "app.kubernetes.io/part-of": "cameleer-tests"}

ns = declare("namespace", manifest("v1", "Namespace", namespace,
                                   labels={"app.kubernetes.io/part-of": "cameleer-tests"}),
             cluster.provider)
settings = declare("settings", manifest("v1", "ConfigMap", "settings", namespace=namespace,
                                        data={"greeting": config.get("greeting") or "hello"}),
                   cluster.provider, pulumi.ResourceOptions(depends_on=[ns]))
server = declare("server", manifest(
    "apps/v1", "Deployment", "server", namespace=namespace, labels=labels,
    spec={
        "replicas": config.get_int("replicas") or 1,
        "selector": {"matchLabels": labels},
        "template": {
            "metadata": {"labels": labels},
            "spec": {
                "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
                "containers": [{
                    "name": "server",
                    "image": config.get("image") or PINNED,
                    "ports": [{"containerPort": 8080}],
                    "resources": {"limits": {"cpu": "100m", "memory": "64Mi"},
                                  "requests": {"cpu": "10m", "memory": "16Mi"}},
                    "securityContext": {"allowPrivilegeEscalation": False,
                                        "capabilities": {"drop": ["ALL"]}},
                    "livenessProbe": {"httpGet": {"path": "/health", "port": 8080}},
                    "readinessProbe": {"httpGet": {"path": "/ready", "port": 8080}},
                }],
            },
        },
    },
), cluster.provider, pulumi.ResourceOptions(
    depends_on=[settings],
    # A rollout that cannot finish fails the update in this long, not in ten minutes.
    custom_timeouts=pulumi.CustomTimeouts(create="120s", update="120s"),
))


class Hold(ResourceProvider):
    """Creation writes a marker file, then blocks: the moment to kill an update."""

    def create(self, props):
        pathlib.Path(props["marker"]).write_text("creating\n")
        time.sleep(float(props["seconds"]))
        return CreateResult("hold", {})


class HoldResource(Resource):
    def __init__(self, name, props, opts=None):
        super().__init__(Hold(), name, props, opts)


hold_seconds = config.get_float("holdSeconds")
if hold_seconds:
    HoldResource("hold", {"seconds": hold_seconds, "marker": config.require("holdMarker")},
                 pulumi.ResourceOptions(depends_on=[server]))

pulumi.export("namespace", namespace)
