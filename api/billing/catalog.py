"""The Stripe objects the tier catalog declares: one meter per usage dimension, a product per
tier, and its prices (a base fee and a metered price per dimension for metered tiers; a
price per committed CPU core and per committed GiB for committed tiers).

Everything here is derived from ``components.catalog``; no amount is written twice. Meter
values must be whole numbers, so each dimension is reported in thousandths of its billing
unit (milli-core-hours, MiB-hours scaled to GiB/1000, MB) and its price is divided alike.

    for item in declared_items(): ...            # meters, then products, then prices
    subscription_items(get_tier("low"), ids)     # what a low subscription is made of
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from components.catalog import TIERS, CommittedPricing, MeteredPricing, Tier, UsageDimension

# Reported meter value = quantity in the dimension's billing unit x UNITS_PER.
UNITS_PER = 1000
CENTS = Decimal(100)

METER_DISPLAY = {
    UsageDimension.CPU_CORE_HOURS: "CPU core-hours reserved (x1/1000)",
    UsageDimension.RAM_GB_HOURS: "RAM GiB-hours reserved (x1/1000)",
    UsageDimension.GB_INGESTED: "GB ingested (x1/1000)",
}
COMMITTED_PARTS = ("committed_cpu", "committed_ram")


def meter_event_name(dimension: UsageDimension) -> str:
    return f"cameleer_{dimension.value}"


def meter_key(dimension: UsageDimension) -> str:
    return f"meter:{dimension.value}"


def product_key(tier: Tier) -> str:
    return f"product:{tier.name}"


def price_key(tier: Tier, part: str) -> str:
    """``part`` is ``base``, a usage dimension's value, or one of COMMITTED_PARTS."""
    return f"price:{tier.name}:{part}"


@dataclass(frozen=True)
class DeclaredItem:
    """One object to keep in Stripe. ``params`` may refer to other items by key (a price to
    its product and meter); ``resolve`` turns those keys into the Stripe ids synced earlier."""

    key: str
    kind: str  # meter | product | price
    declared: Mapping[str, Any]
    references: Mapping[str, str] = field(default_factory=dict)  # param name -> item key

    @property
    def fingerprint(self) -> str:
        canonical = json.dumps({"declared": self.declared, "references": self.references}, sort_keys=True, default=str)
        return hashlib.sha256(canonical.encode()).hexdigest()

    def params(self, resolve: Callable[[str], str]) -> dict[str, Any]:
        params = json.loads(json.dumps(self.declared, default=str))
        for name, key in self.references.items():
            target = params
            *path, last = name.split(".")
            for part in path:
                target = target.setdefault(part, {})
            target[last] = resolve(key)
        return params


def _meter(dimension: UsageDimension) -> DeclaredItem:
    return DeclaredItem(
        key=meter_key(dimension),
        kind="meter",
        declared={
            "display_name": METER_DISPLAY[dimension],
            "event_name": meter_event_name(dimension),
            "default_aggregation": {"formula": "sum"},
            "customer_mapping": {"type": "by_id", "event_payload_key": "stripe_customer_id"},
            "value_settings": {"event_payload_key": "value"},
        },
    )


def _product(tier: Tier) -> DeclaredItem:
    return DeclaredItem(
        key=product_key(tier),
        kind="product",
        declared={"id": f"cameleer-{tier.name}", "name": f"Cameleer {tier.name}", "metadata": {"tier": tier.name}},
    )


def _price(tier: Tier, part: str, recurring: dict[str, Any], amount: Decimal, references: dict[str, str]) -> DeclaredItem:
    lookup_key = f"cameleer_{tier.name}_{part}"
    return DeclaredItem(
        key=price_key(tier, part),
        kind="price",
        declared={
            "lookup_key": lookup_key,
            "currency": tier.billing.currency.lower(),
            "unit_amount_decimal": str(amount.normalize()),
            "recurring": {"interval": "month", **recurring},
            "nickname": f"{tier.name} {part.replace('_', ' ')}",
            "metadata": {"tier": tier.name, "part": part},
        },
        references={"product": product_key(tier), **references},
    )


def _prices(tier: Tier) -> list[DeclaredItem]:
    billing = tier.billing
    if isinstance(billing, MeteredPricing):
        prices = [_price(tier, "base", {"usage_type": "licensed"}, billing.base_fee_monthly * CENTS, {})]
        for dimension in UsageDimension:
            per_unit = billing.unit_price(dimension) * CENTS / UNITS_PER
            prices.append(_price(
                tier, dimension.value, {"usage_type": "metered"}, per_unit,
                {"recurring.meter": meter_key(dimension)},
            ))
        return prices
    assert isinstance(billing, CommittedPricing)
    return [
        _price(tier, "committed_cpu", {"usage_type": "licensed"}, billing.per_cpu_core_month * CENTS, {}),
        _price(tier, "committed_ram", {"usage_type": "licensed"}, billing.per_ram_gb_month * CENTS, {}),
    ]


def declared_items() -> list[DeclaredItem]:
    """Meters first, then products, then prices: each refers only to items before it."""
    return [
        *(_meter(dimension) for dimension in UsageDimension),
        *(_product(tier) for tier in TIERS.values()),
        *(price for tier in TIERS.values() for price in _prices(tier)),
    ]


def subscription_items(tier: Tier, price_id: Callable[[str], str]) -> list[dict[str, Any]]:
    """The items of a subscription to ``tier`` (committed tiers at their minimum commitment)."""
    billing = tier.billing
    if isinstance(billing, MeteredPricing):
        return [
            {"price": price_id(price_key(tier, "base")), "quantity": 1},
            *({"price": price_id(price_key(tier, d.value))} for d in UsageDimension),
        ]
    assert isinstance(billing, CommittedPricing)
    cores = max(1, billing.minimum.cpu_m // 1000)
    gibibytes = max(1, billing.minimum.memory_mi // 1024)
    return [
        {"price": price_id(price_key(tier, "committed_cpu")), "quantity": cores},
        {"price": price_id(price_key(tier, "committed_ram")), "quantity": gibibytes},
    ]


def tier_of_price_key(key: str) -> str | None:
    """``price:<tier>:base`` (or a committed part) names the tier a subscription is on."""
    parts = key.split(":")
    if len(parts) == 3 and parts[0] == "price" and parts[2] in ("base", *COMMITTED_PARTS):
        return parts[1]
    return None
