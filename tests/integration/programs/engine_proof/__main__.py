"""Namespace + ConfigMap + a Secret whose value is a generated password, as typed
pulumi-kubernetes resources on the provider of the local cluster (the kubeconfig is the
file $KUBECONFIG names)."""

import os

import pulumi

from components.cluster import Cluster
from components.kube import declare, manifest
from components.providers.random import RandomPassword
from stacks.clusters import DEFAULT_LOCAL_CLUSTER, kubeconfig_content

config = pulumi.Config()
namespace_name = config.require("namespace")
cluster = Cluster(DEFAULT_LOCAL_CLUSTER, kubeconfig_content(
    DEFAULT_LOCAL_CLUSTER, {"KUBECONFIG": os.environ.get("KUBECONFIG", "")}))

namespace = declare("namespace", manifest("v1", "Namespace", namespace_name), cluster.provider)
opts = pulumi.ResourceOptions(depends_on=[namespace])
settings = declare(
    "settings",
    manifest("v1", "ConfigMap", "settings", namespace=namespace_name, labels={"app": "engine-proof"},
             data={"greeting": "hello", "mode": config.get("mode") or "strict"}),
    cluster.provider, opts,
)
password = RandomPassword("password", length=24)
credentials = declare(
    "credentials",
    manifest("v1", "Secret", "credentials", namespace=namespace_name, type="Opaque",
             stringData={"password": password.result}),
    cluster.provider, opts,
)
pulumi.export("namespace", namespace_name)
pulumi.export("password", password.result)
