"""``python -m api.audit verify``: check the audit hash chain; exit 1 if it is broken."""

from __future__ import annotations

import json

import typer

from api.audit.chain import verify_chain
from api.db.session import Database, Scope
from api.settings import Settings

cli = typer.Typer(help="Audit log tools.", no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)


@cli.command()
def verify() -> None:
    """Verify the whole chain (uses CAMELEER_DATABASE_URL)."""
    db = Database(Settings().app_dsn())
    try:
        with db.transaction(Scope.system()) as session:
            verdict = verify_chain(session)
    finally:
        db.dispose()
    typer.echo(json.dumps(verdict.as_dict()))
    raise typer.Exit(0 if verdict.ok else 1)


@cli.callback()
def main() -> None:
    """Audit log tools."""


if __name__ == "__main__":
    cli(prog_name="python -m api.audit")
