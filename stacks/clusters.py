"""Clusters as the stack programs reach them: a cluster's name in, its kubeconfig content out.

The stacks name their cluster (`cameleer:cluster`, or a shared-<cluster> stack's own name);
the kubeconfig is looked up in the environment of the engine process at run time and
handed to the cluster's provider as a secret, so stack config never names a file on the
machine that ran it:

    CAMELEER_KUBECONFIG_<NAME>   a kubeconfig file for the cluster <name> (upper case, - as _)
    KUBECONFIG                   the local cluster's kubeconfig, for the cluster named by
                                 CAMELEER_CLUSTER (default: eu1)

The kubeconfig must be self-contained (certificates as *-data, not as paths).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

DEFAULT_LOCAL_CLUSTER = "eu1"


class ClusterLookupError(LookupError):
    """No usable kubeconfig for a named cluster; the message says which variable to set."""


def kubeconfig_variable(cluster: str) -> str:
    return "CAMELEER_KUBECONFIG_" + cluster.upper().replace("-", "_")


def kubeconfig_content(cluster: str, environ: Mapping[str, str] | None = None) -> str:
    env = os.environ if environ is None else environ
    variable = kubeconfig_variable(cluster)
    path = env.get(variable)
    if not path and cluster == env.get("CAMELEER_CLUSTER", DEFAULT_LOCAL_CLUSTER):
        variable, path = "KUBECONFIG", env.get("KUBECONFIG")
    if not path:
        raise ClusterLookupError(
            f"no kubeconfig for cluster {cluster!r}: set {kubeconfig_variable(cluster)} to its kubeconfig file"
            f" (or KUBECONFIG, when CAMELEER_CLUSTER names it; `source .cameleer/services.env` for the local one)"
        )
    try:
        content = Path(path).expanduser().read_text()
    except OSError as error:
        raise ClusterLookupError(f"{variable}: cannot read the kubeconfig of cluster {cluster!r}: "
                                 f"{error.strerror}") from None
    if not content.strip():
        raise ClusterLookupError(f"{variable}: the kubeconfig of cluster {cluster!r} is empty")
    return content
