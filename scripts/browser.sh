#!/usr/bin/env bash
# The browser of the console's browser tests (tests/browser): Debian's Chromium at
# /usr/bin/chromium, driven by Playwright (pinned in pyproject.toml's `test` extra) through that
# executable. Playwright's own browser download (`playwright install`) is never used: its CDN is
# not reachable from the project's machines, and Debian's package gets security updates.
# Installed only when missing; idempotent.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=scripts/lib.sh
source "$ROOT/scripts/lib.sh"

CHROMIUM=/usr/bin/chromium

if [[ ! -x "$CHROMIUM" ]]; then
    step "installing Chromium from Debian (browser tests)"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null \
        || die "could not install Chromium (apt-get install chromium)"
fi
"$CHROMIUM" --version >/dev/null 2>&1 || die "$CHROMIUM does not start: $("$CHROMIUM" --version 2>&1 | tail -n 1)"
