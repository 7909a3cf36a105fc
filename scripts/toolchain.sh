#!/usr/bin/env bash
# Builds the pinned engine toolchain from the Go module proxy (once; cached outside the work
# tree) and links it, with the plugin launchers the engine looks for, into the project's
# virtualenv so that `.venv/bin/pulumi` works for operators and the Automation API alike.
#
#   pulumi 3.259.0                      tools/go/pulumi  (github.com/pulumi/pulumi/pkg/v3)
#   kube-apiserver, kube-controller-    tools/go/kube    (k8s.io/kubernetes v1.34.3, staging
#   manager, kubectl 1.34.3, etcd 3.6.4                   modules replaced by k8s.io/* v0.34.3)
#
# Usage: scripts/toolchain.sh            build what is missing, link into .venv/bin
#        CAMELEER_CACHE=/path ...        cache location (default ~/.cache/cameleer)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=scripts/lib.sh
source "$ROOT/scripts/lib.sh"

PULUMI_VERSION=3.259.0
KUBE_VERSION=1.34.3
ETCD_VERSION=3.6.4

CACHE="${CAMELEER_CACHE:-$HOME/.cache/cameleer}"
BIN="$CACHE/bin"
VENV_BIN="$ROOT/.venv/bin"

require_tool go "Go 1.25+ (Debian: golang, or the machine image's Go toolchain)"
mkdir -p "$BIN"

# build_go <output> <module dir> <package> [ldflags]
build_go() {
    local out="$1" module="$2" pkg="$3" ldflags="${4:-}"
    if [[ -x "$BIN/$out" ]]; then
        return
    fi
    step "building $out from the Go module proxy (first run only; several minutes on 2 cores)"
    local started=$SECONDS
    (
        cd "$ROOT/tools/go/$module"
        # Print a heartbeat so a long link step never looks like a hang.
        while sleep 30; do echo "   ... still building $out ($((SECONDS - started))s)"; done &
        heartbeat=$!
        trap 'kill $heartbeat 2>/dev/null' EXIT
        GOFLAGS=-mod=mod go build -trimpath -ldflags "-s -w $ldflags" -o "$BIN/$out.partial" "$pkg"
    )
    mv "$BIN/$out.partial" "$BIN/$out"
    echo "   built $out in $((SECONDS - started))s"
}

pulumi_on_path_matches() {
    local found
    found="$(command -v pulumi 2>/dev/null || true)"
    [[ -n "$found" && "$found" != "$VENV_BIN/pulumi" ]] && [[ "$("$found" version 2>/dev/null)" == "v$PULUMI_VERSION" ]]
}

if pulumi_on_path_matches; then
    step "using pulumi v$PULUMI_VERSION already on PATH: $(command -v pulumi)"
    PULUMI_BIN="$(command -v pulumi)"
else
    build_go "pulumi-$PULUMI_VERSION" pulumi github.com/pulumi/pulumi/pkg/v3/cmd/pulumi \
        "-X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=v$PULUMI_VERSION"
    PULUMI_BIN="$BIN/pulumi-$PULUMI_VERSION"
fi

KUBE_LDFLAGS="-X k8s.io/component-base/version.gitVersion=v$KUBE_VERSION -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=34"
KUBE_LDFLAGS="$KUBE_LDFLAGS -X k8s.io/client-go/pkg/version.gitVersion=v$KUBE_VERSION"
build_go "kube-apiserver-$KUBE_VERSION" kube k8s.io/kubernetes/cmd/kube-apiserver "$KUBE_LDFLAGS"
build_go "kube-controller-manager-$KUBE_VERSION" kube k8s.io/kubernetes/cmd/kube-controller-manager "$KUBE_LDFLAGS"
build_go "kubectl-$KUBE_VERSION" kube k8s.io/kubernetes/cmd/kubectl "$KUBE_LDFLAGS"
build_go "etcd-$ETCD_VERSION" kube ./cmd/etcd

# Link the toolchain into the virtualenv. The engine looks for its bundled plugins next to
# its own executable (resolved through symlinks), so `pulumi` is a hard link (or a copy).
mkdir -p "$VENV_BIN"
rm -f "$VENV_BIN/pulumi"
ln "$PULUMI_BIN" "$VENV_BIN/pulumi" 2>/dev/null || cp "$PULUMI_BIN" "$VENV_BIN/pulumi"
ln -sf "$BIN/kube-apiserver-$KUBE_VERSION" "$VENV_BIN/kube-apiserver"
ln -sf "$BIN/kube-controller-manager-$KUBE_VERSION" "$VENV_BIN/kube-controller-manager"
ln -sf "$BIN/kubectl-$KUBE_VERSION" "$VENV_BIN/kubectl"
ln -sf "$BIN/etcd-$ETCD_VERSION" "$VENV_BIN/etcd"

# Plugin launchers. The Go language host is not obtainable from the module proxy (403), so
# the engine's `python` language plugin is the project's own host (tools/pyhost); the
# dynamic-provider and policy launchers are the one-liners Pulumi ships beside its CLI.
write_launcher() {
    local name="$1"; shift
    printf '#!/bin/sh\nexec "%s" -u %s "$@"\n' "$VENV_BIN/python" "$*" > "$VENV_BIN/$name"
    chmod +x "$VENV_BIN/$name"
}
write_launcher pulumi-language-python "\"$ROOT/tools/pyhost/host.py\""
write_launcher pulumi-resource-pulumi-python "-m pulumi.dynamic"
write_launcher pulumi-analyzer-policy-python "-m pulumi.policy"

step "toolchain ready: $("$VENV_BIN/pulumi" version), kube-apiserver $("$VENV_BIN/kube-apiserver" --version 2>&1 | awk '{print $2}')"
