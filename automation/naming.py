"""Stack names: `tenant-<slug>`, `dedicated-<slug>`, `shared-<cluster>`.

A stack name encodes what the stack is; everything that needs to go from a tenant to its
stack (the service, the CLI) goes through here.

    stack_name(StackKind.TENANT, "acme")        # "tenant-acme"
    parse_stack_name("dedicated-acme")          # StackRef(kind=DEDICATED, slug="acme")
    resolve_target("acme", {"dedicated-acme"})  # "dedicated-acme"
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum

from components.catalog import CatalogError, validate_slug

from .errors import ErrorKind, OperationError


class StackKind(str, Enum):
    TENANT = "tenant"  # a tenant on a shared cluster (low, mid)
    DEDICATED = "dedicated"  # a customer's dedicated cluster (high, business)
    SHARED = "shared"  # a shared cluster's baseline

    @property
    def prefix(self) -> str:
        return f"{self.value}-"


# Slug-addressed kinds in the order a bare slug is looked up.
TENANT_KINDS = (StackKind.TENANT, StackKind.DEDICATED)


@dataclass(frozen=True)
class StackRef:
    kind: StackKind
    slug: str

    @property
    def name(self) -> str:
        return f"{self.kind.prefix}{self.slug}"

    def __str__(self) -> str:
        return self.name


def stack_name(kind: StackKind | str, slug: str) -> str:
    """The stack name for `slug`; the slug is validated (DNS-1123 label, length-limited)."""
    kind = StackKind(kind)
    return StackRef(kind, _validated(slug)).name


def tenant_stack(slug: str) -> str:
    return stack_name(StackKind.TENANT, slug)


def dedicated_stack(slug: str) -> str:
    return stack_name(StackKind.DEDICATED, slug)


def shared_stack(cluster: str) -> str:
    return stack_name(StackKind.SHARED, cluster)


def parse_stack_name(name: str) -> StackRef:
    """Split a stack name into kind and slug; raises a config error for anything else.

    Accepts a fully qualified `org/project/stack` name and uses its last part.
    """
    short = name.rsplit("/", 1)[-1]
    for kind in StackKind:
        if short.startswith(kind.prefix):
            return StackRef(kind, _validated(short[len(kind.prefix):]))
    raise OperationError(
        ErrorKind.CONFIG,
        f"{name!r} is not a Cameleer stack name: expected "
        + ", ".join(f"'{k.prefix}<slug>'" for k in StackKind),
    )


def is_stack_name(name: str) -> bool:
    try:
        parse_stack_name(name)
    except OperationError:
        return False
    return True


def resolve_target(target: str, known_stacks: Iterable[str]) -> str:
    """Turn what a person typed (a stack name or a tenant slug) into a stack name.

    A stack name is returned as is (validated). A bare slug resolves to `tenant-<slug>`,
    or to `dedicated-<slug>` when only that one exists. When both exist (a tenant being
    moved to a dedicated cluster) the caller must say which; when neither exists the slug
    is not a known tenant.
    """
    target = target.strip()
    if is_stack_name(target):
        return parse_stack_name(target).name
    slug = _validated(target)
    known = {name.rsplit("/", 1)[-1] for name in known_stacks}
    candidates = [StackRef(kind, slug).name for kind in TENANT_KINDS]
    present = [name for name in candidates if name in known]
    if len(present) == 1:
        return present[0]
    if len(present) > 1:
        raise OperationError(
            ErrorKind.CONFIG,
            f"tenant {slug!r} has both {' and '.join(present)}; name the stack explicitly",
        )
    raise OperationError(
        ErrorKind.NOT_FOUND,
        f"no stack for tenant {slug!r} (looked for {', '.join(candidates)}); "
        "pass a full stack name to create one",
    )


def _validated(slug: str) -> str:
    try:
        return validate_slug(slug)
    except CatalogError as exc:
        raise OperationError(ErrorKind.CONFIG, str(exc)) from exc
