"""The main job on embedded defaults: API + worker on the local services, a demo signup to ACTIVE.

Run by scripts/demo.sh after set-up (services started, environment from services.env).
Migrates the platform database, syncs the billing catalog to Stripe, registers the local
clusters (`cameleer-clusters register`: eu1 and eu2 shared, dc1 dedicated, each 3 simulated
nodes of 32 CPU and 128Gi), brings up each shared cluster's baseline stack (shared-<name>,
its settings file in the data directory like every stack the service creates), starts the
API and one worker, signs up the organisation
"Demo" (tier from CAMELEER_DEMO_TIER, default mid), prints the verification link the API mailed
to the local outbox (a throwaway link of a local demo) and follows it, follows the signup operation step by
step (paying the first invoice when it waits for payment) until the tenant is ACTIVE, shows the tenant's namespaces on the cluster, and stops
the processes it started. Exit status 0 only if the tenant reached ACTIVE.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import sys
import time
from contextlib import ExitStack, contextmanager
from pathlib import Path

import httpx

from api.billing.signatures import signature_header
from api.mail import read_maildir
from api.settings import get_settings
from api.stacks.automation_adapter import AutomationStackDriver
from stacks.clusters import DEFAULT_LOCAL_CLUSTER, kubeconfig_variable

ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
API = f"http://{os.environ.get('CAMELEER_HTTP_HOST', '127.0.0.1')}:{os.environ.get('CAMELEER_HTTP_PORT', '8080')}"
TIMEOUT_SECONDS = 600
LOCAL_CLUSTERS = os.environ.get("CAMELEER_LOCAL_CLUSTERS", DEFAULT_LOCAL_CLUSTER).split()


def say(message: str) -> None:
    print(f"==> {message}", flush=True)


@contextmanager
def background(name: str, *args: str):
    log_dir = Path(os.environ.get("CAMELEER_DATA_DIR", ROOT / ".cameleer")) / "run"
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"demo-{name}.log"
    with open(log_path, "ab") as log:
        proc = subprocess.Popen([PYTHON, "-m", *args], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    say(f"started {name} (pid {proc.pid}, log {log_path})")
    try:
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


def wait_ready(client: httpx.Client, api: subprocess.Popen) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if api.poll() is not None:
            sys.exit(f"the API exited with status {api.returncode}; see its log")
        try:
            if client.get("/readyz").status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    sys.exit("the API did not become ready within 60s")


def sign_up(client: httpx.Client, slug: str, password: str, tier: str) -> tuple[str, dict]:
    """The signup accepted and its mailed link followed, under `slug` or, when an earlier run
    took it, a fresh one: the tenant and its signup operation."""
    for candidate in (slug, f"{slug}-{secrets.token_hex(3)}"):
        response = client.post(
            "/v1/signup",
            headers={"Idempotency-Key": f"demo-{candidate}-{secrets.token_hex(4)}"},
            json={"organization_name": "Demo", "slug": candidate, "owner_email": f"owner@{candidate}.example.com",
                  "owner_password": password, "tier": tier},
        )
        if response.status_code == 202:
            return candidate, verify(client, f"owner@{candidate}.example.com")
        if response.status_code == 409 and response.json().get("type", "").endswith("/duplicate-slug"):
            say(f"   the slug {candidate} is taken (an earlier demo run); trying another")
            continue
        break
    sys.exit(f"signup refused ({response.status_code}): {response.text}")


def verify(client: httpx.Client, email: str) -> dict:
    """Follow the verification link the API mailed to `email`, as the owner would."""
    settings = get_settings()
    if settings.mail_url and not settings.mail_url.startswith("maildir:"):
        sys.exit(f"the API mails through {settings.mail_url.split('://')[0]}://: follow the link in {email}'s mailbox")
    outbox = settings.data_dir / "outbox"
    mails = [m.get_payload(decode=True).decode() for m in read_maildir(outbox) if m["To"] == email]
    link = re.search(r"\S+#token=([A-Za-z0-9_-]+)", mails[-1] if mails else "")
    if link is None:
        sys.exit(f"no verification link for {email} in the local outbox {outbox}")
    say(f"   verification link mailed to {email} (local outbox): {link.group(0)}")
    response = client.post("/v1/signup/verify", json={"token": link.group(1)})
    if response.status_code != 202:
        sys.exit(f"verification refused ({response.status_code}): {response.text}")
    return response.json()


def pay_first_invoice(client: httpx.Client, tenant_id: str) -> None:
    """Stand in for the customer and for Stripe: stripe-mock has no payment page and sends no
    events, so the demo sends the signed `invoice.paid` Stripe would send once the customer
    confirmed the payment with the client secret."""
    payment = client.get(f"/v1/tenants/{tenant_id}/billing/payment").raise_for_status().json()
    say(f"   the payment page is ready for subscription {payment['subscription_id']} "
        f"({'client secret issued' if payment['client_secret'] else 'stripe-mock answers an empty client secret'}); paying it")
    payload = json.dumps({
        "id": f"evt_demo_{secrets.token_hex(8)}", "object": "event", "type": "invoice.paid",
        "created": int(time.time()), "livemode": False,
        "data": {"object": {"object": "invoice", "id": f"in_demo_{secrets.token_hex(6)}",
                            "customer": payment["customer_id"], "status": "paid"}},
    }).encode()
    signature = signature_header(os.environ["CAMELEER_STRIPE_WEBHOOK_SECRET"], payload)
    client.post("/v1/billing/webhook", content=payload, headers={
        "Stripe-Signature": signature, "Content-Type": "application/json",
    }).raise_for_status()


def follow(client: httpx.Client, operation_url: str, tenant_id: str) -> dict:
    seen: set[tuple[str, str]] = set()
    paid = False
    deadline = time.monotonic() + TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        operation = client.get(operation_url).raise_for_status().json()
        for step in operation["steps"]:
            marker = (step["name"], step["status"])
            if marker not in seen and step["status"] != "pending":
                seen.add(marker)
                say(f"   step {step['name']}: {step['status']}")
        if operation["status"] in ("SUCCEEDED", "FAILED"):
            return operation
        if operation["status"] == "AWAITING_PAYMENT" and not paid:
            pay_first_invoice(client, tenant_id)
            paid = True
        time.sleep(1)
    sys.exit(f"the signup did not finish within {TIMEOUT_SECONDS}s")


def kubeconfig_file(cluster: str) -> str:
    """The local cluster's kubeconfig file, as services.env names it."""
    return os.environ["KUBECONFIG"] if cluster == DEFAULT_LOCAL_CLUSTER else os.environ[kubeconfig_variable(cluster)]


def register_local_cluster(cluster: str) -> None:
    """Register one of services.sh's clusters (dc* dedicated, the others shared; idempotent) and
    bring up a shared cluster's baseline, as an operator does for a new cluster."""
    kind = "dedicated" if cluster.startswith("dc") else "shared"
    say(f"registering the local {kind} cluster {cluster}")
    slots = ["--slots", "200"] if kind == "shared" else []
    subprocess.run([PYTHON, "-m", "api.clusters.cli", "register", cluster, "--kind", kind, "--region", "local",
                    "--cpu", "96", "--memory", "384Gi", "--kubeconfig", kubeconfig_file(cluster), *slots],
                   cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    if kind == "shared":
        baseline = AutomationStackDriver().ensure_cluster_baseline(cluster)
        say(f"shared-{cluster} (its baseline): {baseline.summary}")


def main() -> int:
    slug = os.environ.get("CAMELEER_DEMO_SLUG", "demo")
    tier = os.environ.get("CAMELEER_DEMO_TIER", "mid")
    password = secrets.token_urlsafe(18)
    say("migrating the platform database")
    subprocess.run([PYTHON, "-m", "api.migrate", "upgrade"], cwd=ROOT, check=True)
    say("syncing the tier catalog's products, prices and meters to Stripe (stripe-mock)")
    subprocess.run([PYTHON, "-m", "api.billing.cli", "sync"], cwd=ROOT, check=True)
    for cluster in LOCAL_CLUSTERS:
        register_local_cluster(cluster)
    with ExitStack() as stack, httpx.Client(base_url=API, timeout=30) as client:
        api = stack.enter_context(background("api", "api"))
        stack.enter_context(background("worker", "api.worker"))
        wait_ready(client, api)
        say(f"signing up organisation Demo (slug {slug}, tier {tier})")
        slug, accepted = sign_up(client, slug, password, tier)
        token = client.post(
            "/v1/auth/login", json={"email": f"owner@{slug}.example.com", "password": password},
        ).raise_for_status().json()["access_token"]
        client.headers["Authorization"] = f"Bearer {token}"
        operation = follow(client, accepted["operation"]["url"], accepted["tenant"]["id"])
        tenant = client.get(f"/v1/tenants/{accepted['tenant']['id']}").raise_for_status().json()
    say(f"tenant {tenant['slug']} is {tenant['status']}" + (f": {tenant['failure_reason']}" if tenant["failure_reason"] else ""))
    kubeconfig = kubeconfig_file(tenant["placement"].partition(":")[2])
    say(f"its namespaces and pods on cluster {tenant['placement']}")
    subprocess.run(["kubectl", "--kubeconfig", kubeconfig, "get", "namespaces", "-l", f"cameleer.io/tenant={slug}"],
                   check=False)
    subprocess.run(["kubectl", "--kubeconfig", kubeconfig, "get", "pods", "-A", "-l", f"cameleer.io/tenant={slug}",
                    "-o", "wide"], check=False)
    return 0 if tenant["status"] == "ACTIVE" and operation["status"] == "SUCCEEDED" else 1


if __name__ == "__main__":
    sys.exit(main())
