"""Namespace + ConfigMap + a Secret whose value is a generated password."""

import pulumi

from components.providers.kubernetes import Cluster, KubeObject
from components.providers.random import RandomPassword

config = pulumi.Config()
namespace_name = config.require("namespace")
cluster = Cluster.from_config(pulumi.Config("cameleer"))

namespace = KubeObject(
    "namespace", cluster=cluster,
    manifest={"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace_name}},
)
opts = pulumi.ResourceOptions(depends_on=[namespace])
settings = KubeObject(
    "settings", cluster=cluster, opts=opts,
    manifest={
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "settings", "namespace": namespace_name, "labels": {"app": "engine-proof"}},
        "data": {"greeting": "hello", "mode": config.get("mode") or "strict"},
    },
)
password = RandomPassword("password", length=24)
credentials = KubeObject(
    "credentials", cluster=cluster, opts=opts,
    manifest={
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "credentials", "namespace": namespace_name},
        "type": "Opaque",
        "stringData": {"password": password.result},
    },
)
pulumi.export("namespace", namespace_name)
pulumi.export("password", password.result)
