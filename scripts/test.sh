#!/usr/bin/env bash
# The whole test suite: sets up everything (scripts/setup.sh), then runs pytest over tests/,
# unit and integration tests alike, against the real engine and local services.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$ROOT/scripts/setup.sh"
# shellcheck source=/dev/null
source "${CAMELEER_DATA_DIR:-$ROOT/.cameleer}/services.env"
cd "$ROOT"
exec .venv/bin/python -m pytest "$@"
