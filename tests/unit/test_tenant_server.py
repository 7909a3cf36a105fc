import pytest

from components.catalog import get_tier
from components.images import ImageError
from components.tenant_server import TenantServer, TenantServerArgs
from tests.unit.component_fixtures import IMAGE, LICENSE, cluster
from tests.unit.pulumi_mocks import is_secret_value, run, unwrap_secret, use_mocks

SIZE = get_tier("mid").profile_for("prod").server


def args(**overrides):
    values = dict(cluster=cluster(), namespace="tenant-demo-prod", image=IMAGE, size=SIZE, license=LICENSE,
                  priority_class="cameleer-tenant-mid", labels={"cameleer.io/tenant": "demo"})
    return TenantServerArgs(**{**values, **overrides})


def build(**overrides):
    mocks = use_mocks()
    component = run(lambda: TenantServer("prod-server", args(**overrides)))
    return mocks, component


def container(mocks):
    (deployment,) = mocks.manifests("Deployment")
    (server,) = deployment["spec"]["template"]["spec"]["containers"]
    return server


def test_children_are_license_settings_deployment_service():
    mocks, component = build()
    types = sorted(child.type for child in mocks.children_of("prod-server"))
    assert types == ["kubernetes:apps/v1:Deployment", "kubernetes:core/v1:ConfigMap", "kubernetes:core/v1:Secret",
                     "kubernetes:core/v1:Service"]
    assert component.deployment_name == component.service_name == "cameleer-server"


def test_every_object_is_on_the_cluster_provider():
    mocks, _ = build()
    (provider,) = mocks.providers()
    assert len(mocks.kube_objects()) == 4
    assert all(mocks.provider_of(r) is provider for r in mocks.kube_objects())


def test_settings_reach_the_server_through_its_config_map():
    mocks, _ = build(settings={"CAMELEER_TIER": "mid", "CAMELEER_RETENTION_DAYS": "30"})
    settings = mocks.one("ConfigMap", "cameleer-server-settings")
    assert settings["metadata"]["namespace"] == "tenant-demo-prod"
    assert settings["data"] == {"CAMELEER_TIER": "mid", "CAMELEER_RETENTION_DAYS": "30"}
    assert container(mocks)["envFrom"] == [{"configMapRef": {"name": "cameleer-server-settings"}}]


def test_the_deployment_waits_for_its_secret_and_config_map():
    mocks, _ = build()
    (deployment,) = mocks.kube("Deployment")
    (license_secret,) = mocks.kube("Secret")
    (settings,) = mocks.kube("ConfigMap")
    assert {license_secret.urn, settings.urn} <= set(deployment.dependencies)


@pytest.mark.parametrize("timeout", ["5m", "90s"])
def test_rollout_timeout_bounds_the_deployment_create_and_update(timeout):
    overrides = {} if timeout == "5m" else {"rollout_timeout": timeout}
    mocks, _ = build(**overrides)
    (deployment,) = mocks.kube("Deployment")
    assert deployment.custom_timeouts == {"create": timeout, "update": timeout}
    assert all(r.custom_timeouts == {} for r in mocks.kube_objects() if r is not deployment)


def test_only_the_service_skips_the_providers_await():
    mocks, _ = build()
    service = mocks.one("Service")
    annotations = service["metadata"]["annotations"]
    assert annotations["pulumi.com/skipAwait"] == "true"
    # The managed annotations are added, not replaced by the component's own.
    assert annotations["pulumi.com/patchForce"] == "true"
    assert annotations["pulumi.com/patchFieldManager"] == "cameleer"
    assert annotations["cameleer.io/owner"] == "cameleer/tenant-demo"
    others = [m for kind in ("Deployment", "Secret", "ConfigMap") for m in mocks.manifests(kind)]
    assert others and all("pulumi.com/skipAwait" not in m["metadata"]["annotations"] for m in others)


def test_image_is_digest_pinned():
    mocks, _ = build()
    assert container(mocks)["image"] == IMAGE


@pytest.mark.parametrize("image", ["ghcr.io/cameleer/server:1.2.3", "ghcr.io/cameleer/server@sha256:abc",
                                   "ghcr.io/cameleer/server"])
def test_unpinned_image_is_refused_with_the_fix(image):
    with pytest.raises(ImageError, match="not pinned by digest; use the form registry/name@sha256:<64 hex"):
        args(image=image)


def test_restricted_container_security_context():
    mocks, _ = build()
    context = container(mocks)["securityContext"]
    assert context["runAsNonRoot"] is True
    assert context["runAsUser"] > 0
    assert context["readOnlyRootFilesystem"] is True
    assert context["allowPrivilegeEscalation"] is False
    assert context["privileged"] is False
    assert context["capabilities"] == {"drop": ["ALL"]}
    assert context["seccompProfile"] == {"type": "RuntimeDefault"}


def test_pod_level_security_and_no_host_namespaces():
    mocks, _ = build()
    pod = mocks.one("Deployment")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert not any(pod.get(key) for key in ("hostNetwork", "hostPID", "hostIPC"))
    assert not any("hostPath" in volume for volume in pod["volumes"])
    assert pod["serviceAccountName"] == "cameleer-server"
    assert pod["priorityClassName"] == "cameleer-tenant-mid"


def test_requests_and_limits_from_the_catalog():
    mocks, _ = build()
    assert container(mocks)["resources"] == SIZE.resources()
    assert container(mocks)["resources"]["limits"] == {"cpu": "2", "memory": "2Gi"}


def test_probes_present():
    mocks, _ = build()
    server = container(mocks)
    assert server["livenessProbe"]["httpGet"]["path"] == "/health/live"
    assert server["readinessProbe"]["httpGet"]["path"] == "/health/ready"


def test_license_mounted_read_only_from_its_secret():
    mocks, _ = build()
    pod = mocks.one("Deployment")["spec"]["template"]["spec"]
    volume = next(v for v in pod["volumes"] if v["name"] == "license")
    assert volume["secret"]["secretName"] == "cameleer-license"
    mount = next(m for m in container(mocks)["volumeMounts"] if m["name"] == "license")
    assert mount["readOnly"] is True
    assert mocks.one("Secret", "cameleer-license")["stringData"] == {"license.jwt": LICENSE}


def test_license_secret_is_secret_in_state():
    mocks, _ = build(license=__import__("pulumi").Output.secret(LICENSE))
    (secret,) = mocks.kube("Secret")
    assert is_secret_value(secret.inputs["stringData"])
    assert unwrap_secret(secret.inputs["stringData"]) == {"license.jwt": LICENSE}
    assert {"data", "stringData"} <= set(secret.additional_secret_outputs)
    assert LICENSE not in repr({key: value for key, value in secret.inputs.items() if key != "stringData"})


def test_a_plain_license_is_still_kept_secret_by_the_typed_secret():
    mocks, _ = build()
    (secret,) = mocks.kube("Secret")
    assert is_secret_value(secret.inputs["stringData"])


def test_database_credentials_come_from_the_secret_not_the_manifest():
    mocks, _ = build()
    env = {item["name"]: item for item in container(mocks)["env"]}
    assert env["CAMELEER_DB_PASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": "cameleer-database",
                                                                         "key": "password"}
    assert "value" not in env["CAMELEER_DB_PASSWORD"]


@pytest.mark.parametrize("suspended, replicas, label", [(False, 1, "false"), (True, 0, "true")])
def test_suspended_tenant_runs_zero_replicas(suspended, replicas, label):
    mocks, component = build(suspended=suspended)
    deployment = mocks.one("Deployment")
    assert deployment["spec"]["replicas"] == replicas == component.replicas
    assert deployment["metadata"]["labels"]["cameleer.io/suspended"] == label


def test_service_targets_the_server_pods():
    mocks, _ = build()
    service = mocks.one("Service")
    deployment = mocks.one("Deployment")
    assert service["spec"]["type"] == "ClusterIP"
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    template_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= template_labels.items()


def test_the_server_gets_a_short_lived_token_for_openbao_only():
    mocks, _ = build()
    pod = mocks.one("Deployment")["spec"]["template"]["spec"]
    (source,) = next(v for v in pod["volumes"] if v["name"] == "openbao-token")["projected"]["sources"]
    assert source["serviceAccountToken"] == {"audience": "openbao", "expirationSeconds": 3600, "path": "token"}
    mount = next(m for m in container(mocks)["volumeMounts"] if m["name"] == "openbao-token")
    assert mount == {"name": "openbao-token", "mountPath": "/var/run/secrets/openbao", "readOnly": True}
