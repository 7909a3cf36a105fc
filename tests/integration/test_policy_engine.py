"""The CrossGuard pack (policy/) with the real engine: a program that breaks each mandatory
rule is blocked by preview, with every rule's own message; the project's own tenant stack
passes every rule."""

from __future__ import annotations

import importlib.util

import pytest
from pulumi import automation as auto

from policy import rules
from policy.pack import POLICIES

from .conftest import PROGRAMS, REPO_ROOT

pytestmark = pytest.mark.engine

POLICY_PACK = str(REPO_ROOT / "policy")
VIOLATIONS = PROGRAMS / "policy_violations"

# The pack's mandatory resource policies and the rule each applies.
RESOURCE_RULES = {
    "no-privileged-containers": rules.privileged_containers,
    "no-host-access": rules.host_access,
    "restricted-security-context": rules.restricted_security_context,
    "resource-limits": rules.resource_limits,
    "pinned-images": rules.pinned_images,
    "tenant-namespace-labels": rules.tenant_namespace_labels,
}


def _program_manifests():
    spec = importlib.util.spec_from_file_location("policy_violations_manifests", VIOLATIONS / "manifests.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _expected_messages(manifests, rule: str, obj: dict) -> list[str]:
    if rule in RESOURCE_RULES:
        return RESOURCE_RULES[rule](obj)
    assert rule == "tenant-namespace-default-deny"
    objects = [rules.StackObject(f"urn:{name}", item) for name, item in
               [*manifests.CASES.values(), *manifests.CONTROLS.items()]]
    return [message for message, _urn in rules.namespaces_without_default_deny(objects)
            if obj["metadata"]["name"] in message]


def test_program_covers_every_mandatory_rule():
    mandatory = {policy.name for policy in POLICIES if policy.enforcement_level.value == "mandatory"}
    assert set(_program_manifests().CASES) == mandatory


def test_preview_blocks_each_mandatory_violation_with_its_message(project_stacks):
    manifests = _program_manifests()
    stack = project_stacks("violations", work_dir=VIOLATIONS)

    with pytest.raises(auto.CommandError) as blocked:
        stack.preview(policy_packs=[POLICY_PACK])
    output = str(blocked.value)
    assert "preview failed" in output

    events = stack.policy_events()
    by_resource: dict[str, list] = {}
    for event in events:
        by_resource.setdefault(event.resource_urn.rsplit("::", 1)[1], []).append(event)
    for rule, (resource, obj) in manifests.CASES.items():
        expected = _expected_messages(manifests, rule, obj)
        assert expected, f"case {resource!r} breaks no rule of {rule!r}"
        reported = by_resource.get(resource, [])
        # Each case breaks its own rule and no other, and the engine blocks on it.
        assert {event.policy_name for event in reported} == {rule}, (resource, reported)
        assert {event.enforcement_level for event in reported} == {"mandatory"}
        assert {event.policy_pack_name for event in reported} == {"cameleer-guardrails"}
        assert sorted(event.message.splitlines()[-1] for event in reported) == sorted(expected)
        for message in expected:
            assert message in output, f"{rule}: {message!r} is not in the preview's output"
        assert f"[mandatory]  {rule}  " in output
    # The compliant objects draw nothing, advisory policies included.
    assert not set(by_resource) & set(manifests.CONTROLS), by_resource.keys()
    assert set(by_resource) == {resource for resource, _obj in manifests.CASES.values()}
    # A blocked preview creates nothing.
    assert stack.resource_count() == 0
