"""Objects that break the cameleer-guardrails pack's mandatory rules, one rule each (see
manifests.py), declared as typed pulumi-kubernetes resources on the provider of the local
cluster (the kubeconfig is the file $KUBECONFIG names). Only ever previewed: the pack must
block it."""

import os

from components.cluster import Cluster
from components.kube import declare
from manifests import CASES, CONTROLS
from stacks.clusters import DEFAULT_LOCAL_CLUSTER, kubeconfig_content

cluster = Cluster(DEFAULT_LOCAL_CLUSTER, kubeconfig_content(
    DEFAULT_LOCAL_CLUSTER, {"KUBECONFIG": os.environ.get("KUBECONFIG", "")}))
for name, body in [*CASES.values(), *CONTROLS.items()]:
    declare(name, body, cluster.provider)
