"""Who changed a stack, when, and why: writing it into every update and reading it back.

The Pulumi CLI records, for each update, a free-text `message` and an `environment` map it
fills itself (git.*, exec.kind, pulumi.version, the names of set PULUMI_* variables, and
CI metadata). It takes no arbitrary key/value metadata, so the automation layer uses the
two channels the CLI does offer (verified in the v3.259.0 sources,
`pkg/cmd/pulumi/metadata` and `sdk/go/common/util/ciutil/generic.go`):

* the message, as a structured line that stays readable in `pulumi stack history`:
  `[cameleer] who=<actor> op=<operation id> why=<reason>` (why last: it may hold spaces);
* the CLI's "generic CI" variables, which it copies into the update's environment map:
  `PULUMI_CI_SYSTEM=cameleer` -> `ci.system`, `PULUMI_CI_BUILD_ID=<operation id>` ->
  `ci.build.id`, `PULUMI_CI_BUILD_TYPE=<kind>` -> `ci.build.type`, and
  `PULUMI_CI_BUILD_URL` -> `ci.build.url` when the caller has a link (a CI run).

`parse_entry()` reads both back; an update made by hand with `pulumi up -m "..."` has no
`[cameleer]` marker and shows its plain message with who/why unknown.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

MARKER = "[cameleer]"
CI_SYSTEM = "cameleer"
_MESSAGE = re.compile(
    r"^\[cameleer\] who=(?P<who>\S+)(?: op=(?P<op>\S+))?(?: kind=(?P<kind>\S+))? why=(?P<why>.*)$",
    re.DOTALL,
)
_MAX_REASON = 500
# The environment keys worth showing an auditor; the rest is engine trivia.
AUDIT_ENVIRONMENT_KEYS = (
    "ci.system", "ci.build.id", "ci.build.type", "ci.build.url",
    "exec.kind", "exec.agent", "pulumi.version",
    "git.head", "git.headName", "git.author", "git.committer", "git.dirty",
    "pulumi.flag.policy-pack", "pulumi.flag.refresh", "pulumi.flag.target",
)


@dataclass(frozen=True)
class UpdateMetadata:
    """The who and why an operation carries into the stack's history."""

    actor: str
    reason: str
    operation_id: str | None = None
    kind: str | None = None  # e.g. "signup", "drift-correction", "operator"
    url: str | None = None

    def __post_init__(self) -> None:
        if not self.actor or not self.actor.strip():
            raise ValueError("an update needs an actor (who)")
        if not self.reason or not self.reason.strip():
            raise ValueError("an update needs a reason (why)")

    def message(self) -> str:
        parts = [MARKER, f"who={_token(self.actor)}"]
        if self.operation_id:
            parts.append(f"op={_token(self.operation_id)}")
        if self.kind:
            parts.append(f"kind={_token(self.kind)}")
        parts.append(f"why={_reason(self.reason)}")
        return " ".join(parts)

    def env_vars(self) -> dict[str, str]:
        env = {"PULUMI_CI_SYSTEM": CI_SYSTEM}
        if self.operation_id:
            env["PULUMI_CI_BUILD_ID"] = self.operation_id
        if self.kind:
            env["PULUMI_CI_BUILD_TYPE"] = self.kind
        if self.url:
            env["PULUMI_CI_BUILD_URL"] = self.url
        return env

    @classmethod
    def parse(cls, message: str | None) -> UpdateMetadata | None:
        if not message:
            return None
        match = _MESSAGE.match(message.strip())
        if not match:
            return None
        return cls(actor=match["who"], reason=match["why"].strip() or "-",
                   operation_id=match["op"], kind=match["kind"])


@dataclass(frozen=True)
class HistoryEntry:
    version: int | None
    kind: str  # update | preview | refresh | destroy | import | ...
    result: str  # succeeded | failed | in-progress
    started_at: datetime | None
    ended_at: datetime | None
    message: str
    actor: str | None
    reason: str | None
    operation_id: str | None
    change_kind: str | None
    resource_changes: Mapping[str, int] = field(default_factory=dict)
    environment: Mapping[str, str] = field(default_factory=dict)

    @property
    def duration_seconds(self) -> float | None:
        if self.started_at and self.ended_at:
            return (self.ended_at - self.started_at).total_seconds()
        return None

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "kind": self.kind,
            "result": self.result,
            "started_at": _iso(self.started_at),
            "ended_at": _iso(self.ended_at),
            "duration_seconds": self.duration_seconds,
            "actor": self.actor,
            "reason": self.reason,
            "operation_id": self.operation_id,
            "change_kind": self.change_kind,
            "message": self.message,
            "resource_changes": dict(self.resource_changes),
            "environment": dict(self.environment),
        }


def parse_entry(raw: Mapping[str, Any]) -> HistoryEntry:
    """One element of `pulumi stack history --json` as a `HistoryEntry`."""
    message = raw.get("message") or ""
    environment = raw.get("environment") or {}
    meta = UpdateMetadata.parse(message)
    ours = environment.get("ci.system") == CI_SYSTEM
    operation_id = (meta.operation_id if meta else None) or (environment.get("ci.build.id") if ours else None)
    change_kind = (meta.kind if meta else None) or (environment.get("ci.build.type") if ours else None)
    return HistoryEntry(
        version=raw.get("version"),
        kind=str(raw.get("kind", "")),
        result=str(raw.get("result", "")),
        started_at=parse_time(raw.get("startTime")),
        ended_at=parse_time(raw.get("endTime")),
        message=message,
        actor=meta.actor if meta else None,
        reason=meta.reason if meta else None,
        operation_id=operation_id,
        change_kind=change_kind,
        resource_changes={str(k): int(v) for k, v in (raw.get("resourceChanges") or {}).items()},
        environment={k: str(environment[k]) for k in AUDIT_ENVIRONMENT_KEYS if k in environment},
    )


def parse_history(raw: list[Mapping[str, Any]]) -> list[HistoryEntry]:
    """Newest first, as the CLI returns it.

    The DIY backends (file, postgres) record every update with version 0; when the whole
    history is given and no entry has a real version, entries are numbered 1.. from the
    oldest, which is what the Pulumi Cloud backend would have called them.
    """
    entries = [parse_entry(item) for item in raw]
    if entries and all(not e.version for e in entries):
        total = len(entries)
        entries = [dataclasses.replace(e, version=total - i) for i, e in enumerate(entries)]
    return entries


def parse_time(value: Any) -> datetime | None:
    """The CLI writes times as RFC 3339 (`2025-11-23T10:41:07Z`, offsets, fractions)."""
    if not value:
        return None
    if isinstance(value, (int, float)):
        return datetime.fromtimestamp(value, tz=timezone.utc)
    text = str(value).strip()
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    # Python 3.11 accepts at most 6 fractional digits; Go writes up to 9.
    text = re.sub(r"(\.\d{6})\d+", r"\1", text)
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def _iso(value: datetime | None) -> str | None:
    return value.astimezone(timezone.utc).isoformat().replace("+00:00", "Z") if value else None


def _token(value: str) -> str:
    return re.sub(r"\s+", "_", value.strip())


def _reason(value: str) -> str:
    text = " ".join(value.split())
    return text if len(text) <= _MAX_REASON else text[: _MAX_REASON - 1] + "…"
