"""Error classification from the Pulumi CLI's real words (outputs of the v3.259.0 CLI)."""

from __future__ import annotations

import pytest
from pulumi.automation import errors as auto_errors
from pulumi.automation._cmd import CommandResult

from automation.errors import ErrorKind, OperationError, RetryPolicy, classify
from automation.events import PolicyViolation

# `pulumi up` while another process holds the file backend's lock.
LOCKED = """warning: using pulumi-language-python from $PATH at /work/main/.venv/bin/pulumi-language-python
error: the stack is currently locked by 1 lock(s). Either wait for the other process(es) to end or delete the lock file with `pulumi cancel`.
  file:///work/main/.cameleer/state/.pulumi/locks/organization/cameleer/tenant-acme/6d0a4c52-0000-4000-8000-000000000000.json?no_tmp_dir=true: created by root@vm (pid 999999) at 2026-11-23T10:00:00Z"""

NOT_FOUND = "error: no stack named 'tenant-nope' found"

MISSING_CONFIG = """    pulumi:pulumi:Stack cameleer-tenant-acme running error: Missing required configuration variable 'cameleer:replicas'
    pulumi:pulumi:Stack cameleer-tenant-acme  1 error; 2 warnings
    error: Missing required configuration variable 'cameleer:replicas'
    1 errored"""

WRONG_PASSPHRASE = "error: getting stack configuration: get stack secrets manager: incorrect passphrase"

BACKEND_DOWN = ('error: unable to open state database "postgres://u:p@127.0.0.1:1/db?sslmode=disable": '
                "failed to ping PostgreSQL: dial tcp 127.0.0.1:1: connect: connection refused")

# `pulumi up` stopped by a mandatory policy: no "error:" line at all, only the policy block.
POLICY_STDOUT = """Policies:
    ❌ scratch-policy@v0.0.1 (local: /tmp/scratch/policy)
        - [mandatory]  max-replicas  (pulumi-python:dynamic:Resource: server)
          at most 5 replicas
          replicas must be at most 5
        - [advisory]  team-label  (pulumi-python:dynamic:Resource: ns)
          team label
          namespaces should carry a team label

Outputs:
  ~ replicas: 2 => 9
"""

KUBE_DOWN = ("error: Exception: HTTPSConnectionPool(host='127.0.0.1', port=56443): Max retries exceeded with url: "
             "/api/v1/namespaces (Caused by NewConnectionError('<urllib3.connection.HTTPSConnection object>: "
             "Failed to establish a new connection: [Errno 111] Connection refused'))")


def command_error(cls, stdout: str = "", stderr: str = "", code: int = 255):
    return cls(CommandResult(stdout=stdout, stderr=stderr, code=code))


def test_locked_stack_is_a_retryable_conflict():
    error = classify(command_error(auto_errors.ConcurrentUpdateError, stderr=LOCKED), stack="tenant-acme",
                     operation="update")
    assert error.kind is ErrorKind.CONFLICT
    assert error.retryable and error.retry_after
    assert "currently locked" in error.message


def test_locked_text_alone_is_enough():
    assert classify(command_error(auto_errors.CommandError, stderr=LOCKED)).kind is ErrorKind.CONFLICT


def test_missing_stack_is_not_found():
    error = classify(command_error(auto_errors.StackNotFoundError, stderr=NOT_FOUND), stack="tenant-nope")
    assert error.kind is ErrorKind.NOT_FOUND
    assert not error.retryable
    assert classify(NOT_FOUND).kind is ErrorKind.NOT_FOUND


def test_missing_config_is_a_config_error_naming_the_key():
    error = classify(command_error(auto_errors.CommandError, stdout=MISSING_CONFIG))
    assert error.kind is ErrorKind.CONFIG
    assert "cameleer:replicas" in error.message
    assert not error.retryable


def test_wrong_passphrase_is_config():
    assert classify(WRONG_PASSPHRASE).kind is ErrorKind.CONFIG


@pytest.mark.parametrize("text", [BACKEND_DOWN, KUBE_DOWN, "error: context deadline exceeded",
                                  "Error from server: etcdserver: request timed out",
                                  "error: HTTP response status 503 Service Unavailable",
                                  "error: cameleer:cluster: CAMELEER_KUBECONFIG_REF_DC1: cannot read the kubeconfig"
                                  " of cluster 'dc1': reading platform/clusters/dc1: the secrets server is sealed"])
def test_network_and_backend_hiccups_are_transient(text):
    error = classify(text)
    assert error.kind is ErrorKind.TRANSIENT
    assert error.retryable


def test_mandatory_policy_events_make_a_policy_error_with_rule_messages():
    violations = [
        PolicyViolation("scratch-policy", "0.0.1", "team-label", "advisory", "namespaces should carry a team label"),
        PolicyViolation("scratch-policy", "0.0.1", "max-replicas", "mandatory", "replicas must be at most 5",
                        "urn:pulumi:tenant-acme::cameleer::pulumi-python:dynamic:Resource::server"),
    ]
    error = classify(command_error(auto_errors.CommandError, stdout=POLICY_STDOUT, code=255),
                     policy_violations=violations, diagnostics=["preview failed"])
    assert error.kind is ErrorKind.POLICY
    assert not error.retryable
    assert "max-replicas" in error.message
    assert [v.policy for v in error.policy_violations] == ["team-label", "max-replicas"]
    assert error.to_dict()["policy_violations"][1]["message"] == "replicas must be at most 5"


def test_policy_is_recognised_from_the_cli_output_without_events():
    assert classify(POLICY_STDOUT).kind is ErrorKind.POLICY


def test_advisory_violations_alone_do_not_make_a_policy_error():
    advisory = [PolicyViolation("p", "1", "team-label", "advisory", "m")]
    assert classify("error: something odd", policy_violations=advisory).kind is ErrorKind.UNKNOWN


def test_unknown_errors_keep_the_first_error_line():
    error = classify("Updating (tenant-acme):\n\nerror: the provider exploded in a new way\nmore")
    assert error.kind is ErrorKind.UNKNOWN
    assert error.message == "the provider exploded in a new way"
    assert not error.retryable


def test_numbers_in_output_are_not_mistaken_for_http_statuses():
    assert classify("error: created 503 resources before failing").kind is ErrorKind.UNKNOWN


def test_an_operation_error_passes_through_unchanged():
    original = OperationError(ErrorKind.CONFIG, "bad slug")
    assert classify(original) is original


def test_retry_policy_backs_off_exponentially_to_a_cap():
    policy = RetryPolicy(attempts=5, initial_delay=1, max_delay=5, multiplier=3)
    assert list(policy.delays()) == [1, 3, 5, 5]
    assert policy.should_retry(OperationError(ErrorKind.TRANSIENT, "x"))
    assert not policy.should_retry(OperationError(ErrorKind.CONFLICT, "x"))


# A program that died of an exception (from the v3.259.0 CLI's stdout, trimmed).
PROGRAM_CRASH = """    pulumi:pulumi:Stack cameleer-tenant-acme  error: Program failed with an unhandled exception:
    pulumi:pulumi:Stack cameleer-tenant-acme  Traceback (most recent call last):
    pulumi:pulumi:Stack cameleer-tenant-acme    File "/work/main/stacks/__main__.py", line 20, in <module>
    pulumi:pulumi:Stack cameleer-tenant-acme      PROGRAMS[stack.kind](stack)
    pulumi:pulumi:Stack cameleer-tenant-acme    File "/work/main/components/tenant_server.py", line 88, in __init__
    pulumi:pulumi:Stack cameleer-tenant-acme      raise KeyError(name)
    pulumi:pulumi:Stack cameleer-tenant-acme  KeyError: 'probes'
"""


def test_a_crashed_program_is_reported_by_its_exception():
    error = classify(PROGRAM_CRASH)
    assert error.kind is ErrorKind.UNKNOWN
    assert error.message == "KeyError: 'probes'"


def test_a_config_exception_is_reported_by_its_own_line_not_the_raise():
    text = PROGRAM_CRASH.replace("raise KeyError(name)", 'raise StackConfigError(f"bad tier")').replace(
        "KeyError: 'probes'", "stacks.config.StackConfigError: tier 'gold' is not in the catalog")
    error = classify(text)
    assert error.kind is ErrorKind.CONFIG
    assert error.message == "stacks.config.StackConfigError: tier 'gold' is not in the catalog"


def test_a_policy_pack_that_cannot_start_says_so():
    error = classify('error: policy pack "/work/main/policy" failed to start: could not read plugin '
                     "[/work/main/policy]: exit status 1")
    assert error.message.startswith("policy pack")
    assert error.kind is ErrorKind.UNKNOWN


def test_a_stack_programs_config_diagnostic_is_kept_whole():
    diagnostic = ("invalid configuration for stack tenant-demo:\n"
                  "  - cameleer:databaseAdminUrl: missing; set it with `pulumi config set --secret ...`\n"
                  "  - cameleer:license: missing; set it with `pulumi config set --secret cameleer:license ...`")
    error = classify("code: 255\n stdout: Previewing update (tenant-demo):\n", diagnostics=[diagnostic])
    assert error.kind is ErrorKind.CONFIG
    assert "cameleer:databaseAdminUrl: missing" in error.message and "cameleer:license: missing" in error.message


# An update whose rollout the quota refuses, as pulumi-kubernetes 4.25.0 words it.
ROLLOUT_TIMEOUT = (
    '    kubernetes:apps/v1:Deployment prod-server-deployment updating failed error: 1 error occurred:\n'
    '    error: 1 error occurred:\n'
    '\t* the Kubernetes API server reported that "tenant-acme-prod/cameleer-server" failed to fully '
    'initialize or become live: timed out waiting for the condition')


def test_a_rollout_that_cannot_finish_is_not_retried():
    error = classify(ROLLOUT_TIMEOUT)
    assert error.kind is ErrorKind.ROLLOUT and not error.retryable
    assert "tenant-acme-prod/cameleer-server" in error.message
    assert not RetryPolicy().should_retry(error)
