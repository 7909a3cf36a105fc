"""Keep Stripe's meters, products and prices equal to what the catalog declares.

The platform database remembers, per declared item, the Stripe id and a fingerprint of
what was declared. A second sync with an unchanged catalog only reads (one GET per item,
to notice an object deleted in Stripe's dashboard) and creates nothing. A changed amount
creates a new price that takes over the lookup key, and archives the old one (Stripe
prices are immutable). Creates carry an idempotency key made of the item key and its
fingerprint, so an interrupted sync that runs again does not create twice.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import select

from api.billing.catalog import DeclaredItem, declared_items
from api.billing.stripe_api import StripeBilling
from api.db.models import BillingCatalogItem
from api.db.session import ScopedSession


class CatalogNotSynced(LookupError):
    """A price the operation needs has not been created in Stripe yet."""


@dataclass
class SyncReport:
    created: list[str] = field(default_factory=list)
    replaced: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)


def sync_catalog(session: ScopedSession, billing: StripeBilling) -> SyncReport:
    report = SyncReport()
    known = {row.key: row for row in session.scalars(select(BillingCatalogItem))}
    ids = {key: row.stripe_id for key, row in known.items()}
    for item in declared_items():
        row = known.get(item.key)
        if row is not None and row.fingerprint == item.fingerprint and billing.catalog_object_exists(item.kind, row.stripe_id):
            report.unchanged.append(item.key)
            continue
        stripe_id = _create(billing, item, ids, replacing=row)
        (report.replaced if row is not None else report.created).append(item.key)
        ids[item.key] = stripe_id
        if row is None:
            row = BillingCatalogItem(key=item.key, kind=item.kind, stripe_id=stripe_id, fingerprint=item.fingerprint)
            session.add(row)
        else:
            row.stripe_id, row.fingerprint = stripe_id, item.fingerprint
        session.flush()
    return report


def _create(billing: StripeBilling, item: DeclaredItem, ids: dict[str, str], *, replacing: BillingCatalogItem | None) -> str:
    if replacing is None:
        adopted = _existing(billing, item)
        if adopted is not None:
            return adopted
    params = item.params(ids.__getitem__)
    if item.kind == "price" and replacing is not None:
        params["transfer_lookup_key"] = True
    stripe_id = billing.create_catalog_object(item.kind, params, idempotency_key=f"catalog:{item.key}:{item.fingerprint[:32]}")
    if item.kind == "price" and replacing is not None and replacing.stripe_id != stripe_id:
        billing.archive_price(replacing.stripe_id, idempotency_key=f"catalog:archive:{replacing.stripe_id}")
    return stripe_id


def _existing(billing: StripeBilling, item: DeclaredItem) -> str | None:
    """The Stripe object that already is this item (a platform database restored or new,
    against an account synced before): found by product id, lookup key or event name."""
    declared = item.declared
    if item.kind == "product":
        return declared["id"] if billing.catalog_object_exists("product", declared["id"]) else None
    if item.kind == "price":
        return billing.find_price(declared["lookup_key"], declared["unit_amount_decimal"])
    return billing.find_meter(declared["event_name"])


def price_ids(session: ScopedSession) -> dict[str, str]:
    """Declared price keys -> Stripe price ids, as last synced."""
    rows = session.execute(select(BillingCatalogItem.key, BillingCatalogItem.stripe_id).where(BillingCatalogItem.kind == "price"))
    return {key: stripe_id for key, stripe_id in rows}


def price_lookup(session: ScopedSession):
    """A function key -> price id that says what to run when the catalog was never synced."""
    ids = price_ids(session)

    def lookup(key: str) -> str:
        try:
            return ids[key]
        except KeyError:
            raise CatalogNotSynced(
                f"the Stripe price {key!r} has not been created; run `cameleer-billing sync` first"
            ) from None

    return lookup
