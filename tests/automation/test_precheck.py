"""The drift pre-check's comparison rule, on checkpoint and live documents of the shapes the
engine and the API server write (the engine tests run it against real ones)."""

from __future__ import annotations

import copy
import json

import pytest

from automation.checkpoints import CheckpointReader, parse
from automation.errors import OperationError
from automation.livestate import ObjectKey
from automation.precheck import (CHANGED, DELETED, UNVERIFIED, DeclaredObject, declaration_of, object_finding,
                                 run_precheck)

SECRET = {"4dabf18193072939515e22adb298388d": "1b47061264138c4ac30d75fd1eb44270", "ciphertext": "v1:abc"}
MANAGER = "cameleer"


def deployment_inputs() -> dict:
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "server", "namespace": "tenant-a-prod",
                         "labels": {"app.kubernetes.io/managed-by": "cameleer-control-plane"}},
            "spec": {"replicas": 1, "template": {"spec": {"containers": [
                {"name": "server", "image": "img@sha256:1", "env": [{"name": "A", "value": "1"}]}]}}}}


def live_of(inputs: dict, *, resource_version: str = "10", managed: list | None = None) -> dict:
    """What the API server returns for `inputs`: defaults, status and server metadata added."""
    live = copy.deepcopy(inputs)
    live["metadata"].update(uid="u-1", resourceVersion=resource_version, generation=1,
                            creationTimestamp="2026-12-03T00:00:00Z",
                            managedFields=managed or [{"manager": MANAGER, "operation": "Apply", "fieldsV1": {}}])
    live["metadata"]["labels"]["kubernetes.io/metadata.name"] = "x"
    if live["kind"] == "Deployment":
        container = live["spec"]["template"]["spec"]["containers"][0]
        container.update(imagePullPolicy="IfNotPresent", terminationMessagePath="/dev/termination-log")
        live["spec"].update(strategy={"type": "RollingUpdate"}, progressDeadlineSeconds=600)
        live["status"] = {"replicas": 1, "readyReplicas": 1}
    return live


def declared(inputs: dict, recorded: dict | None = None) -> DeclaredObject:
    metadata = inputs["metadata"]
    key = ObjectKey(inputs["apiVersion"], inputs["kind"], metadata.get("namespace", ""), metadata["name"])
    return DeclaredObject("res", key, "eu1", inputs, recorded if recorded is not None else live_of(inputs))


def test_fields_nobody_declared_status_and_server_metadata_are_no_drift():
    inputs = deployment_inputs()
    live = live_of(inputs, resource_version="99")
    live["metadata"]["labels"]["team.example.com/owner"] = "payments"
    live["metadata"]["annotations"] = {"example.com/on-call": "alice"}
    live["status"]["readyReplicas"] = 0
    assert object_finding(declared(inputs), live) is None


@pytest.mark.parametrize("edit, path", [
    (lambda o: o["spec"].update(replicas=3), "spec.replicas"),
    (lambda o: o["metadata"]["labels"].update({"app.kubernetes.io/managed-by": "x"}),
     'metadata.labels["app.kubernetes.io/managed-by"]'),
    (lambda o: o["spec"]["template"]["spec"]["containers"][0]["env"].clear(),
     "spec.template.spec.containers[0].env"),
    (lambda o: o["spec"]["template"]["spec"]["containers"][0].update(image="other"),
     "spec.template.spec.containers[0].image"),
    (lambda o: o["spec"].pop("replicas"), "spec.replicas"),
])
def test_a_changed_or_removed_declared_field_is_drift_at_its_path(edit, path):
    inputs = deployment_inputs()
    live = live_of(inputs)
    edit(live)
    finding = object_finding(declared(inputs), live)
    assert finding is not None and finding.what == CHANGED and finding.paths == (path,)


def test_a_list_the_provider_would_cut_to_the_declared_length_is_no_drift():
    """pulumi-kubernetes prunes a live list to the declared length (pruneSlice)."""
    inputs = deployment_inputs()
    live = live_of(inputs)
    live["spec"]["template"]["spec"]["containers"][0]["env"].append({"name": "EXTRA", "value": "2"})
    assert object_finding(declared(inputs), live) is None


def test_numbers_compare_by_value_but_a_boolean_is_not_a_number():
    inputs = deployment_inputs()
    live = live_of(inputs)
    live["spec"]["replicas"] = 1.0
    assert object_finding(declared(inputs), live) is None
    live["spec"]["replicas"] = True
    assert object_finding(declared(inputs), live) is not None


def test_a_missing_or_terminating_object_is_deleted():
    inputs = deployment_inputs()
    assert object_finding(declared(inputs), None).what == DELETED
    live = live_of(inputs)
    live["metadata"]["deletionTimestamp"] = "2026-12-03T00:00:01Z"
    assert object_finding(declared(inputs), live).what == DELETED


def secret_inputs() -> dict:
    return {"apiVersion": "v1", "kind": "Secret", "type": "Opaque", "data": SECRET,
            "metadata": {"name": "cameleer-license", "namespace": "tenant-a-prod",
                         "labels": {"app.kubernetes.io/managed-by": "cameleer-control-plane"}}}


def ours(*keys: str) -> dict:
    return {"manager": MANAGER, "operation": "Apply", "fieldsV1": {"f:data": {f"f:{k}": {} for k in keys}}}


def secret_pair(live_managers: list, *, live_rv: str = "11") -> tuple[DeclaredObject, dict]:
    inputs = secret_inputs()
    recorded = live_of(inputs, resource_version="10", managed=[ours("license.jwt")])
    recorded["__fieldManager"] = MANAGER
    live = live_of(inputs, resource_version=live_rv, managed=live_managers)
    live["data"] = {"license.jwt": "ZXhhbXBsZQ=="}
    return declared(inputs, recorded), live


def test_a_secret_is_unchanged_while_its_resource_version_is_the_recorded_one():
    obj, live = secret_pair([], live_rv="10")
    assert object_finding(obj, live) is None


def test_a_secret_written_since_is_unchanged_only_while_no_other_manager_owns_its_data():
    obj, live = secret_pair([ours("license.jwt"),
                             {"manager": "payments", "operation": "Apply",
                              "fieldsV1": {"f:metadata": {"f:labels": {"f:team": {}}}}}])
    assert object_finding(obj, live) is None  # a label of another manager: data still ours alone

    obj, live = secret_pair([ours("license.jwt"),
                             {"manager": "kubectl-edit", "operation": "Update",
                              "fieldsV1": {"f:data": {"f:license.jwt": {}}}}])
    assert object_finding(obj, live).paths == ("data",)

    obj, live = secret_pair([ours()])  # someone took the field over (or cleared managedFields)
    assert object_finding(obj, live).paths == ("data",)

    obj, live = secret_pair([ours("license.jwt")])
    live["data"] = {}  # the key was removed
    assert object_finding(obj, live).paths == ("data",)


def checkpoint_document(resources: list[dict], *, pending: bool = False) -> bytes:
    latest = {"manifest": {}, "resources": resources}
    if pending:
        latest["pending_operations"] = [{"type": "updating"}]
    return json.dumps({"version": 3, "checkpoint": {"stack": "tenant-a", "latest": latest}}).encode()


def k8s_resource(inputs: dict, name: str = "prod-server-deployment") -> dict:
    return {"urn": f"urn:pulumi:tenant-a::cameleer::x$kubernetes:apps/v1:Deployment::{name}",
            "type": "kubernetes:apps/v1:Deployment", "custom": True, "inputs": inputs,
            "outputs": live_of(inputs),
            "provider": "urn:pulumi:tenant-a::cameleer::pulumi:providers:kubernetes::cluster-eu1::id-1"}


PROVIDER = {"urn": "urn:pulumi:tenant-a::cameleer::pulumi:providers:kubernetes::cluster-eu1", "custom": True,
            "type": "pulumi:providers:kubernetes", "inputs": {"clusterIdentifier": "eu1"}}


def test_declarations_name_the_cluster_and_send_unknown_types_and_pending_operations_to_the_engine():
    unknown = {"urn": "urn:pulumi:tenant-a::cameleer::aws:s3/bucket:Bucket::logs", "type": "aws:s3/bucket:Bucket",
               "custom": True, "inputs": {}, "outputs": {}}
    component = {"urn": "urn:pulumi:tenant-a::cameleer::cameleer:tenancy:TenantServer::prod-server",
                 "type": "cameleer:tenancy:TenantServer", "custom": False}
    declaration = declaration_of(parse("tenant-a", checkpoint_document(
        [PROVIDER, k8s_resource(deployment_inputs()), unknown, component], pending=True), "v1"))
    [obj] = declaration.objects
    assert obj.cluster == "eu1" and str(obj.key) == "Deployment tenant-a-prod/server"
    assert [(f.resource, f.what) for f in declaration.findings] == [("", UNVERIFIED), ("logs", UNVERIFIED)]


class FakeReader:
    """Stands in for the cluster only here, where the rule (not the API server) is under test."""

    def __init__(self, objects: list[dict]):
        self.objects, self.requests = objects, 0

    def list_kinds(self, kinds, *, unselected=()):
        self.requests += len(set(kinds))
        return {ObjectKey(o["apiVersion"], o["kind"], o["metadata"].get("namespace", ""), o["metadata"]["name"]): o
                for o in self.objects}

    def close(self):
        pass


def test_a_run_sorts_stacks_into_clean_and_flagged_and_an_unreachable_cluster_flags_its_stacks():
    inputs = deployment_inputs()
    checkpoints = {"tenant-a": parse("tenant-a", checkpoint_document([PROVIDER, k8s_resource(inputs)]), "v1")}
    run = run_precheck(checkpoints, connect=lambda name: FakeReader([live_of(inputs)]))
    assert run.flagged() == [] and run.verdicts["tenant-a"].compared == 1

    scaled = live_of(inputs)
    scaled["spec"]["replicas"] = 2
    assert run_precheck(checkpoints, connect=lambda name: FakeReader([scaled])).flagged() == ["tenant-a"]

    def unreachable(name):
        raise LookupError(f"no kubeconfig for cluster {name!r}")

    verdict = run_precheck(checkpoints, connect=unreachable).verdicts["tenant-a"]
    assert not verdict.clean and "no kubeconfig for cluster 'eu1'" in verdict.reason


def test_the_reader_reads_file_backend_checkpoints_and_refuses_other_versions(tmp_path):
    directory = tmp_path / ".pulumi" / "stacks" / "cameleer"
    directory.mkdir(parents=True)
    (directory / "tenant-a.json").write_bytes(checkpoint_document([PROVIDER]))
    (directory / "tenant-a.json.bak").write_bytes(b"old")
    reader = CheckpointReader(f"file://{tmp_path}", "cameleer")
    [(name, checkpoint)] = reader.read().items()
    assert name == "tenant-a" and checkpoint.resources[0]["type"] == "pulumi:providers:kubernetes"
    assert set(reader.versions()) == {"tenant-a"}
    (directory / "tenant-b.json").write_bytes(json.dumps({"version": 4}).encode())
    with pytest.raises(OperationError, match="checkpoint version 4"):
        reader.read(["tenant-b"])
    with pytest.raises(OperationError, match="s3:// backends"):
        CheckpointReader("s3://bucket", "cameleer")
