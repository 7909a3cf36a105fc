"""Clusters as the stack programs reach them: a cluster's name in, its kubeconfig content out.

The stacks name their cluster (`cameleer:cluster`, or a shared-<cluster> stack's own name);
the kubeconfig is looked up in the environment of the engine process at run time and
handed to the cluster's provider as a secret, so stack config never names a file on the
machine that ran it. The first that is set wins:

    CAMELEER_KUBECONFIG_<NAME>       a kubeconfig file for the cluster <name> (upper case, - as _)
    CAMELEER_KUBECONFIG_REF_<NAME>   <mount>/<path> of a KV v2 secret in the secrets server
                                     (VAULT_ADDR/VAULT_TOKEN, or BAO_*) whose field `kubeconfig`
                                     is the content: how clusters registered in the control
                                     plane's registry are reached
    CAMELEER_CLUSTER_KUBECONFIGS     <mount>/<prefix> under which the registry keeps every
                                     registered cluster's kubeconfig (`platform/clusters`):
                                     the secret <mount>/<prefix>/<name>, when it exists
    KUBECONFIG                       the local cluster's kubeconfig, for the cluster named by
                                     CAMELEER_CLUSTER (default: eu1)

The kubeconfig must be self-contained (certificates as *-data, not as paths). Errors name the
variable, never the kubeconfig or the token.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from stacks.kv import KVError, KVMissing, KVUnavailable, read_field

DEFAULT_LOCAL_CLUSTER = "eu1"
KUBECONFIG_FIELD = "kubeconfig"
REGISTRY_VARIABLE = "CAMELEER_CLUSTER_KUBECONFIGS"


class ClusterLookupError(LookupError):
    """No usable kubeconfig for a named cluster; the message says which variable to set."""


class ClusterSecretsUnavailable(ClusterLookupError):
    """The secrets server holding the cluster's kubeconfig is sealed or unreachable: try again later."""


class _NotRegistered(Exception):
    """The registry holds no kubeconfig of the cluster: the next rule applies."""


def _suffix(cluster: str) -> str:
    return cluster.upper().replace("-", "_")


def kubeconfig_variable(cluster: str) -> str:
    return "CAMELEER_KUBECONFIG_" + _suffix(cluster)


def kubeconfig_reference_variable(cluster: str) -> str:
    return "CAMELEER_KUBECONFIG_REF_" + _suffix(cluster)


def kubeconfig_content(cluster: str, environ: Mapping[str, str] | None = None) -> str:
    env = os.environ if environ is None else environ
    if path := env.get(kubeconfig_variable(cluster)):
        return _from_file(cluster, kubeconfig_variable(cluster), path)
    if reference := env.get(kubeconfig_reference_variable(cluster)):
        return _from_secrets_server(cluster, kubeconfig_reference_variable(cluster), reference, env)
    if registry := env.get(REGISTRY_VARIABLE):
        try:
            return _from_secrets_server(cluster, REGISTRY_VARIABLE, f"{registry.rstrip('/')}/{cluster}", env)
        except _NotRegistered:
            pass
    if cluster == env.get("CAMELEER_CLUSTER", DEFAULT_LOCAL_CLUSTER) and (path := env.get("KUBECONFIG")):
        return _from_file(cluster, "KUBECONFIG", path)
    raise ClusterLookupError(
        f"no kubeconfig for cluster {cluster!r}: set {kubeconfig_variable(cluster)} to its kubeconfig file"
        f" or {kubeconfig_reference_variable(cluster)} to its secret (<mount>/<path>) in the secrets server,"
        f" or register it (`cameleer-clusters register`) with {REGISTRY_VARIABLE} set"
        f" (or KUBECONFIG, when CAMELEER_CLUSTER names it; `source .cameleer/services.env` for the local ones)"
    )


def _from_file(cluster: str, variable: str, path: str) -> str:
    try:
        content = Path(path).expanduser().read_text()
    except OSError as error:
        raise ClusterLookupError(f"{variable}: cannot read the kubeconfig of cluster {cluster!r}: "
                                 f"{error.strerror}") from None
    return _non_empty(cluster, variable, content)


def _from_secrets_server(cluster: str, variable: str, reference: str, env: Mapping[str, str]) -> str:
    address, token = env.get("BAO_ADDR") or env.get("VAULT_ADDR"), env.get("BAO_TOKEN") or env.get("VAULT_TOKEN")
    if not address or not token:
        raise ClusterLookupError(f"{variable}: reading the kubeconfig of cluster {cluster!r} needs VAULT_ADDR "
                                 f"and VAULT_TOKEN")
    try:
        content = read_field(address, token, reference, KUBECONFIG_FIELD)
    except KVMissing as error:
        if variable == REGISTRY_VARIABLE:
            raise _NotRegistered from None
        raise ClusterLookupError(f"{variable}: cannot read the kubeconfig of cluster {cluster!r}: {error}") from None
    except KVUnavailable as error:
        raise ClusterSecretsUnavailable(f"{variable}: cannot read the kubeconfig of cluster {cluster!r}: "
                                        f"{error}") from None
    except KVError as error:
        raise ClusterLookupError(f"{variable}: cannot read the kubeconfig of cluster {cluster!r}: {error}") from None
    return _non_empty(cluster, variable, content)


def _non_empty(cluster: str, variable: str, content: str) -> str:
    if not content.strip():
        raise ClusterLookupError(f"{variable}: the kubeconfig of cluster {cluster!r} is empty")
    return content
