"""Objects that break the cameleer-guardrails pack's mandatory rules, one rule each (see
manifests.py), declared through the project's Kubernetes provider. Only ever previewed: the
pack must block it."""

import pulumi

from components.providers.kubernetes import Cluster, KubeObject
from manifests import CASES, CONTROLS

cluster = Cluster.from_config(pulumi.Config("cameleer"))
for name, manifest in [*CASES.values(), *CONTROLS.items()]:
    KubeObject(name, cluster=cluster, manifest=manifest)
