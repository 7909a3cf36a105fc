"""The periodic signing-key maintenance: rotate keys past their rotation period, retire the
versions the overlap no longer needs, and audit each change."""

from __future__ import annotations

from datetime import datetime

from api.audit.chain import AuditMeta, append
from api.auth.keyring import Maintained
from api.db.models import KeyPurpose
from api.db.session import Scope
from api.services import Services

ACTOR = "system:signing-key-maintenance"


def maintain_signing_keys(services: Services, *, now: datetime | None = None) -> list[Maintained]:
    """One pass over both purposes; running it again changes nothing."""
    meta = AuditMeta(ACTOR)
    with services.db.transaction(Scope.system()) as session:
        results = [services.keys.maintain(session, purpose, now=now) for purpose in KeyPurpose]
        for result in results:
            if result.rotated_to:
                append(session, meta, "signing_key.rotate", f"signing_key:{result.rotated_to}",
                       details={"purpose": result.purpose.value, "reason": "rotation period reached"})
            for kid in result.retired:
                append(session, meta, "signing_key.retire", f"signing_key:{kid}",
                       details={"purpose": result.purpose.value, "reason": "overlap passed"})
    return results
