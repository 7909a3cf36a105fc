"""From engine step events to a structured diff: per resource, the operation and the
property paths that change, with their old and new values.

Used for both directions the engine compares in:

* preview (`mode="preview"`): the program's desired inputs against the stack's state;
  `old` is what the state has, `new` what the program wants.
* drift check (`mode="refresh"`, from `refresh --preview-only`): the live cluster against
  the state; `old` is what the state expects, `new` what the cluster has.

Property paths come from, in order of preference: the provider's detailed diff
(`detailedDiff`), a comparison of the old and new inputs carried in the event (the
project's dynamic Kubernetes provider reports whole `manifest` objects, so this is what
yields `manifest.spec.replicas`), the old and new outputs, and finally the engine's list
of changed top-level keys (`diffs`). Paths use Pulumi's property-path syntax:
`manifest.metadata.labels["app.kubernetes.io/name"]`, `spec.containers[0].image`.

Values that look secret (a Kubernetes Secret's data, keys named like passwords or tokens,
the engine's `[secret]` marker) are never copied into a change.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pulumi.automation import EngineEvent

# Operation names, normalized: replacement steps all become "replace".
CREATE, UPDATE, REPLACE, DELETE, SAME, READ, IMPORT, REFRESH = (
    "create", "update", "replace", "delete", "same", "read", "import", "refresh",
)
_OP_ALIASES = {
    "create": CREATE,
    "update": UPDATE,
    "delete": DELETE,
    "same": SAME,
    "replace": REPLACE,
    "create-replacement": REPLACE,
    "delete-replaced": REPLACE,
    "discard-replaced": REPLACE,
    "remove-pending-replace": REPLACE,
    "read": READ,
    "read-replacement": READ,
    "import": IMPORT,
    "import-replacement": IMPORT,
    "discard": DELETE,
    "refresh": REFRESH,
}
# When several steps touch one URN (a replacement is up to three), the most telling wins.
_RANK = {SAME: 0, REFRESH: 0, READ: 1, IMPORT: 2, UPDATE: 3, CREATE: 4, DELETE: 4, REPLACE: 5}
CHANGING_OPS = frozenset({CREATE, UPDATE, REPLACE, DELETE, IMPORT})

REDACTED = "[redacted]"
SECRET_MARKERS = frozenset({"[secret]", "[secret]".upper()})
# How the engine writes an encrypted value in state and events: {SIG: SIG_SECRET, "ciphertext": ...}.
SECRET_SIGNATURE_KEY = "4dabf18193072939515e22adb298388d"
SECRET_SIGNATURE_VALUE = "1b47061264138c4ac30d75fd1eb44270"
_SECRET_KEY = re.compile(r"pass(word|wd)?|token|secret|credential|private|api[-_]?key", re.I)
_MAX_VALUE_CHARS = 300
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class _Missing:
    def __repr__(self) -> str:
        return "<missing>"


MISSING: Any = _Missing()


@dataclass(frozen=True)
class PropertyChange:
    """One changed property: its path, how it changed, and (when known) old and new values."""

    path: str
    kind: str  # add | update | delete
    replace: bool = False  # this change forces a replacement
    old: Any = MISSING
    new: Any = MISSING

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"path": self.path, "kind": self.kind, "replace": self.replace}
        if self.old is not MISSING:
            out["old"] = self.old
        if self.new is not MISSING:
            out["new"] = self.new
        return out


@dataclass
class ResourceChange:
    urn: str
    type: str
    op: str
    properties: list[PropertyChange] = field(default_factory=list)

    @property
    def name(self) -> str:
        return urn_name(self.urn)

    @property
    def paths(self) -> list[str]:
        return [p.path for p in self.properties]

    @property
    def changed(self) -> bool:
        return self.op in CHANGING_OPS

    def to_dict(self) -> dict[str, Any]:
        return {
            "urn": self.urn,
            "type": self.type,
            "name": self.name,
            "op": self.op,
            "properties": [p.to_dict() for p in self.properties],
        }


def normalize_op(op: Any) -> str:
    value = getattr(op, "value", op) or ""
    return _OP_ALIASES.get(str(value), str(value))


def urn_name(urn: str) -> str:
    return urn.rsplit("::", 1)[-1] if "::" in urn else urn


def changes_from_events(events: Iterable[EngineEvent], *, mode: str = "preview") -> list[ResourceChange]:
    """The structured diff of one engine run, one entry per URN, in first-seen order.

    `mode="preview"` reads resource-pre and resource-outputs events; `mode="refresh"` reads
    only resource-outputs events, whose op is the refresh's result (same/update/delete).
    """
    if mode not in ("preview", "refresh"):
        raise ValueError(f"mode must be 'preview' or 'refresh', not {mode!r}")
    by_urn: dict[str, ResourceChange] = {}
    for event in events:
        if event.res_outputs_event is not None:
            meta = event.res_outputs_event.metadata
        elif event.resource_pre_event is not None and mode == "preview":
            meta = event.resource_pre_event.metadata
        else:
            continue
        op = normalize_op(meta.op)
        if mode == "refresh" and op == REFRESH:
            continue  # a refresh step whose result the outputs event has not told yet
        if _is_internal(meta.type):
            continue
        current = by_urn.get(meta.urn)
        properties = property_changes(meta, op=op, mode=mode)
        if current is None:
            by_urn[meta.urn] = ResourceChange(urn=meta.urn, type=meta.type, op=op, properties=properties)
            continue
        if _RANK.get(op, 0) > _RANK.get(current.op, 0):
            current.op = op
        if properties and (not current.properties or len(properties) > len(current.properties)):
            current.properties = properties
    return list(by_urn.values())


def property_changes(meta: Any, *, op: str, mode: str = "preview") -> list[PropertyChange]:
    """The changed properties of one step (empty for create/delete/same)."""
    if op not in (UPDATE, REPLACE):
        return []
    redact = _is_secret_resource(meta.type, meta.urn, meta.old, meta.new)
    old_inputs = _props(meta.old, "inputs")
    new_inputs = _props(meta.new, "inputs")
    replace_paths = {k for k, v in (meta.detailed_diff or {}).items() if "replace" in _kind(v)}

    if meta.detailed_diff:
        changes = []
        for path, diff in meta.detailed_diff.items():
            kind = _kind(diff).replace("-replace", "")
            parts = parse_path(path)
            old_source = old_inputs if getattr(diff, "input_diff", True) else _props(meta.old, "outputs")
            old = _lookup(old_source, parts)
            new = _lookup(new_inputs, parts)
            if mode == "refresh":
                # Refresh diffs are inverted by the engine (framed as "what the live state would
                # change"); the paths are right, the values we read straight from old and new.
                kind = _kind_from_values(old, new, kind)
            changes.append(_change(path, kind, path in replace_paths, old, new, redact))
        return sorted(changes, key=lambda c: c.path)

    changes = _diff_tree(old_inputs, new_inputs, redact)
    if not changes:
        changes = _diff_tree(_props(meta.old, "outputs"), _props(meta.new, "outputs"), redact,
                             only=set(meta.diffs or ()) or None)
    if not changes and meta.diffs:
        changes = [_change(format_path([key]), "update", False, MISSING, MISSING, redact)
                   for key in meta.diffs]
    if op == REPLACE and meta.keys:
        # `keys` are the top-level properties whose change forces the replacement.
        replace_keys = {str(k) for k in meta.keys}
        changes = [
            dataclasses.replace(c, replace=c.replace or str(parse_path(c.path)[0]) in replace_keys)
            for c in changes
        ]
    return changes


# --------------------------------------------------------------------------- paths

def format_path(parts: Sequence[str | int]) -> str:
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        elif _IDENT.match(part):
            out += ("." if out else "") + part
        else:
            out += "[" + json.dumps(part) + "]"
    return out


def parse_path(path: str) -> list[str | int]:
    """Parse a Pulumi property path (`a.b[0]["x.y"]`) into its parts."""
    parts: list[str | int] = []
    i, n = 0, len(path)
    token = ""
    while i < n:
        ch = path[i]
        if ch == ".":
            if token:
                parts.append(token)
                token = ""
            i += 1
        elif ch == "[":
            if token:
                parts.append(token)
                token = ""
            end = path.find("]", i)
            if i + 1 < n and path[i + 1] == '"':
                # Quoted key: find the closing quote, honouring escapes.
                j = i + 2
                while j < n and not (path[j] == '"' and path[j - 1] != "\\"):
                    j += 1
                parts.append(json.loads(path[i + 1: j + 1]))
                i = path.find("]", j) + 1 if path.find("]", j) != -1 else n
                continue
            inner = path[i + 1: end if end != -1 else n]
            parts.append(int(inner) if inner.isdigit() else inner)
            i = (end + 1) if end != -1 else n
        else:
            token += ch
            i += 1
    if token:
        parts.append(token)
    return parts


# --------------------------------------------------------------------------- internals

def _diff_tree(old: Any, new: Any, redact: bool, only: set[str] | None = None) -> list[PropertyChange]:
    out: list[PropertyChange] = []

    def walk(a: Any, b: Any, path: list[str | int]) -> None:
        if a == b:
            return
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            for key in sorted(set(a) | set(b), key=str):
                if not path and (str(key).startswith("__") or (only and key not in only)):
                    continue  # engine-internal inputs such as a dynamic provider's `__provider`
                if key not in a:
                    out.append(_change(format_path([*path, key]), "add", False, MISSING, b[key], redact))
                elif key not in b:
                    out.append(_change(format_path([*path, key]), "delete", False, a[key], MISSING, redact))
                else:
                    walk(a[key], b[key], [*path, key])
            return
        if isinstance(a, list) and isinstance(b, list):
            for index in range(max(len(a), len(b))):
                if index >= len(a):
                    out.append(_change(format_path([*path, index]), "add", False, MISSING, b[index], redact))
                elif index >= len(b):
                    out.append(_change(format_path([*path, index]), "delete", False, a[index], MISSING, redact))
                else:
                    walk(a[index], b[index], [*path, index])
            return
        out.append(_change(format_path(path) or "<root>", "update", False, a, b, redact))

    walk(old if old is not None else {}, new if new is not None else {}, [])
    return out


def _change(path: str, kind: str, replace: bool, old: Any, new: Any, redact: bool) -> PropertyChange:
    secret = redact or _looks_secret_path(path)
    return PropertyChange(
        path=path, kind=kind, replace=bool(replace),
        old=_safe(old, secret), new=_safe(new, secret),
    )


def _safe(value: Any, secret: bool) -> Any:
    if value is MISSING:
        return MISSING
    if secret or _is_secret_value(value):
        return REDACTED
    if isinstance(value, (dict, list)):
        text = json.dumps(value, sort_keys=True, default=str)
        if len(text) > _MAX_VALUE_CHARS:
            return f"<{type(value).__name__} of {len(value)} item(s)>"
        return value
    if isinstance(value, str) and len(value) > _MAX_VALUE_CHARS:
        return value[: _MAX_VALUE_CHARS - 1] + "…"
    return value


def _is_secret_value(value: Any) -> bool:
    if isinstance(value, str):
        return value in SECRET_MARKERS
    return is_encrypted(value)


def is_encrypted(value: Any) -> bool:
    """Whether `value` is an encrypted (secret) value as the engine stores it."""
    return isinstance(value, Mapping) and value.get(SECRET_SIGNATURE_KEY) == SECRET_SIGNATURE_VALUE


def looks_secret(resource_type: str, urn: str, path: str, value: Any) -> bool:
    """Whether a value at `path` of a resource must not be shown: for readers of a report
    written elsewhere (already redacted when this module wrote it)."""
    return (value == REDACTED or _is_secret_value(value) or _looks_secret_path(path)
            or _is_secret_resource(resource_type, urn, None, None))


def _looks_secret_path(path: str) -> bool:
    return any(isinstance(p, str) and _SECRET_KEY.search(p) for p in parse_path(path))


def _is_secret_resource(type_: str, urn: str, old: Any, new: Any) -> bool:
    """A Kubernetes Secret (the project's dynamic provider: `dynamic/kubernetes:Secret`)."""
    if type_.endswith(":Secret") or type_.endswith("/Secret") or "kubernetes:Secret" in urn:
        return True
    for state in (old, new):
        manifest = _props(state, "inputs").get("manifest")
        if isinstance(manifest, Mapping) and manifest.get("kind") == "Secret":
            return True
    return False


def _props(state: Any, which: str) -> dict[str, Any]:
    if state is None:
        return {}
    value = getattr(state, which, None)
    return dict(value) if isinstance(value, Mapping) else {}


def _lookup(tree: Any, parts: Sequence[str | int]) -> Any:
    node = tree
    for part in parts:
        if isinstance(node, Mapping) and part in node:
            node = node[part]
        elif isinstance(node, Mapping) and str(part) in node:
            node = node[str(part)]
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            node = node[part]
        else:
            return MISSING
    return node


def _kind(diff: Any) -> str:
    kind = getattr(diff, "diff_kind", diff)
    return str(getattr(kind, "value", kind))


def _kind_from_values(old: Any, new: Any, fallback: str) -> str:
    if old is MISSING and new is not MISSING:
        return "add"
    if new is MISSING and old is not MISSING:
        return "delete"
    if old is not MISSING and new is not MISSING:
        return "update"
    return fallback


def _is_internal(type_: str) -> bool:
    # Provider resources are bookkeeping, never a change anyone asked for.
    return type_.startswith("pulumi:providers:")
