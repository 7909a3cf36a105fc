"""Which steps each kind of operation runs, in order, and the step record format."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from api.db.models import OperationKind

# "place" decides the cluster, or waits (AWAITING_CAPACITY) until one can take the tenant.
# Gates: "confirm" waits (AWAITING_CONFIRMATION) until an operator confirms; "payment" waits
# (AWAITING_PAYMENT) until Stripe reports the subscription active or trialing.
PLANS: dict[OperationKind, tuple[str, ...]] = {
    OperationKind.SIGNUP: (
        "place", "tenant_record", "billing", "payment", "license", "stack_up", "tenant_secrets", "readiness", "activate",
    ),
    OperationKind.SUSPEND: ("license", "stack_up", "tenant_secrets", "mark_suspended"),
    OperationKind.REACTIVATE: ("license", "stack_up", "tenant_secrets", "readiness", "activate"),
    OperationKind.CHANGE_TIER: ("billing", "license", "stack_up", "tenant_secrets", "readiness", "activate"),
    # The tenant's secrets go first, its stack next and its stack's encryption key last.
    OperationKind.DELETE: (
        "mark_deleting", "tenant_secrets", "stack_destroy", "license", "billing", "scrub", "mark_deleted",
    ),
    # Queued by the drift watcher (api/drift) when the tenant's tier corrects automatically.
    OperationKind.DRIFT_CORRECTION: ("drift_correct",),
    # Queued by the license renewal (api/licensing/renewal.py), which has issued the license:
    # the stack's license Secret and the tenant's KV path get it.
    OperationKind.LICENSE_RENEWAL: ("stack_up", "tenant_secrets"),
}

# A tier change that moves the tenant between shared and dedicated placement: the new stack
# is up and ready before the tenant is switched to it (activate), and the old one goes last,
# so a failure at any step leaves one placement serving.
MOVE_PLAN: tuple[str, ...] = (
    "place", "preview", "confirm", "billing", "license", "stack_up", "tenant_secrets", "readiness", "activate",
    "release_old_placement",
)


def now_iso() -> str:
    return datetime.now(UTC).isoformat()


def new_step(name: str) -> dict[str, Any]:
    return {"name": name, "status": "pending", "attempts": 0, "errors": [], "started_at": None, "finished_at": None, "result": {}}


def initial_steps(kind: OperationKind, *, moves_placement: bool = False) -> list[dict[str, Any]]:
    names = MOVE_PLAN if kind is OperationKind.CHANGE_TIER and moves_placement else PLANS[kind]
    return [new_step(name) for name in names]
