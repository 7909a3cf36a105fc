"""The base of the project's components: children wait for what their component waits for."""

from __future__ import annotations

from typing import Sequence

import pulumi

from components.cluster import Cluster
from components.kube import declare


class Component(pulumi.ComponentResource):
    """A ComponentResource that hands its `depends_on` down to its children.

    Pulumi does not do that itself: depending *on* a component waits for its children, but
    a component's own dependencies do not reach them. Without this, a NetworkPolicy could
    be created before the namespace its component was told to wait for.
    """

    def __init__(self, type_: str, name: str, opts: pulumi.ResourceOptions | None = None):
        super().__init__(type_, name, None, opts)
        self._waits_for = _resources(opts.depends_on if opts is not None else None)

    def child_options(self, depends_on: Sequence[pulumi.Resource] = (), **options) -> pulumi.ResourceOptions:
        return pulumi.ResourceOptions(parent=self, depends_on=[*self._waits_for, *depends_on], **options)

    def kube_object(self, name: str, cluster: Cluster, manifest: dict, *,
                    depends_on: Sequence[pulumi.Resource] = (), **options) -> pulumi.CustomResource:
        """Declare `manifest` on `cluster` as a typed child resource (a Secret's data is
        kept secret in state by pulumi-kubernetes itself); `options` are ResourceOptions."""
        return declare(name, manifest, cluster.provider, self.child_options(depends_on, **options))


def _resources(depends_on) -> list[pulumi.Resource]:
    if depends_on is None:
        return []
    if isinstance(depends_on, pulumi.Resource):
        return [depends_on]
    return [item for item in depends_on if isinstance(item, pulumi.Resource)]
