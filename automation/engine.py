"""Engine commands for a stack, with no more CLI round trips than the operation needs.

The Automation API's `Stack` pays for conveniences on every call: selecting a stack is a
`pulumi stack select` process, and `up`/`refresh`/`destroy` each run `pulumi stack history`
afterwards (and `up` two `pulumi stack output` calls) to build their result. Measured on
this project (benchmarks/automation_bench.py) that was +1.3 s on a 2.3 s no-change update.
This module keeps the SDK's own command line, event stream and error types, and drops the
extra processes:

* `attach()` gives a `Stack` for an existing stack without selecting it; if the stack does
  not exist the operation itself fails with the SDK's `StackNotFoundError`;
* `update()`, `refresh()`, `destroy()` run the one engine process; what happened is
  read from the event stream (the summary event), which the caller captures anyway;
* `outputs()` is there for the callers who want outputs, at the price of two processes.

It relies on two helpers the SDK keeps private (`_parse_extra_args`, `_cleanup`, and
`Stack._setup_event_log`); the SDK is pinned (pyproject.toml), and tests/integration runs
these paths against the real CLI, so an SDK upgrade that moves them fails loudly.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pulumi.automation import CommandResult, OnEvent, Stack, Workspace
from pulumi.automation._stack import ExecKind, StackInitMode, _cleanup, _parse_extra_args


class _AttachedStack(Stack):
    """A `Stack` handle made without a `pulumi stack select` round trip."""

    def __init__(self, name: str, workspace: Workspace) -> None:  # noqa: D107 - no super(): that selects
        self.name = name
        self.workspace = workspace
        self._mode = StackInitMode.SELECT


def attach(name: str, workspace: Workspace) -> Stack:
    return _AttachedStack(name, workspace)


def _run(stack: Stack, command: str, args: list[str], on_event: OnEvent | None) -> CommandResult:
    args = [*args, "--exec-kind", ExecKind.LOCAL.value]
    log_file = thread = stop_event = temp_dir = server = None
    if on_event is not None:
        log_file, thread, stop_event, temp_dir, server = stack._setup_event_log(
            command, on_event, stack.workspace.pulumi_version)
        args += ["--event-log", log_file]
    try:
        return stack._run_pulumi_cmd_sync(args)
    finally:
        _cleanup(temp_dir, thread, stop_event, None, server)


def update(stack: Stack, *, message: str, policy_packs: Sequence[str] = (), refresh: bool = False,
           on_event: OnEvent | None = None, parallel: int | None = None,
           config_file: str | None = None) -> CommandResult:
    """`pulumi up --yes --skip-preview` with the given flags, one process."""
    extra = _parse_extra_args(message=message, policy_packs=list(policy_packs) or None, refresh=refresh or None,
                              color="never", suppress_progress=True, parallel=parallel,
                              config_file=config_file)
    return _run(stack, "up", ["up", "--yes", "--skip-preview", *extra], on_event)


def refresh(stack: Stack, *, message: str, on_event: OnEvent | None = None,
            clear_pending_creates: bool = False, config_file: str | None = None) -> CommandResult:
    """`pulumi refresh --yes --skip-preview`, one process."""
    extra = _parse_extra_args(message=message, color="never", suppress_progress=True,
                              clear_pending_creates=clear_pending_creates or None, config_file=config_file)
    return _run(stack, "refresh", ["refresh", "--yes", "--skip-preview", *extra], on_event)


def destroy(stack: Stack, *, message: str, on_event: OnEvent | None = None,
            config_file: str | None = None) -> CommandResult:
    """`pulumi destroy --yes --skip-preview`, one process."""
    extra = _parse_extra_args(message=message, color="never", suppress_progress=True, config_file=config_file)
    return _run(stack, "destroy", ["destroy", "--yes", "--skip-preview", *extra], on_event)


def outputs(stack: Stack) -> dict[str, Any]:
    """The stack's outputs, secrets masked as "[secret]"."""
    return {key: ("[secret]" if value.secret else value.value) for key, value in stack.outputs().items()}
