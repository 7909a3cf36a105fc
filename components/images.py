"""Container image references: digest pinning and registry checks.

No Pulumi import: the policy pack applies the same rules to what the components build.
"""

from __future__ import annotations

import re

from .catalog import CatalogError

_DIGEST = re.compile(r"@sha256:[0-9a-f]{64}$")
# Docker Hub's implicit registry, as the container runtime resolves it.
DEFAULT_REGISTRY = "docker.io"


class ImageError(CatalogError):
    """An image reference the platform does not run."""


def is_digest_pinned(image: str) -> bool:
    return isinstance(image, str) and bool(_DIGEST.search(image))


def registry_of(image: str) -> str:
    """The registry host of an image reference (`docker.io` when none is named)."""
    first, _, rest = image.partition("/")
    looks_like_host = bool(rest) and ("." in first or ":" in first or first == "localhost")
    return first if looks_like_host else DEFAULT_REGISTRY


def qualified_name(image: str) -> str:
    """The image's repository with its registry spelled out: `nginx` -> `docker.io/library/nginx`."""
    repository = image.split("@", 1)[0]
    first, _, rest = repository.partition("/")
    if registry_of(image) != DEFAULT_REGISTRY or first == DEFAULT_REGISTRY:
        return repository
    return f"{DEFAULT_REGISTRY}/{repository if rest else 'library/' + repository}"


def from_allowed_registry(image: str, allowed: list[str] | tuple[str, ...]) -> bool:
    """Whether `image` comes from one of `allowed`: registry hosts or host/path prefixes."""
    name = qualified_name(image)
    return any(name.startswith(entry.rstrip("/") + "/") for entry in allowed)


def validate_pinned_image(image: str) -> str:
    """Return `image` if it is pinned by digest (`name@sha256:<64 hex>`), else raise ImageError."""
    if not is_digest_pinned(image):
        raise ImageError(
            f"image {image!r} is not pinned by digest; use the form "
            "registry/name@sha256:<64 hex digits> (a tag alone can change under us)"
        )
    return image
