"""The abuse run: 2,000 signup attempts and 2,000 failed logins against one real API process,
then what they left behind next to what the configured limits allow.

One API process (`python -m api`, uvicorn) on 127.0.0.1 with a throwaway platform database
and no worker: signup provisions nothing before its mailed link is followed (the links go to
a throwaway local outbox and are never followed). The limits key on the TCP peer address,
not on X-Forwarded-For, so each source is a real loopback address (127.0.x.y: every one of
them reaches a server on 127.0.0.1, and the server sees it as the client).

Signups (limits: CAMELEER_SIGNUP_* as set in the environment, defaults otherwise):
  a. one address, a new email domain each time;
  b. many addresses (each used once), one email domain;
  c. many addresses (each up to the address limit) and many domains, enough to reach the cap
     of pending signups.
Failed logins (wrong password; existing accounts and emails without one alike):
  d. few addresses, many accounts;
  e. many addresses, few accounts.

Printed: answers by status and problem type, 5xx (none may appear: the pending cap's "signups
paused" is a 429), answered attempts per key (at most the limit), pending signups in the database and
its cap, tenants (none), locked accounts and addresses next to the most the limits allow.

    source .cameleer/services.env
    .venv/bin/python benchmarks/abuse_run.py [--signups 2000] [--logins 2000] [--threads 8]

Bounded: at most 10,000 requests of each kind, a timeout on each. Everything it created
(database, transit keys, outbox) is removed at the end. Exit status 1 when a bound is broken.
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
import tempfile
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
from sqlalchemy import func, select, text

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from api.auth.users import create_user  # noqa: E402
from api.db.models import PendingSignup, Tenant  # noqa: E402
from api.db.session import Scope  # noqa: E402
from api.services import Services  # noqa: E402
from tests.api.vault_support import destroy_transit_keys  # noqa: E402
from benchmarks.support import database_env, database_settings, start_api, throwaway_database  # noqa: E402

PASSWORD = "correct-horse-battery-staple-42"
WRONG = "not-the-password-1"
MAX_REQUESTS = 10_000
KNOWN_ACCOUNTS = 10


@dataclass(frozen=True)
class Attempt:
    group: str
    address: str
    email: str


@dataclass(frozen=True)
class Answer:
    attempt: Attempt
    status: int
    problem: str


def loopback(index: int, block: int) -> str:
    """The index-th address of a /16-sized block of 127.0.0.0/8 (never 127.0.0.1)."""
    return f"127.{block}.{index // 250}.{index % 250 + 2}"


def signup_plan(total: int, address_max: int) -> list[Attempt]:
    share = max(1, total * 15 // 100)  # 15 % each for a and b; c the rest, to reach the pending cap
    plan = [Attempt("a: one address, many domains", loopback(0, 10), f"u{i}@a{i}.abuse.example") for i in range(share)]
    plan += [Attempt("b: many addresses, one domain", loopback(i, 11), f"u{i}@bigmail.abuse.example")
             for i in range(share)]
    rest = total - len(plan)
    plan += [Attempt("c: many addresses, many domains", loopback(i // address_max, 12), f"u{i}@c{i}.abuse.example")
             for i in range(rest)]
    return plan


def login_plan(total: int, known: list[str]) -> list[Attempt]:
    half = total // 2
    plan = [Attempt("d: few addresses, many accounts", loopback(i % 4, 13),
                    known[i % len(known)] if i % 5 == 0 else f"nobody{i}@d.abuse.example") for i in range(half)]
    plan += [Attempt("e: many addresses, few accounts", loopback(i, 14), known[i % len(known)])
             for i in range(total - half)]
    return plan


def send(base: str, attempt: Attempt, kind: str) -> Answer:
    transport = httpx.HTTPTransport(local_address=attempt.address)
    with httpx.Client(base_url=base, transport=transport, timeout=120) as client:
        if kind == "signup":
            slug = f"abuse-{uuid.uuid4().hex[:10]}"
            body = {"organization_name": f"Abuse {slug}", "slug": slug, "owner_email": attempt.email,
                    "owner_password": PASSWORD, "tier": "low"}
            response = client.post("/v1/signup", json=body, headers={"Idempotency-Key": uuid.uuid4().hex})
        else:
            response = client.post("/v1/auth/login", json={"email": attempt.email, "password": WRONG})
    problem = response.json().get("type", "") if "problem+json" in response.headers.get("content-type", "") else ""
    return Answer(attempt, response.status_code, problem)


def run(base: str, plan: list[Attempt], kind: str, threads: int) -> tuple[list[Answer], float]:
    started = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        answers = list(pool.map(lambda attempt: send(base, attempt, kind), plan))
    return answers, time.perf_counter() - started


def most_per_key(answers: list[Answer], status: int, key) -> tuple[int, int]:
    """(the most answers with ``status`` of any one key, how many keys had any)."""
    counts = Counter(key(a.attempt) for a in answers if a.status == status)
    return (max(counts.values()) if counts else 0), len(counts)


def print_answers(title: str, answers: list[Answer], wall: float) -> int:
    print(f"\n{title}: {len(answers)} requests in {wall:.1f} s ({len(answers) / wall:.0f}/s)")
    for group in sorted({a.attempt.group for a in answers}):
        mine = [a for a in answers if a.attempt.group == group]
        shape = Counter(f"{a.status} {a.problem.removeprefix('/problems/')}".strip() for a in mine)
        print(f"  {group:<36} " + ", ".join(f"{k}: {v}" for k, v in sorted(shape.items())))
    unexpected = [a for a in answers if a.status >= 500]
    print(f"  5xx: {len(unexpected)}")
    return len(unexpected)


def check(label: str, value: int, bound: int, broken: list[str]) -> None:
    ok = value <= bound
    print(f"  {label:<58} {value:>6}   allowed <= {bound:<6} {'ok' if ok else 'BROKEN'}")
    if not ok:
        broken.append(label)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--signups", type=int, default=2000)
    parser.add_argument("--logins", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=8)
    args = parser.parse_args()
    if not (3 <= args.signups <= MAX_REQUESTS and 2 <= args.logins <= MAX_REQUESTS and 1 <= args.threads <= 64):
        parser.error(f"signups 3..{MAX_REQUESTS}, logins 2..{MAX_REQUESTS}, threads 1..64")

    keys = {"access_signing_key": f"abuse-{secrets.token_hex(4)}-access",
            "license_signing_key": f"abuse-{secrets.token_hex(4)}-license",
            "audit_signing_key": f"abuse-{secrets.token_hex(4)}-audit"}
    with throwaway_database("cameleer_abuse") as db:
        api = None
        try:
            with tempfile.TemporaryDirectory(prefix="cameleer-abuse-") as data_dir:
                env = {**database_env(db), "CAMELEER_DATA_DIR": data_dir,
                       **{f"CAMELEER_{name.upper()}": value for name, value in keys.items()}}
                os.environ.update(env)  # the settings below read the same limits the API process does
                settings = database_settings(db)
                services = Services.build(settings)
                known = [f"member{i}@known.abuse.example" for i in range(KNOWN_ACCOUNTS)]
                with services.db.transaction(Scope.system()) as session:
                    for email in known:
                        create_user(session, email, PASSWORD)
                api, base = start_api(env)
                load = os.getloadavg()
                print(f"abuse run: one API process on {base}, no worker, {os.cpu_count()} cores, "
                      f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}, {args.threads} client threads")

                signups, signup_wall = run(base, signup_plan(args.signups, settings.signup_address_max), "signup",
                                           args.threads)
                logins, login_wall = run(base, login_plan(args.logins, known), "login", args.threads)
                unexpected = print_answers("signups", signups, signup_wall) + print_answers("failed logins", logins,
                                                                                           login_wall)
                with services.db.transaction(Scope.system()) as session:
                    pending = session.scalar(select(func.count()).select_from(PendingSignup).where(
                        PendingSignup.verified_at.is_(None), PendingSignup.expires_at > func.now()))
                    tenants = session.scalar(select(func.count()).select_from(Tenant))
                    locked = dict(session.execute(text("SELECT kind, count(*) FROM login_attempts"
                                                       " WHERE locked_until > now() GROUP BY kind")).all())
                services.db.dispose()

                broken: list[str] = []
                print("\nbounds")
                check("5xx answers", unexpected, 0, broken)
                check("pending signups in the database (CAMELEER_SIGNUP_PENDING_MAX)", pending,
                      settings.signup_pending_max, broken)
                check("tenants in the database (nothing before a link is followed)", tenants, 0, broken)
                most, addresses = most_per_key(signups, 202, lambda a: a.address)
                check(f"accepted signups of one address (of {addresses})", most, settings.signup_address_max, broken)
                most, domains = most_per_key(signups, 202, lambda a: a.email.rpartition("@")[2])
                check(f"accepted signups of one domain (of {domains})", most, settings.signup_domain_max, broken)
                most, accounts = most_per_key(logins, 401, lambda a: a.email)
                check(f"password checks answered 401 of one account (of {accounts})", most,
                      settings.login_account_max_failures, broken)
                most, sources = most_per_key(logins, 401, lambda a: a.address)
                check(f"password checks answered 401 of one address (of {sources})", most,
                      settings.login_address_max_failures, broken)
                login_failures = sum(1 for a in logins if a.status == 401)
                check("locked accounts (each needs its max failures counted)", locked.get("account", 0),
                      login_failures // settings.login_account_max_failures, broken)
                check("locked addresses (each needs its max failures counted)", locked.get("address", 0),
                      login_failures // settings.login_address_max_failures, broken)
                print(f"  locks by kind: {dict(sorted(locked.items()))}")
                print("all bounds held" if not broken else f"BROKEN: {', '.join(broken)}")
                return 1 if broken else 0
        finally:
            if api is not None:
                api.terminate()
                api.wait(timeout=20)
            destroy_transit_keys(keys.values())


if __name__ == "__main__":
    sys.exit(main())
