"""`cameleer-billing`: keep Stripe in step with the catalog, and check what was billed.

    cameleer-billing sync [--json]                  create/adopt the catalog's meters, products, prices
    cameleer-billing reconcile [--hours 48] [--json]  platform records vs meter events sent
    cameleer-billing meter [--json]                 collect, aggregate and send now (the periodic jobs)
    cameleer-billing enforce [--json]               apply billing state (suspend, reactivate, delete)

Exit codes: 0 success; 1 error; 2 (`reconcile` only) differences found.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from api.billing import metering
from api.billing.enforcement import enforce_all
from api.billing.stripe_api import BillingNotConfigured, BillingRefused, BillingUnavailable
from api.billing.sync import sync_catalog
from api.db.session import Scope
from api.services import Services
from api.settings import ServiceNotConfigured, get_settings

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__.split("\n\n")[0])
out = Console()
err = Console(stderr=True)
Json = Annotated[bool, typer.Option("--json", help="One JSON document on stdout")]


def _services() -> Services:
    try:
        return Services.build(get_settings())
    except (BillingNotConfigured, ServiceNotConfigured) as exc:
        err.print(f"[red]error:[/] {exc}")
        raise typer.Exit(1) from None


def _emit(document: object, as_json: bool, table: Table | None = None) -> None:
    if as_json:
        out.print_json(json.dumps(document, default=str))
    elif table is not None:
        out.print(table)


@app.command()
def sync(as_json: Json = False) -> None:
    """Create (or adopt) in Stripe every meter, product and price the catalog declares."""
    services = _services()
    try:
        with services.db.transaction(Scope.system()) as session:
            report = sync_catalog(session, services.billing)
    except (BillingUnavailable, BillingRefused) as exc:
        err.print(f"[red]error:[/] {exc}")
        raise typer.Exit(1) from None
    table = Table("result", "items")
    for name in ("created", "replaced", "unchanged"):
        table.add_row(name, ", ".join(getattr(report, name)) or "-")
    _emit(asdict(report), as_json, table)


@app.command()
def reconcile(hours: Annotated[int, typer.Option(min=1, max=24 * 35)] = 48, as_json: Json = False) -> None:
    """List hours whose usage record differs from the meter event sent to Stripe."""
    now = datetime.now(UTC)
    differences = metering.reconcile(_services(), now - timedelta(hours=hours), now + timedelta(hours=1), now)
    table = Table("tenant", "dimension", "hour", "recorded", "sent", "reason")
    for d in differences:
        table.add_row(str(d.tenant_id), d.dimension, d.hour.isoformat(), str(d.recorded), str(d.sent), d.reason)
    _emit([asdict(d) for d in differences], as_json, table)
    if differences:
        raise typer.Exit(2)


@app.command()
def meter(as_json: Json = False) -> None:
    """Sample reservations now, aggregate the last day and send the complete hours."""
    services = _services()
    samples = metering.collect(services, metering.kube_client_for_cluster)
    sent = metering.run_hourly(services)
    _emit({"samples": samples, "sent": sent}, as_json)
    if not as_json:
        out.print(f"{samples} samples recorded, {sent} hours sent")


@app.command()
def enforce(as_json: Json = False) -> None:
    """Start the suspensions, reactivations and deletions the billing state calls for."""
    outcomes = enforce_all(_services())
    table = Table("tenant", "outcome")
    for slug, outcome in outcomes.items():
        table.add_row(slug, outcome)
    _emit(outcomes, as_json, table)


if __name__ == "__main__":
    app()
