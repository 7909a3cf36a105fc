"""Human renderings (Rich) of previews, drift reports, histories and stack lists.

The JSON outputs (see SCHEMA.md) are the machine interface; these are for people, and
may change shape freely.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text
from rich.tree import Tree

from .changes import MISSING, ResourceChange
from .drift import CLEAN, DRIFTED, ERROR, FIXED, DriftRun
from .events import PolicyViolation
from .history import HistoryEntry
from .operations import OperationResult, StackInfo

def table(title: str, *columns: str) -> Table:
    """A left-titled table whose cells fold long values instead of cutting them off."""
    out = Table(title=title, title_justify="left")
    for column in columns:
        out.add_column(column, overflow="fold")
    return out


OP_STYLE = {
    "create": ("+", "green"),
    "update": ("~", "yellow"),
    "replace": ("+-", "magenta"),
    "delete": ("-", "red"),
    "same": (" ", "dim"),
    "read": (">", "cyan"),
    "import": ("=", "cyan"),
}
STATUS_STYLE = {CLEAN: "green", FIXED: "cyan", DRIFTED: "yellow", ERROR: "red"}


def value(v: Any) -> str:
    if v is MISSING:
        return "∅"
    if isinstance(v, str):
        return json.dumps(v)
    return json.dumps(v, sort_keys=True, default=str)


def changes_tree(title: str, changes: Sequence[ResourceChange], *, show_same: bool = False,
                 old_label: str = "", new_label: str = "") -> Tree:
    tree = Tree(Text(title, style="bold"))
    shown = [c for c in changes if show_same or c.changed]
    if not shown:
        tree.add(Text("no changes", style="green"))
        return tree
    for change in shown:
        symbol, style = OP_STYLE.get(change.op, ("?", "white"))
        node = tree.add(Text.assemble((f"{symbol} {change.op:<8}", style), " ",
                                      (change.type, "dim"), " ", (change.name, "bold")))
        for prop in change.properties:
            line = Text.assemble((prop.path, "bold"), f" ({prop.kind}{', forces replace' if prop.replace else ''})")
            if prop.old is not MISSING or prop.new is not MISSING:
                line.append(f": {old_label}{value(prop.old)} → {new_label}{value(prop.new)}")
            node.add(line)
    return tree


def policy_table(violations: Iterable[PolicyViolation], packs: dict[str, str]) -> RenderableType:
    violations = list(violations)
    if not violations:
        label = ", ".join(f"{k}@{v}" for k, v in packs.items()) or "policy packs"
        return Text(f"Policies: {label}: no violations", style="green")
    out = table("Policy violations", "level", "policy", "resource", "message")
    for v in violations:
        out.add_row(Text(v.enforcement_level, style="red" if v.mandatory else "yellow"),
                    f"{v.policy_pack}/{v.policy}", (v.urn or "").rsplit("::", 1)[-1], v.message)
    return out


def preview(result: OperationResult) -> RenderableType:
    counts = ", ".join(f"{n} {op}" for op, n in sorted(result.resource_changes.items())) or "nothing"
    return Group(
        changes_tree(f"Preview of {result.stack}", result.changes),
        Text(f"Resources: {counts}  ({result.duration_seconds:.1f} s)"),
        policy_table(result.policy_violations, result.policy_packs),
    )


def update(result: OperationResult) -> RenderableType:
    counts = ", ".join(f"{n} {op}" for op, n in sorted(result.resource_changes.items())) or "nothing"
    parts: list[RenderableType] = [
        changes_tree(f"{result.operation.capitalize()} of {result.stack}", result.changes),
        Text(f"Resources: {counts}  ({result.duration_seconds:.1f} s)"),
    ]
    if result.recovery is not None:
        parts.append(Text(f"Recovered first: {result.recovery.summary()}", style="yellow"))
    return Group(*parts)


def drift_run(run: DriftRun) -> RenderableType:
    out = table("Drift", "stack", "status", "resource", "property", "expected (state)", "actual (cluster)")
    for outcome in run.outcomes:
        style = STATUS_STYLE.get(outcome.status, "white")
        if outcome.error is not None:
            out.add_row(outcome.stack, Text(outcome.status, style=style),
                          Text(f"[{outcome.error.kind.value}] {outcome.error.message}", style="red"), "", "", "")
            continue
        resources = outcome.drift.resources if outcome.drift else []
        if not resources:
            out.add_row(outcome.stack, Text(outcome.status, style=style), "", "", "", "")
            continue
        first = True
        for resource in resources:
            props = resource.properties or [None]
            for prop in props:
                out.add_row(
                    outcome.stack if first else "",
                    Text(outcome.status, style=style) if first else "",
                    f"{resource.op} {resource.name}",
                    prop.path if prop else "",
                    value(prop.old) if prop else "",
                    value(prop.new) if prop else "",
                )
                first = False
    summary = Text(
        f"{len(run.outcomes)} stack(s): {run.count(CLEAN)} clean, {run.count(DRIFTED)} drifted, "
        f"{run.count(FIXED)} fixed, {run.count(ERROR)} failed"
    )
    return Group(out, summary)


def history(stack: str, entries: Sequence[HistoryEntry]) -> RenderableType:
    out = table(f"History of {stack}", "version", "kind", "result", "started", "duration", "changes", "who", "why")
    for e in entries:
        changes = ", ".join(f"{n} {op}" for op, n in sorted(e.resource_changes.items()))
        out.add_row(
            str(e.version) if e.version is not None else "",
            e.kind,
            Text(e.result, style="green" if e.result == "succeeded" else "red"),
            e.started_at.strftime("%Y-%m-%d %H:%M:%S") if e.started_at else "",
            f"{e.duration_seconds:.0f} s" if e.duration_seconds is not None else "",
            changes,
            e.actor or "",
            e.reason or (e.message if not e.actor else ""),
        )
    return out


def stacks(infos: Sequence[StackInfo]) -> RenderableType:
    out = table("Stacks", "stack", "kind", "tier", "resources", "last update", "last kind", "result", "who", "why")
    for s in infos:
        out.add_row(
            s.name, s.kind or "?", s.tier or "",
            str(s.resource_count) if s.resource_count is not None else "",
            s.last_update.strftime("%Y-%m-%d %H:%M") if s.last_update else "never",
            s.last_kind or "",
            Text(s.last_result or ("in progress" if s.update_in_progress else ""),
                 style="green" if s.last_result == "succeeded" else "red"),
            s.last_actor or "", s.last_reason or "",
        )
    return out
