"""Stack names and resolving what a person typed."""

from __future__ import annotations

import pytest

from automation.errors import ErrorKind, OperationError
from automation.naming import (
    StackKind,
    dedicated_stack,
    is_stack_name,
    parse_stack_name,
    resolve_target,
    shared_stack,
    stack_name,
    tenant_stack,
)


def test_names_by_kind():
    assert tenant_stack("acme") == "tenant-acme"
    assert dedicated_stack("acme") == "dedicated-acme"
    assert shared_stack("eu1") == "shared-eu1"
    assert stack_name("tenant", "a-b-1") == "tenant-a-b-1"


@pytest.mark.parametrize("slug", ["", "Acme", "-acme", "acme-", "ac_me", "a" * 60])
def test_bad_slugs_are_config_errors(slug):
    with pytest.raises(OperationError) as caught:
        tenant_stack(slug)
    assert caught.value.kind is ErrorKind.CONFIG


def test_parse_round_trips_and_accepts_qualified_names():
    ref = parse_stack_name("organization/cameleer/dedicated-acme")
    assert (ref.kind, ref.slug, ref.name) == (StackKind.DEDICATED, "acme", "dedicated-acme")
    assert parse_stack_name("tenant-a-b").slug == "a-b"
    assert is_stack_name("shared-eu1") and not is_stack_name("acme") and not is_stack_name("prod")


def test_slug_resolves_to_the_stack_that_exists():
    assert resolve_target("acme", {"tenant-acme", "tenant-other"}) == "tenant-acme"
    assert resolve_target("acme", {"dedicated-acme"}) == "dedicated-acme"
    assert resolve_target("  acme ", {"organization/cameleer/tenant-acme"}) == "tenant-acme"


def test_full_names_are_taken_as_they_are():
    assert resolve_target("dedicated-acme", set()) == "dedicated-acme"


def test_ambiguous_and_unknown_slugs_are_refused():
    with pytest.raises(OperationError) as both:
        resolve_target("acme", {"tenant-acme", "dedicated-acme"})
    assert both.value.kind is ErrorKind.CONFIG
    with pytest.raises(OperationError) as none:
        resolve_target("acme", {"tenant-other"})
    assert none.value.kind is ErrorKind.NOT_FOUND
