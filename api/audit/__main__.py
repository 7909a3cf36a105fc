"""``python -m api.audit verify``: check the audit hash chain against its signed
checkpoints; exit 1 if it is broken. ``checkpoint`` signs and exports the head now."""

from __future__ import annotations

import json

import typer

from api.audit.checkpoint import checkpoint_file, signer_keys, take_checkpoint, verify_anchored
from api.auth.signing import TransitSigner
from api.db.session import Database, Scope
from api.services import Services
from api.settings import Settings
from api.vault import VaultConnection

cli = typer.Typer(help="Audit log tools.", no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)


@cli.command()
def verify() -> None:
    """Verify the whole chain and the checkpoints in the data directory (uses
    CAMELEER_DATABASE_SYSTEM_URL, CAMELEER_DATA_DIR and the Vault server for the public keys)."""
    settings = Settings()
    keys_for = signer_keys(TransitSigner.from_settings(settings, VaultConnection.from_settings(settings)))
    db = Database.from_settings(settings)
    try:
        with db.transaction(Scope.system()) as session:
            verdict = verify_anchored(session, checkpoint_file(settings.data_dir), keys_for)
    finally:
        db.dispose()
    typer.echo(json.dumps(verdict.as_dict()))
    raise typer.Exit(0 if verdict.ok else 1)


@cli.command()
def checkpoint() -> None:
    """Sign and export the chain head now (the worker does it every 10 minutes)."""
    services = Services.build(Settings())
    try:
        head = take_checkpoint(services)
    finally:
        services.db.dispose()
    typer.echo(json.dumps(None if head is None else {"id": head.id, "count": head.count, "head": head.head}))


@cli.callback()
def main() -> None:
    """Audit log tools."""


if __name__ == "__main__":
    cli(prog_name="python -m api.audit")
