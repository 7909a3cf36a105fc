"""A tenant-shaped stack, small enough for engine tests of the automation layer.

Namespace `auto-<slug>`, a ConfigMap and a Deployment that satisfies the project's
CrossGuard pack, all through the project's own Kubernetes dynamic provider. Config
(namespace `cameleer`): replicas, greeting, image, and `holdSeconds`/`holdMarker` for a
resource whose creation blocks (to kill an update in the middle of it).
"""

import pathlib
import time

import pulumi
from pulumi.dynamic import CreateResult, Resource, ResourceProvider

from components.providers.kubernetes import Cluster, KubeObject

PINNED = "ghcr.io/cameleer/server@sha256:" + "4f5e1c3b2a9d8e7f" * 4

config = pulumi.Config("cameleer")
slug = pulumi.get_stack().split("-", 1)[1]
namespace = f"auto-{slug}"
cluster = Cluster.from_config(config)
labels = {"app.kubernetes.io/name": "auto-server", "app.kubernetes.io/part-of": "cameleer-tests"}

ns = KubeObject("namespace", cluster=cluster, manifest={
    "apiVersion": "v1", "kind": "Namespace",
    "metadata": {"name": namespace, "labels": {"app.kubernetes.io/part-of": "cameleer-tests"}},
})
settings = KubeObject("settings", cluster=cluster, manifest={
    "apiVersion": "v1", "kind": "ConfigMap",
    "metadata": {"name": "settings", "namespace": namespace},
    "data": {"greeting": config.get("greeting") or "hello"},
}, opts=pulumi.ResourceOptions(depends_on=[ns]))
server = KubeObject("server", cluster=cluster, manifest={
    "apiVersion": "apps/v1", "kind": "Deployment",
    "metadata": {"name": "server", "namespace": namespace, "labels": labels},
    "spec": {
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
}, opts=pulumi.ResourceOptions(depends_on=[settings]))


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
