"""The local clusters of scripts/services.sh (CAMELEER_LOCAL_CLUSTERS, default eu1 eu2 dc1):
each its own API server, certificates, nodes and OpenBao Kubernetes auth mount; and clusters
reached through a kubeconfig kept in OpenBao (CAMELEER_KUBECONFIG_REF_<NAME>)."""

from __future__ import annotations

import itertools
import uuid
from pathlib import Path

import hvac
import hvac.exceptions
import pytest
import yaml

from stacks.clusters import (
    REGISTRY_VARIABLE,
    ClusterLookupError,
    kubeconfig_content,
    kubeconfig_reference_variable,
    kubeconfig_variable,
)
from tests.conftest import require_env
from tests.integration.conftest import kube_missing

NODES = Path(__file__).resolve().parents[2] / "tools" / "kwok" / "nodes.yaml"
KV_MOUNT = "platform"


def api(kubeconfig: dict | str):
    from kubernetes import client, config

    if isinstance(kubeconfig, str):
        kubeconfig = yaml.safe_load(Path(kubeconfig).read_text())
    return client.CoreV1Api(config.new_client_from_config_dict(kubeconfig))


def loaded(path: str) -> dict:
    return yaml.safe_load(Path(path).read_text())


def auth_mount(cluster: str) -> str:
    """As scripts/services.sh names them: eu1 keeps the default mount."""
    return "kubernetes" if cluster == "eu1" else f"kubernetes-{cluster}"


@pytest.fixture(scope="module")
def clusters(cluster_kubeconfigs) -> dict[str, str]:
    if len(cluster_kubeconfigs) < 2:
        pytest.fail(f"CAMELEER_LOCAL_CLUSTERS names {list(cluster_kubeconfigs)}: these tests need two clusters at least")
    return cluster_kubeconfigs


@pytest.fixture(scope="module")
def vault() -> hvac.Client:
    return hvac.Client(url=require_env("VAULT_ADDR"), token=require_env("VAULT_TOKEN"))


def test_each_cluster_answers_on_its_own_port_with_its_own_kubeconfig(clusters):
    servers = {name: loaded(path)["clusters"][0]["cluster"]["server"] for name, path in clusters.items()}
    assert len(set(servers.values())) == len(clusters), servers
    for path in clusters.values():
        names = {ns.metadata.name for ns in api(path).list_namespace().items}
        assert {"default", "kube-system"} <= names


def test_each_cluster_has_its_kwok_nodes_ready(clusters):
    wanted = sorted(doc["metadata"]["name"] for doc in yaml.safe_load_all(NODES.read_text()) if doc)
    for name, path in clusters.items():
        nodes = api(path).list_node(label_selector="type=kwok").items
        ready = sorted(node.metadata.name for node in nodes
                       if any(c.type == "Ready" and c.status == "True" for c in node.status.conditions)
                       and not any(t.key == "node.kubernetes.io/not-ready" for t in node.spec.taints or []))
        assert ready == wanted, name


def test_a_namespace_made_in_one_cluster_is_absent_from_the_others(clusters):
    from kubernetes import client

    home, *others = list(clusters)
    namespace = f"it-clusters-{uuid.uuid4().hex[:8]}"
    core = api(clusters[home])
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace)))
    try:
        assert not kube_missing(core.read_namespace, namespace)
        for other in others:
            assert kube_missing(api(clusters[other]).read_namespace, namespace), other
    finally:
        core.delete_namespace(namespace)


def test_the_clusters_have_their_own_certificate_authorities(clusters):
    authorities = {name: loaded(path)["clusters"][0]["cluster"]["certificate-authority-data"]
                   for name, path in clusters.items()}
    assert len(set(authorities.values())) == len(clusters)


def test_a_clusters_client_certificate_is_refused_by_another_api_server(clusters):
    """Every ordered pair: the credentials of one, sent to another's API server (trusting that
    server's CA, so TLS itself succeeds), answer 401."""
    from kubernetes.client.exceptions import ApiException

    for own, other in itertools.permutations(clusters, 2):
        crossed = loaded(clusters[own])
        crossed["clusters"] = loaded(clusters[other])["clusters"]
        with pytest.raises(ApiException) as refused:
            api(crossed).list_namespace()
        assert refused.value.status == 401, (own, other)


def test_a_kubeconfig_pointed_at_another_cluster_does_not_trust_its_server(clusters):
    import urllib3

    own, other = list(clusters)[:2]
    crossed = loaded(clusters[own])
    crossed["clusters"][0]["cluster"]["server"] = loaded(clusters[other])["clusters"][0]["cluster"]["server"]
    with pytest.raises(urllib3.exceptions.MaxRetryError, match="CERTIFICATE_VERIFY_FAILED"):
        api(crossed).list_namespace()


def test_openbao_checks_each_clusters_service_accounts_on_its_own_auth_mount(clusters, vault):
    """A tenant server logs in with its cluster's service-account token: only that cluster's
    mount accepts it (each cluster signs its tokens with its own key)."""
    from kubernetes import client

    account, role = f"it-bao-{uuid.uuid4().hex[:8]}", f"it-clusters-{uuid.uuid4().hex[:8]}"
    tokens = {}
    try:
        for name, path in clusters.items():
            core = api(path)
            core.create_namespaced_service_account("default", client.V1ServiceAccount(
                metadata=client.V1ObjectMeta(name=account)))
            tokens[name] = core.create_namespaced_service_account_token(account, "default", client.AuthenticationV1TokenRequest(
                spec=client.V1TokenRequestSpec(audiences=["openbao"], expiration_seconds=600))).status.token
            vault.auth.kubernetes.create_role(role, bound_service_account_names=[account],
                                              bound_service_account_namespaces=["default"], audience="openbao",
                                              ttl="60s", mount_point=auth_mount(name))
        for (name, token), mount_of in itertools.product(tokens.items(), clusters):
            login = hvac.Client(url=vault.url)
            if mount_of == name:
                assert login.auth.kubernetes.login(role, token, mount_point=auth_mount(mount_of))["auth"]["client_token"]
            else:
                with pytest.raises((hvac.exceptions.Forbidden, hvac.exceptions.InvalidRequest)):
                    login.auth.kubernetes.login(role, token, mount_point=auth_mount(mount_of))
    finally:
        for name, path in clusters.items():
            api(path).delete_namespaced_service_account(account, "default")
            try:
                vault.auth.kubernetes.delete_role(role, mount_point=auth_mount(name))
            except hvac.exceptions.InvalidPath:
                pass


# --------------------------------------------------------------------------- kubeconfig references


@pytest.fixture
def stored_kubeconfig(cluster_kubeconfigs, vault):
    """(cluster name, its kubeconfig file, a KV reference holding the file's content), deleted after."""
    name, path = list(cluster_kubeconfigs.items())[-1]
    secret = f"it-clusters/{uuid.uuid4().hex[:10]}"
    vault.secrets.kv.v2.create_or_update_secret(secret, secret={"kubeconfig": Path(path).read_text()},
                                                mount_point=KV_MOUNT)
    yield name, path, f"{KV_MOUNT}/{secret}"
    vault.secrets.kv.v2.delete_metadata_and_all_versions(secret, mount_point=KV_MOUNT)


def secrets_env(vault) -> dict[str, str]:
    return {"VAULT_ADDR": vault.url, "VAULT_TOKEN": vault.token}


def test_a_registered_clusters_kubeconfig_is_read_from_openbao_and_reaches_it(stored_kubeconfig, vault):
    name, path, reference = stored_kubeconfig
    registered = f"it-{uuid.uuid4().hex[:6]}"
    content = kubeconfig_content(registered, {kubeconfig_reference_variable(registered): reference, **secrets_env(vault)})
    assert content == Path(path).read_text()
    server = yaml.safe_load(content)["clusters"][0]["cluster"]["server"]
    assert server == loaded(path)["clusters"][0]["cluster"]["server"]
    assert api(yaml.safe_load(content)).list_node(label_selector="type=kwok").items, name


def test_the_file_variable_wins_over_the_reference(stored_kubeconfig, vault, tmp_path):
    _, _, reference = stored_kubeconfig
    own = tmp_path / "kubeconfig"
    own.write_text("apiVersion: v1\nkind: Config\n# the file\n")
    env = {kubeconfig_variable("it-x"): str(own), kubeconfig_reference_variable("it-x"): reference,
           **secrets_env(vault)}
    assert kubeconfig_content("it-x", env) == own.read_text()


def test_the_reference_wins_over_kubeconfig_for_the_default_cluster(stored_kubeconfig, vault, kubeconfig):
    _, path, reference = stored_kubeconfig
    env = {kubeconfig_reference_variable("eu1"): reference, "KUBECONFIG": kubeconfig, **secrets_env(vault)}
    assert kubeconfig_content("eu1", env) == Path(path).read_text()


def test_the_registrys_secret_is_found_by_the_clusters_name_and_a_missing_one_falls_through(
        stored_kubeconfig, vault, kubeconfig):
    _, path, reference = stored_kubeconfig
    prefix, _, name = reference.rpartition("/")
    env = {REGISTRY_VARIABLE: prefix, "KUBECONFIG": kubeconfig, "CAMELEER_CLUSTER": name, **secrets_env(vault)}
    assert kubeconfig_content(name, env) == Path(path).read_text()
    # eu1 is not in that registry: its KUBECONFIG answers; an unknown cluster is an error naming the registry
    unregistered = {**env, "CAMELEER_CLUSTER": "eu1"}
    assert kubeconfig_content("eu1", unregistered) == Path(kubeconfig).read_text()
    with pytest.raises(ClusterLookupError, match="cameleer-clusters register"):
        kubeconfig_content("nowhere", unregistered)


def test_a_missing_secret_names_the_variable_and_never_the_token(vault):
    reference = f"{KV_MOUNT}/it-clusters/absent-{uuid.uuid4().hex[:8]}"
    with pytest.raises(ClusterLookupError) as raised:
        kubeconfig_content("it-y", {kubeconfig_reference_variable("it-y"): reference, **secrets_env(vault)})
    message = str(raised.value)
    assert "CAMELEER_KUBECONFIG_REF_IT_Y" in message and "does not exist" in message
    assert vault.token not in message


def test_a_secret_without_a_kubeconfig_field_is_refused_without_its_content(vault):
    secret = f"it-clusters/{uuid.uuid4().hex[:10]}"
    vault.secrets.kv.v2.create_or_update_secret(secret, secret={"config": "not-the-right-field-s3cret"},
                                                mount_point=KV_MOUNT)
    try:
        with pytest.raises(ClusterLookupError) as raised:
            kubeconfig_content("it-z", {kubeconfig_reference_variable("it-z"): f"{KV_MOUNT}/{secret}",
                                        **secrets_env(vault)})
        assert "has no 'kubeconfig'" in str(raised.value)
        assert "s3cret" not in str(raised.value) and vault.token not in str(raised.value)
    finally:
        vault.secrets.kv.v2.delete_metadata_and_all_versions(secret, mount_point=KV_MOUNT)
