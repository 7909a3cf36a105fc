"""Signed checkpoints of the audit chain, kept outside the database.

Anyone who can write the database can rewrite the chain's tail consistently or cut it off;
they cannot sign. A checkpoint is a compact JWS over the chain head (record id, record
count, head hash), signed by the audit transit key, appended to
``<data_dir>/audit-checkpoints.jsonl`` and written to the log. Verification checks every
checkpoint's signature and that the chain still holds each one's head at its position.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from api.audit.chain import Anchor, ChainVerdict, verify_chain
from api.auth.jws import TokenInvalid, unverified_header, verify
from api.auth.signing import TransitSigner
from api.db.models import AuditRecord, KeyPurpose
from api.db.session import Scope
from api.services import Services

FILE_NAME = "audit-checkpoints.jsonl"
TOKEN_TYPE = "audit-checkpoint+jwt"
log = logging.getLogger(__name__)

KeysFor = Callable[[str | None], Mapping[str, Ed25519PublicKey]]


class CheckpointInvalid(Exception):
    """An exported checkpoint cannot be trusted; the message names its line."""


def checkpoint_file(data_dir: Path) -> Path:
    return data_dir / FILE_NAME


def chain_head(session: Session) -> Anchor | None:
    query = select(AuditRecord.id, AuditRecord.hash, func.count().over()).order_by(AuditRecord.id.desc()).limit(1)
    row = session.execute(query).first()
    return None if row is None else Anchor(id=row[0], count=row[2], head=row[1])


def _exported_lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def _last_exported(path: Path) -> Anchor | None:
    lines = _exported_lines(path)
    if not lines:
        return None
    last = json.loads(lines[-1])
    return Anchor(id=last["id"], count=last["count"], head=last["head"])


def write_checkpoint(session: Session, signer: TransitSigner, path: Path) -> Anchor | None:
    """Sign and export the chain head; None when it has not moved since the last checkpoint."""
    head = chain_head(session)
    if head is None or head == _last_exported(path):
        return None
    claims = {"id": head.id, "count": head.count, "head": head.head, "iat": int(datetime.now(UTC).timestamp())}
    signed = signer.sign(KeyPurpose.AUDIT, claims, typ=TOKEN_TYPE)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as out:
        out.write(json.dumps({**claims, "kid": signed.kid, "token": signed.token}) + "\n")
    log.info("audit checkpoint id=%d count=%d head=%s token=%s", head.id, head.count, head.head, signed.token)
    return head


def take_checkpoint(services: Services) -> Anchor | None:
    """The periodic job: one checkpoint if the chain grew."""
    with services.db.transaction(Scope.system()) as session:
        return write_checkpoint(session, services.keys.signer, checkpoint_file(services.settings.data_dir))


def _anchor(token: str, keys_for: KeysFor) -> Anchor:
    header = unverified_header(token)
    if header.get("typ") != TOKEN_TYPE:
        raise TokenInvalid("not an audit checkpoint")
    claims = verify(token, keys_for(header.get("kid")), verify_times=False, required=("iat",))
    return Anchor(id=int(claims["id"]), count=int(claims["count"]), head=str(claims["head"]))


def read_checkpoints(path: Path, keys_for: KeysFor) -> list[Anchor]:
    """Every exported checkpoint, each signature verified (only the token counts: the plain
    fields beside it are for people reading the file)."""
    anchors = []
    for number, line in enumerate(_exported_lines(path), start=1):
        try:
            anchors.append(_anchor(json.loads(line)["token"], keys_for))
        except (ValueError, KeyError, TypeError, TokenInvalid) as exc:
            raise CheckpointInvalid(f"checkpoint signature: line {number} of {path} does not verify ({exc})") from exc
    return anchors


def signer_keys(signer: TransitSigner) -> KeysFor:
    return lambda kid: signer.verification_keys(KeyPurpose.AUDIT, kid=kid)


def verify_anchored(session: Session, path: Path, keys_for: KeysFor) -> ChainVerdict:
    """The chain's own hashes, then every signed checkpoint against it."""
    try:
        anchors = read_checkpoints(path, keys_for)
    except CheckpointInvalid as exc:
        return ChainVerdict(False, 0, None, str(exc))
    return verify_chain(session, anchors)


def verify_platform_chain(session: Session, services: Services) -> ChainVerdict:
    """What ``GET /v1/platform/audit/verify`` and the console report: the chain against the
    checkpoints this service exported."""
    return verify_anchored(session, checkpoint_file(services.settings.data_dir), signer_keys(services.keys.signer))
