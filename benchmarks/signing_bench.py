"""What signing in the secrets server costs: licenses issued and access tokens verified.

1. License signing: N license JWTs signed by the transit key (`KeyRing.sign`, the path of
   `issue_license`), from one thread and from C threads; beside it, the same claims signed
   in-process with a local Ed25519 key (`api.auth.jws.sign`, what the service did before
   the keys moved to OpenBao: the floor without a network round trip).
2. Token verification: N access tokens signed by transit, verified the way every request
   verifies them (`jws.verify` against `TransitSigner.verification_keys`, whose published
   keys are cached); beside it, bare PyJWT `decode` with the public key in hand.

    source .cameleer/services.env
    .venv/bin/python benchmarks/signing_bench.py [--count 2000] [--threads 4]

Uses throwaway transit keys on the local OpenBao (destroyed at the end).
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from api.auth import jws  # noqa: E402
from api.auth.signing import TransitSigner  # noqa: E402
from api.db.models import KeyPurpose  # noqa: E402
from api.settings import Settings  # noqa: E402
from api.vault import VaultConnection  # noqa: E402
from tests.api.vault_support import destroy_transit_keys  # noqa: E402
from benchmarks.support import percentile  # noqa: E402




def license_claims() -> dict:
    now = datetime.now(UTC)
    return {"iss": "cameleer-control-plane", "aud": "cameleer-server", "sub": str(uuid.uuid4()),
            "jti": str(uuid.uuid4()), "tenant_id": str(uuid.uuid4()), "tenant_slug": "bench", "tier": "mid",
            "features": {"alerting": True, "sso": False}, "limits": {"environments": 2}, "status": "active",
            "iat": now, "nbf": now, "exp": now + timedelta(days=30)}


def timed(work, count: int, threads: int) -> tuple[float, list[float]]:
    """Run `work()` `count` times on `threads` threads: (wall seconds, per-call seconds)."""
    def one(_: int) -> float:
        started = time.perf_counter()
        work()
        return time.perf_counter() - started

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=threads) as pool:
        latencies = list(pool.map(one, range(count)))
    return time.perf_counter() - started, latencies


def report(label: str, count: int, wall: float, latencies: list[float]) -> None:
    print(f"  {label:<44} {count / wall:>9,.0f}/s   p50 {percentile(latencies, 0.5) * 1000:6.2f} ms"
          f"   p99 {percentile(latencies, 0.99) * 1000:6.2f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=4)
    args = parser.parse_args()
    if not (1 <= args.count <= 1_000_000 and 1 <= args.threads <= 64):
        parser.error("count 1..1000000, threads 1..64")
    if not os.environ.get("VAULT_ADDR"):
        parser.error("VAULT_ADDR is unset: source .cameleer/services.env (OpenBao) first")

    names = {"access_signing_key": f"bench-{secrets.token_hex(4)}-access",
             "license_signing_key": f"bench-{secrets.token_hex(4)}-license"}
    settings = Settings(**names)
    signer = TransitSigner.from_settings(settings, VaultConnection.from_settings(settings))
    local_key = Ed25519PrivateKey.generate()
    try:
        signer.sign(KeyPurpose.LICENSE, license_claims())  # creates the key; not timed
        print(f"license signing, {args.count} licenses")
        for threads in (1, args.threads):
            wall, latencies = timed(lambda: signer.sign(KeyPurpose.LICENSE, license_claims(), typ="cameleer-license+jwt"),
                                    args.count, threads)
            report(f"transit sign ({threads} thread{'s' if threads > 1 else ''})", args.count, wall, latencies)
        wall, latencies = timed(lambda: jws.sign(license_claims(), "local", local_key), args.count, 1)
        report("baseline: local Ed25519 key, in process", args.count, wall, latencies)

        now = datetime.now(UTC)
        token = signer.sign(KeyPurpose.ACCESS, {"sub": "bench", "aud": "cameleer-api", "iat": now,
                                                "exp": now + timedelta(minutes=15)}).token
        kid = jws.unverified_header(token)["kid"]
        public_key = signer.verification_keys(KeyPurpose.ACCESS)[kid]
        print(f"access-token verification, {args.count} verifications")
        wall, latencies = timed(
            lambda: jws.verify(token, signer.verification_keys(KeyPurpose.ACCESS, kid=kid), audience="cameleer-api"),
            args.count, 1)
        report("jws.verify with the published keys", args.count, wall, latencies)
        wall, latencies = timed(
            lambda: jwt.decode(token, public_key, algorithms=["Ed25519"], audience="cameleer-api"), args.count, 1)
        report("baseline: bare PyJWT decode, key in hand", args.count, wall, latencies)
    finally:
        destroy_transit_keys(names.values(), settings.transit_mount)


if __name__ == "__main__":
    main()
