#!/usr/bin/env bash
# Everything the project needs on a fresh machine of its kind (Debian, root, Go and Python
# 3.11 present): the virtualenv with pinned dependencies, the engine toolchain built from the
# Go module proxy (cached in ~/.cache/cameleer), Debian's Chromium for the browser tests, and
# the local services on loopback.
# Idempotent: a second run only checks.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=scripts/lib.sh
source "$ROOT/scripts/lib.sh"

require_tool python3.11 "Python 3.11 (the machine image's CPython, or Debian's python3.11)"
require_tool openssl "openssl (apt-get install openssl)"
require_tool curl "curl (apt-get install curl)"

stamp="$ROOT/.venv/.installed-$(sha256sum "$ROOT/pyproject.toml" | cut -c1-16)"
if [[ ! -f "$stamp" ]]; then
    step "creating the virtualenv .venv with the pinned dependencies"
    [[ -x "$ROOT/.venv/bin/python" ]] || python3.11 -m venv "$ROOT/.venv"
    "$ROOT/.venv/bin/pip" install -q --disable-pip-version-check -e "$ROOT[test]"
    rm -f "$ROOT"/.venv/.installed-* && touch "$stamp"
fi

"$ROOT/scripts/toolchain.sh"
"$ROOT/scripts/browser.sh"
"$ROOT/scripts/services.sh" start
