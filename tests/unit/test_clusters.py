"""stacks/clusters.py: which variable gives a cluster's kubeconfig, and what its errors say.

The secrets server itself is exercised in tests/integration/test_local_clusters.py; here a
reference is either refused before any request or sent to a closed port."""

from __future__ import annotations

import pytest

from stacks.clusters import (
    ClusterLookupError, ClusterSecretsUnavailable, kubeconfig_content, kubeconfig_reference_variable,
    kubeconfig_variable,
)

TOKEN = "s.unit-test-token-never-shown"
CLOSED_PORT = "http://127.0.0.1:9"


@pytest.fixture
def files(tmp_path):
    def write(name: str) -> str:
        path = tmp_path / name
        path.write_text(f"apiVersion: v1\nkind: Config\n# {name}\n")
        return str(path)

    return write


def test_variable_names_follow_the_cluster_name():
    assert kubeconfig_variable("dc-acme") == "CAMELEER_KUBECONFIG_DC_ACME"
    assert kubeconfig_reference_variable("dc-acme") == "CAMELEER_KUBECONFIG_REF_DC_ACME"


def test_the_file_variable_wins_over_the_reference_and_kubeconfig(files):
    env = {"CAMELEER_KUBECONFIG_EU1": files("own"), "CAMELEER_KUBECONFIG_REF_EU1": "platform/clusters/eu1",
           "KUBECONFIG": files("local")}
    assert kubeconfig_content("eu1", env).endswith("# own\n")


def test_the_reference_comes_before_kubeconfig(files):
    """Without VAULT_ADDR the reference cannot be read; that it is the one tried shows the order."""
    env = {"CAMELEER_KUBECONFIG_REF_EU1": "platform/clusters/eu1", "KUBECONFIG": files("local")}
    with pytest.raises(ClusterLookupError, match="CAMELEER_KUBECONFIG_REF_EU1: .* needs VAULT_ADDR and VAULT_TOKEN"):
        kubeconfig_content("eu1", env)


def test_kubeconfig_serves_only_the_default_cluster(files):
    env = {"KUBECONFIG": files("local")}
    assert kubeconfig_content("eu1", env).endswith("# local\n")
    assert kubeconfig_content("eu2", {**env, "CAMELEER_CLUSTER": "eu2"}).endswith("# local\n")
    with pytest.raises(ClusterLookupError, match="CAMELEER_KUBECONFIG_DC1 .* or CAMELEER_KUBECONFIG_REF_DC1"):
        kubeconfig_content("dc1", env)


def test_a_malformed_reference_names_the_variable():
    env = {"CAMELEER_KUBECONFIG_REF_DC1": "no-path", "VAULT_ADDR": CLOSED_PORT, "VAULT_TOKEN": TOKEN}
    with pytest.raises(ClusterLookupError, match="CAMELEER_KUBECONFIG_REF_DC1: .*<mount>/<path>"):
        kubeconfig_content("dc1", env)


def test_an_unreachable_secrets_server_is_unavailable_and_never_shows_the_token():
    env = {"CAMELEER_KUBECONFIG_REF_DC1": "platform/clusters/dc1", "BAO_ADDR": CLOSED_PORT, "BAO_TOKEN": TOKEN}
    with pytest.raises(ClusterSecretsUnavailable) as raised:
        kubeconfig_content("dc1", env)
    assert "CAMELEER_KUBECONFIG_REF_DC1" in str(raised.value) and "unreachable" in str(raised.value)
    assert TOKEN not in str(raised.value)


def test_an_empty_kubeconfig_file_is_refused(tmp_path):
    empty = tmp_path / "empty"
    empty.write_text("\n")
    with pytest.raises(ClusterLookupError, match="CAMELEER_KUBECONFIG_EU2: the kubeconfig of cluster 'eu2' is empty"):
        kubeconfig_content("eu2", {"CAMELEER_KUBECONFIG_EU2": str(empty)})
