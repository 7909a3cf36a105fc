"""A registered cluster's kubeconfig: checked before it is stored, and optionally reached once.

No message here quotes the kubeconfig: a YAML error names only its line and column, an
unreachable API server only its address.
"""

from __future__ import annotations

from typing import Any

import yaml

from api.problems import Problem

VERIFY_TIMEOUT_SECONDS = 5


def invalid(reason: str) -> Problem:
    return Problem(422, "invalid-kubeconfig", f"The kubeconfig is not usable: {reason}.")


def _named(entries: Any, name: str, what: str) -> dict[str, Any]:
    for entry in entries if isinstance(entries, list) else []:
        if isinstance(entry, dict) and entry.get("name") == name and isinstance(entry.get(what), dict):
            return entry[what]
    raise invalid(f"it has no {what} named {name!r}")


def parse(content: str) -> dict[str, Any]:
    """The kubeconfig as a mapping, once it names a current context with a cluster (and its
    server) and a user."""
    try:
        document = yaml.safe_load(content)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        raise invalid(f"it is not YAML{where}") from None
    if not isinstance(document, dict):
        raise invalid("it is not a YAML mapping")
    current = document.get("current-context")
    if not isinstance(current, str) or not current:
        raise invalid("it has no current-context")
    context = _named(document.get("contexts"), current, "context")
    if not isinstance(context.get("cluster"), str) or not isinstance(context.get("user"), str):
        raise invalid(f"the context {current!r} names no cluster or no user")
    if not isinstance(_named(document.get("clusters"), context["cluster"], "cluster").get("server"), str):
        raise invalid(f"the cluster {context['cluster']!r} has no server")
    _named(document.get("users"), context["user"], "user")
    return document


def server_of(document: dict[str, Any]) -> str:
    context = _named(document["contexts"], document["current-context"], "context")
    return _named(document["clusters"], context["cluster"], "cluster")["server"]


def verify(document: dict[str, Any]) -> None:
    """Ask the API server for ``/version`` once, with these credentials (no retry)."""
    from kubernetes import client
    from kubernetes import config as kube_config

    server = server_of(document)
    configuration = client.Configuration()
    try:
        kube_config.load_kube_config_from_dict(document, client_configuration=configuration)
    except kube_config.ConfigException:
        raise invalid("the Kubernetes client cannot load it") from None
    configuration.retries = False
    with client.ApiClient(configuration) as api:
        try:
            client.VersionApi(api).get_code(_request_timeout=VERIFY_TIMEOUT_SECONDS)
        except client.ApiException as exc:
            raise unreachable(server, f"it answered HTTP {exc.status}") from None
        except Exception as exc:  # connection refused, TLS, timeout: urllib3 raises many kinds
            raise unreachable(server, f"no answer ({type(exc).__name__})") from None


def unreachable(server: str, why: str) -> Problem:
    return Problem(422, "cluster-unreachable", f"The cluster's API server at {server} cannot be reached "
                   f"with this kubeconfig: {why}.", server=server)
