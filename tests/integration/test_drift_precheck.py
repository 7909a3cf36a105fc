"""The drift pre-check against a fleet of real tenant stacks on the real provider.

A clean fleet gets no engine run at all; edits made with `kubectl` over random stacks are
flagged by the pre-check wherever a full engine scan of the same fleet finds drift (never
a false "clean"), and the engine reports them per property; after `--fix` the pre-check
finds the whole fleet clean again, so the state it reads stays right across corrections.
"""

from __future__ import annotations

import json
import random
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

from automation.checkpoints import CheckpointReader
from automation.changes import is_encrypted
from components import naming
from components.tenant_server import SERVER_NAME, SETTINGS_CONFIG_MAP

from .conftest import REPO_ROOT, _SESSION_SLUGS
from .test_kubernetes_drift import Cli

pytestmark = pytest.mark.engine

FLEET_SIZE = 20


class Fleet:
    def __init__(self, cli: Cli, slugs: list[str]):
        self.cli, self.slugs = cli, slugs
        self.stacks = [f"tenant-{slug}" for slug in slugs]

    def namespace(self, index: int) -> str:
        return naming.namespace_name(self.slugs[index], "prod")

    def drift_all(self, *args: str, expect: int) -> dict:
        return json.loads(self.cli.cameleer("drift", "--all", "--json", "--parallel", "2", *args,
                                            expect=expect).stdout)


@pytest.fixture(scope="module")
def fleet(tmp_path_factory, kubeconfig, pulumi_bin, pulumi_home, tenant_database_url, shared_baseline):
    tmp_path = tmp_path_factory.mktemp("fleet")
    cli = Cli(tmp_path, kubeconfig, {
        "KUBECONFIG": kubeconfig, "PULUMI_HOME": pulumi_home, "PULUMI_SKIP_UPDATE_CHECK": "true",
        "PULUMI_CONFIG_PASSPHRASE": "integration-test-passphrase",
        # The pre-check observes the tenant schemas through the stacks' own admin.
        "CAMELEER_TENANT_DATABASE_ADMIN_URL": tenant_database_url,
    })
    cli.env["PATH"] = f"{pulumi_bin.parent}:{cli.env['PATH']}"
    prefix = f"fl{uuid.uuid4().hex[:6]}"
    slugs = [f"{prefix}{i:02d}" for i in range(FLEET_SIZE)]
    _SESSION_SLUGS.extend(slugs)
    try:
        with ThreadPoolExecutor(max_workers=2) as pool:
            list(pool.map(lambda slug: cli.up_low_tenant(slug, tenant_database_url, "pre-check fleet"), slugs))
        yield Fleet(cli, slugs)
    finally:
        # The backend is this module's own; the tenant roles go with the session's database.
        cli.kubectl("delete", "namespace", "--wait=false", "--ignore-not-found",
                    *[naming.namespace_name(slug, "prod") for slug in slugs])


def test_a_clean_fleet_gets_no_engine_run(fleet):
    report = fleet.drift_all(expect=0)
    assert report["mode"] == "precheck" and report["summary"]["stacks"] == FLEET_SIZE
    assert report["summary"]["engine_checked"] == 0, [s["engine_reason"] for s in report["stacks"]]
    assert {s["checked_by"] for s in report["stacks"]} == {"precheck"}
    # One list per kind for the whole fleet (plus discovery), never one request per stack.
    assert report["precheck"]["requests"] < FLEET_SIZE, report["precheck"]
    compared = {s["stack"]: s["precheck"]["compared"] for s in report["stacks"]}
    assert min(compared.values()) >= 15, compared  # every object and the schema, not a sample


def test_the_reader_returns_the_deployment_pulumi_stack_export_prints(fleet):
    """Pins the backend layout the pre-check reads (not a public API of the engine)."""
    stack = fleet.stacks[0]
    exported = json.loads(fleet.cli.cameleer("export", stack).stdout)["deployment"]
    [checkpoint] = CheckpointReader(fleet.cli.env["PULUMI_BACKEND_URL"], "cameleer").read([stack]).values()
    # Export re-encrypts secrets (a fresh nonce each time): compare everything but ciphertexts.
    assert _without_ciphertext(list(checkpoint.resources)) == _without_ciphertext(exported["resources"])


def _without_ciphertext(value):
    if is_encrypted(value):
        return "[secret]"
    if isinstance(value, dict):
        return {key: _without_ciphertext(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_without_ciphertext(item) for item in value]
    return value


EDITS = {
    # name: (kubectl arguments in the stack's namespace, whether it is drift)
    "scale": (["scale", "deployment", SERVER_NAME, "--replicas=2"], True),
    "configmap": (["patch", "configmap", SETTINGS_CONFIG_MAP, "--type", "merge",
                   "-p", json.dumps({"data": {"CAMELEER_RETENTION_DAYS": "365"}})], True),
    "quota": (["patch", "resourcequota", "tenant-quota", "--type", "merge",
               "-p", json.dumps({"spec": {"hard": {"pods": "100"}}})], True),
    "networkpolicy": (["delete", "networkpolicy", "allow-dns"], True),
    "deployment": (["delete", "deployment", SERVER_NAME, "--wait=true"], True),
    "secret": (["patch", "secret", "cameleer-license", "--type", "merge",
                "-p", json.dumps({"data": {"license.jwt": "dGFtcGVyZWQ="}})], True),
    "foreign-annotation": (["annotate", "deployment", SERVER_NAME, "example.com/on-call=alice"], False),
    "foreign-label": (["label", "serviceaccount", "cameleer-server", "team.example.com/owner=payments",
                       "--field-manager=payments-team"], False),
}


def _edit(fleet: Fleet, index: int, edit: str) -> None:
    namespace = fleet.namespace(index)
    if edit == "pod-security":
        fleet.cli.kubectl("label", "--overwrite", "namespace", namespace,
                          "pod-security.kubernetes.io/enforce=privileged")
    else:
        fleet.cli.kubectl("-n", namespace, *EDITS[edit][0])


def test_random_kubectl_edits_are_flagged_wherever_a_full_engine_scan_finds_drift(fleet):
    rng = random.Random(20261203)
    names = [*EDITS, "pod-security"]
    chosen = {index: rng.choice(names) for index in rng.sample(range(FLEET_SIZE), 10)}
    # Every kind of edit at least once, whatever the seed picked.
    for index, edit in zip(sorted(set(range(FLEET_SIZE)) - set(chosen)), names):
        chosen[index] = edit
    for index, edit in chosen.items():
        _edit(fleet, index, edit)

    full = {s["stack"]: s for s in fleet.drift_all("--full", expect=2)["stacks"]}
    prechecked_report = fleet.drift_all(expect=2)
    prechecked = {s["stack"]: s for s in prechecked_report["stacks"]}

    drifting = {fleet.stacks[i] for i, edit in chosen.items() if edit == "pod-security" or EDITS[edit][1]}
    assert {stack for stack, s in full.items() if s["status"] == "drifted"} == drifting
    for stack, engine_view in full.items():
        mine = prechecked[stack]
        if engine_view["status"] == "drifted":
            assert mine["checked_by"] == "engine", (stack, mine)  # never a false clean
        assert mine["status"] == engine_view["status"], (stack, mine, engine_view)
        assert _paths(mine) == _paths(engine_view), stack  # the same per-property report
    # Edits nobody declared flag nothing: those stacks never reached the engine.
    for index, edit in chosen.items():
        if edit in EDITS and not EDITS[edit][1]:
            assert prechecked[fleet.stacks[index]]["checked_by"] == "precheck", edit
    assert prechecked_report["summary"]["engine_checked"] == len(drifting)

    fixed = fleet.drift_all("--fix", expect=0)
    assert fixed["summary"]["fixed"] == len(drifting) and fixed["summary"]["engine_checked"] == len(drifting)
    # The corrections rewrote those checkpoints; the pre-check reads them and finds all clean.
    after = fleet.drift_all(expect=0)
    assert after["summary"]["engine_checked"] == 0, [s["engine_reason"] for s in after["stacks"]]


def _paths(entry: dict) -> dict[str, set[str]]:
    resources = (entry["drift"] or {}).get("resources") or []
    return {r["name"]: {p["path"] for p in r["properties"]} or {r["op"]} for r in resources}


class Watcher:
    """`cameleer drift watch --json` as a subprocess; its events collected as they arrive."""

    def __init__(self, fleet: Fleet, *args: str):
        import queue
        import subprocess
        import threading

        self.process = subprocess.Popen([fleet.cli.cameleer_bin, "drift", "watch", "--json", *args],
                                        cwd=REPO_ROOT, env=fleet.cli.env, stdout=subprocess.PIPE,
                                        stderr=subprocess.DEVNULL, text=True)
        self.events: queue.Queue[tuple[float, dict]] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self.events.put((time.monotonic(), json.loads(line)))

    def next(self, predicate, what: str, timeout: float = 60) -> tuple[float, dict]:
        import queue

        deadline = time.monotonic() + timeout
        while True:
            try:
                arrived, event = self.events.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                pytest.fail(f"no {what} from the watcher within {timeout:g}s")
            if predicate(event):
                return arrived, event

    def kill(self) -> None:
        self.process.kill()
        self.process.wait(timeout=30)


def _about(stack: str, event: str):
    return lambda e: e["event"] == event and e["stack"] == stack


def test_watch_reports_a_scale_within_seconds_and_corrects_it_once_per_interval(fleet):
    stack, namespace = fleet.stacks[0], fleet.namespace(0)
    corrected_before = len(_corrections(fleet, stack))
    watcher = Watcher(fleet, "--fix", "--fix-interval", "600", "--resync", "2")
    try:
        watcher.next(lambda e: e["event"] == "ready", "ready event", timeout=120)
        started = time.monotonic()
        fleet.cli.kubectl("-n", namespace, "scale", "deployment", SERVER_NAME, "--replicas=3")
        arrived, event = watcher.next(_about(stack, "drifted"), "drift report", timeout=30)
        assert arrived - started < 5, f"reported after {arrived - started:.2f}s"
        assert event["findings"] == [{"resource": "prod-server-deployment", "what": "changed",
                                      "paths": ["spec.replicas"], "detail": ""}]
        _, correction = watcher.next(_about(stack, "correction"), "correction", timeout=180)
        assert correction["result"] == "succeeded", correction
        watcher.next(_about(stack, "cleared"), "cleared event", timeout=60)
        assert fleet.cli.get(namespace, "deployment", SERVER_NAME)["spec"]["replicas"] == 1

        # A second drift inside the interval is reported, never corrected again (no loop
        # with another controller that keeps setting the field).
        fleet.cli.kubectl("-n", namespace, "scale", "deployment", SERVER_NAME, "--replicas=2")
        watcher.next(_about(stack, "drifted"), "second drift report", timeout=30)
        _, skipped = watcher.next(_about(stack, "correction"), "skipped correction", timeout=30)
        assert skipped["result"] == "skipped", skipped
    finally:
        watcher.kill()
    corrections = _corrections(fleet, stack)  # newest first
    assert len(corrections) == corrected_before + 1, corrections  # the skipped one never ran
    assert corrections[0]["reason"] == "drift correction" and corrections[0]["result"] == "succeeded"
    fleet.cli.cameleer("drift", stack, "--fix", "--json")


def _corrections(fleet: Fleet, stack: str) -> list[dict]:
    history = json.loads(fleet.cli.cameleer("history", stack, "--json").stdout)["entries"]
    return [e for e in history if e["change_kind"] == "drift-correction"]


def test_a_restarted_watcher_reports_a_change_made_while_it_was_down(fleet):
    stack, namespace = fleet.stacks[1], fleet.namespace(1)
    watcher = Watcher(fleet)
    watcher.next(lambda e: e["event"] == "ready", "ready event", timeout=120)
    watcher.kill()
    fleet.cli.kubectl("-n", namespace, "patch", "configmap", SETTINGS_CONFIG_MAP, "--type", "merge",
                      "-p", json.dumps({"data": {"CAMELEER_RETENTION_DAYS": "30"}}))
    watcher = Watcher(fleet)
    try:
        _, event = watcher.next(_about(stack, "drifted"), "drift made while down", timeout=120)
        assert event["findings"][0]["paths"] == ["data.CAMELEER_RETENTION_DAYS"], event
    finally:
        watcher.kill()
    fleet.cli.cameleer("drift", stack, "--fix", "--json")
