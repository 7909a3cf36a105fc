"""`cameleer`: the operator's and CI's command line for the platform's stacks.

    cameleer preview acme --set image=registry/cameleer@sha256:... [--json]
    cameleer up acme --reason "raise quota, ticket 4711"
    cameleer drift --all --fix --json --parallel 4 > drift.json
    cameleer history acme --limit 20 [--json]
    cameleer stacks [--json]

A target is a stack name (`tenant-acme`, `dedicated-acme`, `shared-eu1`) or a tenant slug
(`acme` -> `tenant-acme`, or `dedicated-acme` when that is the one that exists).
With `--json`, stdout carries exactly one JSON document (schemas in automation/SCHEMA.md);
progress and messages go to stderr.

Exit codes: 0 success; 1 error; 2 (`drift` only) drift found and not fixed.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Annotated, Any, TypeVar

import click
import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from typer.core import TyperGroup

from . import render
from .drift import EXIT_ERROR, StackDriftOutcome, run_drift
from .errors import ErrorKind, OperationError
from .events import OperationEvent
from .history import UpdateMetadata
from .naming import parse_stack_name
from .operations import StackOperations
from .settings import Settings, SettingsError
from .transit import SERVICE_STACK_PREFIXES
from .workspace import Secret, parse_assignment

app = typer.Typer(
    name="cameleer",
    help="Preview, apply, drift-check and audit the Cameleer platform's Pulumi stacks.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
out = Console()  # stdout: results
err = Console(stderr=True, soft_wrap=True)  # stderr: progress, messages, errors (unwrapped for logs)

F = TypeVar("F", bound=Callable[..., Any])

JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document (see SCHEMA.md) to stdout.")]
SetOpt = Annotated[
    list[str] | None,
    typer.Option("--set", help="Config override key=value (key without namespace means cameleer:key); "
                               "JSON lists/objects/numbers/booleans are parsed. Repeatable."),
]
SecretOpt = Annotated[
    list[str] | None,
    typer.Option("--set-secret", help="Like --set, but the value is stored encrypted (pulumi config set --secret)."),
]
ActorOpt = Annotated[str | None, typer.Option("--actor", help="Who is acting (default: $CAMELEER_ACTOR or user@host).")]


def _operations(parallel: int | None = None) -> StackOperations:
    settings = Settings.from_env()
    if parallel is not None and parallel > settings.max_concurrent_operations:
        settings = settings.with_overrides(max_concurrent_operations=parallel)
    return StackOperations(settings)


def _emit_json(payload: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(payload, indent=2, sort_keys=False, default=str) + "\n")
    sys.stdout.flush()


def _fail(error: OperationError, *, as_json: bool, schema: str, extra: dict[str, Any] | None = None) -> None:
    if as_json:
        _emit_json({"schema": schema, "ok": False, **(extra or {}), "error": error.to_dict()})
    err.print(f"[red]error[/red] {escape(str(error))}")
    if error.policy_violations:
        err.print(render.policy_table(error.policy_violations, {}))
    if error.kind is ErrorKind.UNKNOWN and error.detail:
        err.print(error.detail, style="dim", highlight=False, markup=False)
    raise typer.Exit(EXIT_ERROR)


def handles_errors(schema: str) -> Callable[[F], F]:
    """Turn classified errors into a message (and a JSON error document) and exit 1."""
    def decorate(fn: F) -> F:
        @wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            as_json = bool(kwargs.get("as_json"))
            try:
                return fn(*args, **kwargs)
            except OperationError as error:
                _fail(error, as_json=as_json, schema=schema)
            except SettingsError as exc:
                _fail(OperationError(ErrorKind.CONFIG, str(exc)), as_json=as_json, schema=schema)
        return wrapper  # type: ignore[return-value]
    return decorate


def _progress_listener(status: Any) -> Callable[[OperationEvent], None]:
    def listen(event: OperationEvent) -> None:
        if event.type in ("resource-pre", "resource-outputs") and event.urn:
            status.update(f"{event.operation} {event.stack}: {event.op} {event.urn.rsplit('::', 1)[-1]}")
        elif event.type in ("retry", "recovery") and event.message:
            err.print(f"[yellow]{event.type}[/yellow] {event.stack}: {event.message}")
    return listen


def _overrides(assignments: list[str] | None, secrets: list[str] | None = None) -> dict[str, Any]:
    values: dict[str, Any] = dict(parse_assignment(a) for a in assignments or [])
    for assignment in secrets or []:
        key, _, raw = assignment.partition("=")
        if not _ or not key.strip():
            raise OperationError(ErrorKind.CONFIG, "expected --set-secret key=value")
        values[key.strip()] = Secret(raw)
    return values


@app.command()
@handles_errors("cameleer.preview/v1")
def preview(
    target: Annotated[str, typer.Argument(help="Stack name or tenant slug.")],
    set_: SetOpt = None,
    set_secret: SecretOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Show what an update would change (per resource and property) and the policy verdicts.

    --set overrides apply to this preview only; nothing is written."""
    ops = _operations()
    stack = ops.resolve(target)
    overrides = _overrides(set_, set_secret)
    with err.status(f"previewing {stack}") as status:
        try:
            result = ops.preview(stack, config=overrides, on_event=_progress_listener(status))
        except OperationError as error:
            _fail(error, as_json=as_json, schema="cameleer.preview/v1", extra={"stack": stack})
    if as_json:
        _emit_json({"schema": "cameleer.preview/v1", "ok": True, **result.to_dict(), "error": None})
    else:
        out.print(render.preview(result))


@app.command()
@handles_errors("cameleer.update/v1")
def up(
    target: Annotated[str, typer.Argument(help="Stack name or tenant slug.")],
    reason: Annotated[str, typer.Option("--reason", help="Why: recorded in the stack's history.")],
    set_: SetOpt = None,
    set_secret: SecretOpt = None,
    actor: ActorOpt = None,
    create: Annotated[bool, typer.Option(
        "--create", help="Create the stack if it does not exist (implied when its settings file exists).")] = False,
    refresh: Annotated[bool, typer.Option("--refresh", help="Refresh the state from the cluster first.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Apply the stack (config from --set/--set-secret is written to the stack's settings file first)."""
    if not reason.strip():
        raise OperationError(ErrorKind.CONFIG, "--reason must say why")
    ops = _operations()
    stack = parse_stack_name(target).name if create else ops.resolve(target)
    # A committed settings file is enough to bring a new stack up; it stays where it is.
    committed = ops.factory.config_file(stack).is_relative_to(ops.settings.stack_config_dir) \
        and ops.factory.config_file(stack).exists()
    meta = UpdateMetadata(actor or ops.settings.actor, reason, kind="operator")
    with err.status(f"updating {stack}") as status:
        result = ops.up(stack, meta, config=_overrides(set_, set_secret) or None, create=create or committed,
                        in_repository=committed, refresh=refresh, on_event=_progress_listener(status))
    if as_json:
        _emit_json({"schema": "cameleer.update/v1", "ok": True, **result.to_dict(), "error": None})
    else:
        out.print(render.update(result))


class _DefaultCheck(TyperGroup):
    """`cameleer drift ...` means `cameleer drift check ...` unless a subcommand is named."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if not args or (args[0] not in self.commands and args[0] not in ("--help", "-h")):
            args = ["check", *args]
        return super().parse_args(ctx, args)


drift_app = typer.Typer(cls=_DefaultCheck, no_args_is_help=False, add_completion=False,
                        help="Check stacks for drift (default), or watch the clusters for it.")
app.add_typer(drift_app, name="drift")


@drift_app.command("check")
def drift(
    targets: Annotated[list[str] | None, typer.Argument(help="Stack names or tenant slugs.")] = None,
    all_: Annotated[bool, typer.Option("--all", help="Every stack in the backend.")] = False,
    fix: Annotated[bool, typer.Option("--fix", help="Correct drifted stacks (reason: drift correction).")] = False,
    as_json: JsonOpt = False,
    parallel: Annotated[int, typer.Option("--parallel", min=1, max=32, help="Stacks checked at once.")] = 1,
    actor: ActorOpt = None,
    report: Annotated[Path | None, typer.Option("--report", help="Also write the JSON report to this file.")] = None,
    full: Annotated[bool, typer.Option("--full", help="No pre-check: the engine checks every stack.")] = False,
) -> None:
    """Compare stacks with their clusters. Exit 0: no drift; 2: drift not fixed; 1: error.

    A pre-check compares every stack's state with the live objects first (no engine); the
    engine's per-property check runs only for the stacks it could not prove clean."""
    try:
        ops = _operations(parallel)
        if all_ == bool(targets):
            raise OperationError(ErrorKind.CONFIG, "name stacks/tenants, or pass --all (not both)")
        stacks = ops.stack_names() if all_ else list(dict.fromkeys(ops.resolve(t) for t in targets or []))
    except (OperationError, SettingsError) as exc:
        error = exc if isinstance(exc, OperationError) else OperationError(ErrorKind.CONFIG, str(exc))
        _fail(error, as_json=as_json, schema="cameleer.drift/v1")
        return
    meta = UpdateMetadata(actor or ops.settings.actor, "drift correction", kind="drift-correction") if fix else None

    progress = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                        TimeElapsedColumn(), console=err, transient=as_json)
    with progress:
        task = progress.add_task("drift check" + (" + fix" if fix else ""), total=len(stacks))

        def done(outcome: StackDriftOutcome) -> None:
            progress.advance(task)
            via = " (pre-check)" if outcome.checked_by == "precheck" else ""
            progress.console.print(f"{outcome.stack}: {outcome.status}{via}",
                                   style=render.STATUS_STYLE.get(outcome.status))

        run = run_drift(ops, stacks, fix=fix, parallel=parallel, metadata=meta, on_stack_done=done, full=full)

    payload = run.to_dict()
    if report is not None:
        report.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    if as_json:
        _emit_json(payload)
    else:
        out.print(render.drift_run(run))
    raise typer.Exit(run.exit_code)


@drift_app.command("watch")
@handles_errors("cameleer.drift-watch/v1")
def drift_watch(
    fix: Annotated[bool, typer.Option("--fix", help="Correct every drifted stack (otherwise only stacks "
                                                    "whose cameleer:driftCorrection is auto).")] = False,
    fix_interval: Annotated[float, typer.Option("--fix-interval", min=0,
                                                help="At most one correction per stack in this many seconds.")] = 600,
    resync: Annotated[float, typer.Option("--resync", min=1, help="Seconds between checkpoint and "
                                                                  "database re-reads.")] = 30,
    metrics_port: Annotated[int | None, typer.Option("--metrics-port", help="Serve Prometheus metrics here.")] = None,
    shard: Annotated[str, typer.Option("--shard", help="I/N: watch only the clusters whose name hashes to I "
                                                       "modulo N (one watcher per shard).")] = "0/1",
    as_json: JsonOpt = False,
) -> None:
    """Keep list/watch on every cluster the stacks use; report each drift within seconds.

    Runs until interrupted. With --json, one JSON document per line (schema
    cameleer.drift-watch/v1): ready, drifted, cleared, correction, error."""
    from .watch import DriftWatcher, WatchEvent, parse_shard, watch_metrics

    metrics = watch_metrics(metrics_port)

    def sink(event: WatchEvent) -> None:
        metrics(event)
        if as_json:
            sys.stdout.write(json.dumps(event.to_dict(), default=str) + "\n")
            sys.stdout.flush()
        else:
            detail = "; ".join(str(f) for f in event.findings) or event.detail
            err.print(f"{event.at:%H:%M:%S} {event.event} {event.stack or ''} {escape(detail)}".rstrip())

    watcher = DriftWatcher(_operations(), sink, fix_all=fix, fix_interval=fix_interval, resync_seconds=resync,
                           shard=parse_shard(shard))
    try:
        watcher.run()
    except KeyboardInterrupt:
        watcher.stop()


@app.command()
@handles_errors("cameleer.history/v1")
def history(
    target: Annotated[str, typer.Argument(help="Stack name or tenant slug.")],
    limit: Annotated[int | None, typer.Option("--limit", min=1, help="Newest N entries.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Who changed the stack, when, why, and what changed."""
    ops = _operations()
    stack = ops.resolve(target)
    entries = ops.history(stack, limit=limit)
    if as_json:
        _emit_json({"schema": "cameleer.history/v1", "ok": True, "stack": stack,
                    "entries": [e.to_dict() for e in entries], "error": None})
    else:
        out.print(render.history(stack, entries))


@app.command()
@handles_errors("cameleer.stacks/v1")
def stacks(as_json: JsonOpt = False) -> None:
    """Every stack with its kind, tier, last update and its result."""
    ops = _operations()
    infos = ops.list_stacks()
    if as_json:
        _emit_json({"schema": "cameleer.stacks/v1", "ok": True,
                    "stacks": [i.to_dict() for i in infos], "error": None})
    else:
        out.print(render.stacks(infos))


@app.command()
@handles_errors("cameleer.update/v1")
def refresh(
    target: Annotated[str, typer.Argument(help="Stack name or tenant slug.")],
    reason: Annotated[str, typer.Option("--reason", help="Why: recorded in the stack's history.")],
    actor: ActorOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Adopt the cluster's live state into the stack's state (changes nothing in the cluster)."""
    ops = _operations()
    stack = ops.resolve(target)
    with err.status(f"refreshing {stack}") as status:
        result = ops.refresh(stack, UpdateMetadata(actor or ops.settings.actor, reason, kind="operator"),
                             on_event=_progress_listener(status))
    if as_json:
        _emit_json({"schema": "cameleer.update/v1", "ok": True, **result.to_dict(), "error": None})
    else:
        out.print(render.update(result))


@app.command()
@handles_errors("cameleer.update/v1")
def destroy(
    target: Annotated[str, typer.Argument(help="Full stack name (a slug is not enough here).")],
    reason: Annotated[str, typer.Option("--reason", help="Why: recorded in the stack's history.")],
    yes: Annotated[bool, typer.Option("--yes", help="Really delete every resource of the stack.")] = False,
    keep_stack: Annotated[bool, typer.Option("--keep-stack", help="Keep the (empty) stack and its history.")] = False,
    actor: ActorOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Delete every resource of a stack, then remove the stack."""
    ops = _operations()
    stack = ops.resolve(target)
    if stack != target:
        raise OperationError(ErrorKind.CONFIG, f"destroy needs the full stack name ({stack}), not a slug")
    if not yes:
        raise OperationError(ErrorKind.CONFIG, "destroy deletes every resource of the stack: pass --yes")
    with err.status(f"destroying {stack}") as status:
        result = ops.destroy(stack, UpdateMetadata(actor or ops.settings.actor, reason, kind="operator"),
                             remove=not keep_stack, on_event=_progress_listener(status))
    if as_json:
        _emit_json({"schema": "cameleer.update/v1", "ok": True, **result.to_dict(), "error": None})
    else:
        out.print(render.update(result))


@app.command()
@handles_errors("cameleer.recovery/v1")
def recover(
    target: Annotated[str, typer.Argument(help="Stack name or tenant slug.")],
    actor: ActorOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Remove a dead process's lock and pending operations from a stack (live locks are left alone)."""
    ops = _operations()
    stack = ops.resolve(target)
    meta = UpdateMetadata(actor or ops.settings.actor, "recovery after an interrupted operation", kind="recovery")
    report = ops.recover(stack, meta)
    if as_json:
        _emit_json({"schema": "cameleer.recovery/v1", "ok": True, **report.to_dict(), "error": None})
    else:
        out.print(f"{stack}: {report.summary()}")


@app.command("secrets-migrate")
@handles_errors("cameleer.secrets/v1")
def secrets_migrate(
    targets: Annotated[list[str] | None, typer.Argument(help="Stack names or tenant slugs.")] = None,
    all_: Annotated[bool, typer.Option("--all", help="Every service stack (tenant-*, dedicated-*).")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Move service stacks from the shared passphrase to their own transit key."""
    ops = _operations()
    if bool(targets) == all_:
        raise OperationError(ErrorKind.CONFIG, "name the stacks to migrate, or pass --all (not both)")
    stacks = ([s for s in ops.stack_names() if s.startswith(SERVICE_STACK_PREFIXES)] if all_
              else [ops.resolve(t) for t in targets or []])
    outcomes = {stack: ops.migrate_secrets(stack) for stack in stacks}
    if as_json:
        _emit_json({"schema": "cameleer.secrets/v1", "ok": True, "stacks": outcomes, "error": None})
    else:
        for stack, outcome in outcomes.items():
            out.print(f"{stack}: {outcome}")


@app.command("export")
@handles_errors("cameleer.state/v1")
def export_(
    target: Annotated[str, typer.Argument(help="Stack name or tenant slug.")],
    file: Annotated[Path | None, typer.Option("--file", help="Write here instead of stdout.")] = None,
) -> None:
    """Export the stack's state (a `pulumi stack export` document; secrets stay encrypted)."""
    ops = _operations()
    state = ops.export_state(ops.resolve(target))
    text = json.dumps(state, indent=2) + "\n"
    if file is None:
        sys.stdout.write(text)
    else:
        file.write_text(text)
        err.print(f"wrote {file}")


@app.command("import")
@handles_errors("cameleer.state/v1")
def import_(
    target: Annotated[str, typer.Argument(help="Full stack name.")],
    file: Annotated[Path, typer.Argument(help="A document written by `cameleer export`.")],
) -> None:
    """Replace a stack's state with an exported one."""
    ops = _operations()
    state = json.loads(file.read_text())
    ops.import_state(target, state)
    err.print(f"imported {file} into {target}")


def main() -> None:  # pragma: no cover - console entry point is `app`
    logging.basicConfig(level=logging.WARNING)
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
