"""``python -m api.licensing verify <file> --jwks <path-or-url>`` (the license JWKS, a file or
the API's ``/.well-known/license-jwks.json``).

Prints the verdict as JSON. Exit codes: 0 valid (or within the offline grace),
2 restricted (suspended, or expired within the read-only grace), 1 invalid,
3 the public keys could not be loaded.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Annotated

import httpx
import typer

from api.licensing.verify import LicenseState, keys_from_jwks, verify_license

cli = typer.Typer(help="License tools.", no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)

EXIT_CODES = {
    LicenseState.VALID: 0,
    LicenseState.OFFLINE_GRACE: 0,
    LicenseState.SUSPENDED: 2,
    LicenseState.GRACE_READ_ONLY: 2,
    LicenseState.INVALID: 1,
}


def _load_jwks(source: str) -> tuple[dict | None, bool]:
    """The JWKS, and whether the licensing API answered (False for a URL that failed)."""
    if source.startswith(("http://", "https://")):
        try:
            response = httpx.get(source, timeout=10)
            response.raise_for_status()
            return response.json(), True
        except httpx.HTTPError:
            return None, False
    return json.loads(Path(source).read_text()), True


@cli.command()
def verify(
    license_file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="The license JWT file")],
    jwks: Annotated[str, typer.Option(help="JWKS file, or the API's /.well-known/license-jwks.json URL")],
    jwks_cache: Annotated[Path | None, typer.Option(help="JWKS file to use when the URL cannot be reached")] = None,
    last_check: Annotated[datetime | None, typer.Option(help="Time of the last successful online check (ISO 8601, UTC)")] = None,
    offline: Annotated[bool, typer.Option(help="Treat the licensing API as unreachable")] = False,
) -> None:
    """Check a license's signature, expiry and status."""
    document, reachable = _load_jwks(jwks)
    if document is None and jwks_cache is not None:
        document = json.loads(jwks_cache.read_text())
    if document is None:
        typer.echo(json.dumps({"state": "unknown", "reason": f"cannot load public keys from {jwks}"}))
        raise typer.Exit(3)
    verdict = verify_license(
        license_file.read_text(),
        keys_from_jwks(document),
        api_reachable=reachable and not offline,
        last_successful_check=last_check.astimezone() if last_check else None,
    )
    typer.echo(json.dumps(verdict.as_dict()))
    raise typer.Exit(EXIT_CODES[verdict.state])


@cli.callback()
def main() -> None:
    """License tools."""


if __name__ == "__main__":
    cli(prog_name="python -m api.licensing")
