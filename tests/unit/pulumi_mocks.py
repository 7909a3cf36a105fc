"""Pulumi mocks that record every registration, and helpers to run code under them.

A module rather than a conftest: tests/unit is shared with the other packages' tests."""

from __future__ import annotations

import asyncio

from dataclasses import dataclass, field
from typing import Any, Callable

import pulumi
from pulumi.runtime import rpc
from pulumi.runtime.mocks import MockMonitor
from pulumi.runtime.sync_await import _sync_await

KUBE_TYPE = "kubernetes:"
PROVIDER_TYPE = "pulumi:providers:kubernetes"


def unwrap_secret(value: Any) -> Any:
    """A value as the program meant it, without the wire format's secret envelope."""
    if isinstance(value, dict) and value.get(rpc._special_sig_key) == rpc._special_secret_sig:
        return unwrap_secret(value["value"])
    return value


def _unwrap_all(value: Any) -> Any:
    value = unwrap_secret(value)
    if isinstance(value, dict):
        return {key: _unwrap_all(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_unwrap_all(item) for item in value]
    return value


def is_secret_value(value: Any) -> bool:
    return isinstance(value, dict) and value.get(rpc._special_sig_key) == rpc._special_secret_sig

# Outputs a real provider would compute, keyed by the end of the resource type.
COMPUTED_OUTPUTS = {
    "RandomPassword": {"result": "generated-password"},
    "TenantSchema": {"database": "cameleer", "observed": {}},
}


@dataclass
class Registration:
    type: str
    name: str
    inputs: dict[str, Any]
    parent: str
    urn: str

    additional_secret_outputs: list[str] = field(default_factory=list)
    dependencies: list[str] = field(default_factory=list)
    # The explicit provider reference (`<provider urn>::<provider id>`), "" for the default.
    provider: str = ""
    # customTimeouts as registered: {"create": "5m", "update": "5m"}, empty ones left out.
    custom_timeouts: dict[str, str] = field(default_factory=dict)

    @property
    def provider_urn(self) -> str:
        return self.provider.rsplit("::", 1)[0] if self.provider else ""

    @property
    def is_kube_object(self) -> bool:
        return self.type.startswith(KUBE_TYPE)

    @property
    def kind(self) -> str:
        return self.type.rsplit(":", 1)[-1]

    @property
    def manifest(self) -> dict[str, Any]:
        """The object as a manifest: a typed resource's inputs are its fields."""
        return _unwrap_all(self.inputs)


class RecordingMocks(pulumi.runtime.Mocks):
    def __init__(self) -> None:
        self.registered: list[Registration] = []

    def new_resource(self, args: pulumi.runtime.MockResourceArgs):
        outputs = dict(args.inputs)
        outputs.update(COMPUTED_OUTPUTS.get(args.typ.rsplit(":", 1)[-1], {}))
        return f"{args.name}-id", outputs

    def call(self, args: pulumi.runtime.MockCallArgs):
        return {}

    # ----------------------------------------------------------------- queries

    def by_type(self, type_: str) -> list[Registration]:
        return [r for r in self.registered if r.type == type_]

    def kube(self, kind: str) -> list[Registration]:
        return [r for r in self.registered if r.is_kube_object and r.kind == kind]

    def kube_objects(self) -> list[Registration]:
        return [r for r in self.registered if r.is_kube_object]

    def providers(self) -> list[Registration]:
        """The explicit Kubernetes providers (`pulumi:providers:kubernetes`)."""
        return self.by_type(PROVIDER_TYPE)

    def provider_of(self, registration: Registration) -> Registration | None:
        """The provider a resource was registered on, if it was given one explicitly."""
        return next((r for r in self.registered if r.urn == registration.provider_urn), None)

    def manifests(self, kind: str) -> list[dict[str, Any]]:
        return [r.manifest for r in self.kube(kind)]

    def one(self, kind: str, name: str | None = None) -> dict[str, Any]:
        found = [m for m in self.manifests(kind) if name is None or m["metadata"]["name"] == name]
        assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
        return found[0]

    def named(self, name: str) -> Registration:
        return next(r for r in self.registered if r.name == name)

    def children_of(self, name: str) -> list[Registration]:
        parent = self.named(name).urn
        return [r for r in self.registered if r.parent == parent]


class RecordingMonitor(MockMonitor):
    """Also records each registration's parent, dependencies, provider reference and custom
    timeouts, which MockResourceArgs leaves out."""

    def __init__(self, mocks: RecordingMocks):
        super().__init__(mocks)
        self.recorder = mocks

    def RegisterResource(self, request):
        response = super().RegisterResource(request)
        if request.type != "pulumi:pulumi:Stack":
            inputs = self.resources[response.urn].state
            timeouts = request.customTimeouts
            self.recorder.registered.append(Registration(
                request.type, request.name, dict(inputs), request.parent, response.urn,
                list(request.additionalSecretOutputs), list(request.dependencies), request.provider,
                {key: value for key in ("create", "update", "delete") if (value := getattr(timeouts, key))}))
        return response


def use_mocks(stack: str = "tenant-demo") -> RecordingMocks:
    # The SDK registers the root stack on the current event loop; a test that ran before
    # (any asyncio user: the API client, the Automation API) may have closed or unset it.
    try:
        loop = asyncio.get_event_loop_policy().get_event_loop()
    except RuntimeError:
        loop = None
    if loop is None or loop.is_closed():
        asyncio.set_event_loop(asyncio.new_event_loop())
    recorder = RecordingMocks()
    pulumi.runtime.set_mocks(recorder, project="cameleer", stack=stack, preview=False,
                             monitor=RecordingMonitor(recorder))
    return recorder


def run(build: Callable[[], Any]) -> Any:
    """Run `build` as a Pulumi program under the mocks; wait for every registration."""
    result: dict[str, Any] = {}

    @pulumi.runtime.test
    def program():
        result["value"] = build()

    program()
    return result.get("value")


def is_secret(output: pulumi.Output) -> bool:
    return _sync_await(output.is_secret())


def resolve(output: pulumi.Output) -> Any:
    """The value of an Output (the mocks resolve everything)."""
    box: dict[str, Any] = {}

    @pulumi.runtime.test
    def program():
        return output.apply(lambda value: box.setdefault("value", value))

    program()
    return box["value"]
