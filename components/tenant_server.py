"""The tenant's Cameleer server: a Deployment with its license Secret, its settings
ConfigMap, and a Service.

The pod runs with the restricted security context Pod Security `restricted` demands, a
digest-pinned image, requests and limits from the tier, and probes. A suspended tenant
keeps every object but runs zero replicas.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

import pulumi

from components import naming
from components.catalog import ServerSize
from components.images import validate_pinned_image
from components.base import Component
from components.kube import manifest
from components.cluster import Cluster
from components.tenant_namespace import DATABASE_SECRET, LICENSE_SECRET, SERVER_ACCOUNT

SERVER_NAME = "cameleer-server"
HTTP_PORT = 8080
SERVICE_PORT = 80
DEFAULT_ROLLOUT_TIMEOUT = "5m"
# The provider's Service awaiter waits a fixed 10 s for endpoints to "settle" after every
# create. The tenant's readiness check reads the Service's endpoints itself, so the stack
# does not pay that on every environment.
SKIP_AWAIT_ANNOTATION = "pulumi.com/skipAwait"
RUN_AS_ID = 10001
LICENSE_DIR = "/etc/cameleer/license"
LICENSE_FILE = "license.jwt"
SETTINGS_CONFIG_MAP = "cameleer-server-settings"
DATABASE_ENV = {
    # environment variable -> key in the database credentials Secret
    "CAMELEER_DB_HOST": "host",
    "CAMELEER_DB_PORT": "port",
    "CAMELEER_DB_NAME": "database",
    "CAMELEER_DB_SCHEMA": "schema",
    "CAMELEER_DB_USER": "username",
    "CAMELEER_DB_PASSWORD": "password",
}


@dataclass(frozen=True)
class TenantServerArgs:
    cluster: Cluster
    namespace: str
    image: str
    size: ServerSize
    # Secret: the license JWT.
    license: pulumi.Input[str]
    priority_class: str
    # Plain settings the server reads as environment variables (tenant, tier, retention).
    settings: Mapping[str, str] = field(default_factory=dict)
    suspended: bool = False
    labels: Mapping[str, str] = field(default_factory=dict)
    service_account: str = SERVER_ACCOUNT
    database_secret: str = DATABASE_SECRET
    # How long an update waits for the rollout before it fails (pulumi-kubernetes awaits
    # it; its own default is 10 minutes). A pod the quota refuses never comes.
    rollout_timeout: str = DEFAULT_ROLLOUT_TIMEOUT

    def __post_init__(self) -> None:
        validate_pinned_image(self.image)


class TenantServer(Component):
    deployment_name: str
    service_name: str
    replicas: int

    def __init__(self, name: str, args: TenantServerArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("cameleer:tenancy:TenantServer", name, opts)
        self.deployment_name = self.service_name = SERVER_NAME
        self.replicas = 0 if args.suspended else 1

        license_secret = self.kube_object(f"{name}-license", args.cluster, license_manifest(args))
        settings = self.kube_object(f"{name}-settings", args.cluster, settings_manifest(args))
        self.kube_object(f"{name}-deployment", args.cluster, deployment_manifest(args, self.replicas),
                         depends_on=[license_secret, settings],
                         custom_timeouts=pulumi.CustomTimeouts(create=args.rollout_timeout,
                                                               update=args.rollout_timeout))
        self.kube_object(f"{name}-service", args.cluster, service_manifest(args))
        self.register_outputs({"deployment": self.deployment_name, "service": self.service_name,
                               "replicas": self.replicas})


def selector_labels() -> dict[str, str]:
    return {"app.kubernetes.io/name": SERVER_NAME}


def license_manifest(args: TenantServerArgs) -> dict:
    return manifest("v1", "Secret", LICENSE_SECRET, namespace=args.namespace, labels=dict(args.labels),
                    type="Opaque", stringData={LICENSE_FILE: args.license})


def settings_manifest(args: TenantServerArgs) -> dict:
    return manifest("v1", "ConfigMap", SETTINGS_CONFIG_MAP, namespace=args.namespace, labels=dict(args.labels),
                    data=dict(args.settings))


def deployment_manifest(args: TenantServerArgs, replicas: int) -> dict:
    labels = {**args.labels, **selector_labels()}
    # On the Deployment only: a template label change would roll the pods.
    suspension = {naming.SUSPENDED_LABEL: "true" if args.suspended else "false"}
    return manifest(
        "apps/v1", "Deployment", SERVER_NAME, namespace=args.namespace, labels={**labels, **suspension},
        spec={
            "replicas": replicas,
            "revisionHistoryLimit": 3,
            "selector": {"matchLabels": selector_labels()},
            "template": {"metadata": {"labels": labels}, "spec": pod_spec(args)},
        },
    )


def pod_spec(args: TenantServerArgs) -> dict:
    return {
        "serviceAccountName": args.service_account,
        # The server reads its config maps through the API (see the namespace's Role).
        "automountServiceAccountToken": True,
        "enableServiceLinks": False,
        "priorityClassName": args.priority_class,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": RUN_AS_ID,
            "runAsGroup": RUN_AS_ID,
            "fsGroup": RUN_AS_ID,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [server_container(args)],
        "volumes": [
            {"name": "license", "secret": {"secretName": LICENSE_SECRET, "defaultMode": 0o440}},
            # The root filesystem is read-only; the server's scratch space lives here.
            {"name": "tmp", "emptyDir": {"sizeLimit": "256Mi"}},
            # Its login to OpenBao: a short-lived token for OpenBao only (not the API server's).
            {"name": "openbao-token", "projected": {"sources": [{"serviceAccountToken": {
                "audience": naming.SECRETS_TOKEN_AUDIENCE, "expirationSeconds": 3600, "path": "token"}}]}},
        ],
    }


def server_container(args: TenantServerArgs) -> dict:
    return {
        "name": "server",
        "image": args.image,
        "ports": [{"name": "http", "containerPort": HTTP_PORT, "protocol": "TCP"}],
        "envFrom": [{"configMapRef": {"name": SETTINGS_CONFIG_MAP}}],
        "env": [
            {"name": "CAMELEER_LICENSE_FILE", "value": f"{LICENSE_DIR}/{LICENSE_FILE}"},
            *({"name": env, "valueFrom": {"secretKeyRef": {"name": args.database_secret, "key": key}}}
              for env, key in DATABASE_ENV.items()),
        ],
        "resources": args.size.resources(),
        "securityContext": restricted_security_context(),
        "livenessProbe": _probe("/health/live", initial_delay=20, period=10),
        "readinessProbe": _probe("/health/ready", initial_delay=5, period=5),
        "volumeMounts": [
            {"name": "license", "mountPath": LICENSE_DIR, "readOnly": True},
            {"name": "tmp", "mountPath": "/tmp"},
            {"name": "openbao-token", "mountPath": naming.SECRETS_TOKEN_DIR, "readOnly": True},
        ],
    }


def restricted_security_context() -> dict:
    return {
        "runAsNonRoot": True,
        "runAsUser": RUN_AS_ID,
        "readOnlyRootFilesystem": True,
        "allowPrivilegeEscalation": False,
        "privileged": False,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def _probe(path: str, *, initial_delay: int, period: int) -> dict:
    return {
        "httpGet": {"path": path, "port": "http"},
        "initialDelaySeconds": initial_delay,
        "periodSeconds": period,
        "timeoutSeconds": 2,
        "failureThreshold": 3,
    }


def service_manifest(args: TenantServerArgs) -> dict:
    body = manifest(
        "v1", "Service", SERVER_NAME, namespace=args.namespace, labels=dict(args.labels),
        spec={
            "type": "ClusterIP",
            "selector": selector_labels(),
            "ports": [{"name": "http", "port": SERVICE_PORT, "targetPort": "http", "protocol": "TCP"}],
        },
    )
    body["metadata"]["annotations"] = {SKIP_AWAIT_ANNOTATION: "true"}
    return body
