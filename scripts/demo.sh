#!/usr/bin/env bash
# The main job on embedded defaults: set everything up (scripts/setup.sh), then start the API
# and a worker on the local services and sign up a demo tenant to ACTIVE (scripts/demo.py).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$ROOT/scripts/setup.sh"
# shellcheck source=/dev/null
source "${CAMELEER_DATA_DIR:-$ROOT/.cameleer}/services.env"
exec "$ROOT/.venv/bin/python" "$ROOT/scripts/demo.py"
