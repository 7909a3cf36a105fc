"""Runs one Pulumi Python program for the language host (the role of `pulumi-language-python-exec`).

Arguments and environment follow the Go host's contract: resource monitor and engine
addresses, project, stack, organization, dry-run and parallelism as flags; configuration as
JSON in PULUMI_CONFIG and the secret keys in PULUMI_CONFIG_SECRET_KEYS.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import runpy
import signal
import sys
import traceback

import pulumi
import pulumi.runtime

BAIL_EXIT_CODE = 32


def _parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Execute a Pulumi Python program")
    for flag in ("project", "stack", "parallel", "dry_run", "pwd", "monitor", "engine", "organization", "tracing"):
        parser.add_argument(f"--{flag}")
    parser.add_argument("PROGRAM")
    parser.add_argument("ARGS", nargs="*")
    return parser.parse_args()


def _exit_on_cancel(signum, frame) -> None:
    """The engine interrupts a program it no longer needs (e.g. a preview a policy blocked)."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(BAIL_EXIT_CODE)


def main() -> int:
    signal.signal(signal.SIGINT, _exit_on_cancel)
    args = _parse_args()
    pulumi.runtime.set_all_config(pulumi.runtime.get_config_env(), pulumi.runtime.get_config_secret_keys_env())
    pulumi.runtime.configure(
        pulumi.runtime.Settings(
            monitor=args.monitor,
            engine=args.engine,
            project=args.project,
            stack=args.stack,
            parallel=int(args.parallel or 0) or None,
            dry_run=args.dry_run == "true",
            organization=args.organization or "organization",
        )
    )
    if args.pwd:
        os.chdir(args.pwd)
    program = args.PROGRAM
    # A directory program runs its __main__.py with the directory importable, as `python <dir>` would.
    if os.path.isdir(program):
        sys.path.insert(0, os.path.abspath(program))
    sys.argv = [program, *args.ARGS]

    # The SDK leaves futures unobserved when a program fails part-way; asyncio's complaints
    # about them are noise, as in Pulumi's own exec script.
    logging.getLogger("asyncio").setLevel(logging.CRITICAL)
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        loop.run_until_complete(pulumi.runtime.run_in_stack(lambda: runpy.run_path(program, run_name="__main__")))
        return 0
    except pulumi.RunError as error:
        pulumi.log.error(str(error))
    except Exception:  # noqa: BLE001 - every program failure is reported to the engine
        pulumi.log.error("Program failed with an unhandled exception:\n" + traceback.format_exc())
    finally:
        loop.close()
        sys.stdout.flush()
        sys.stderr.flush()
    return BAIL_EXIT_CODE


if __name__ == "__main__":
    sys.exit(main())
