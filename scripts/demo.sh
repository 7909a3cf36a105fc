#!/usr/bin/env bash
# The main job on embedded defaults: set everything up, start the local services, and bring
# up the demo tenant stack (stacks/config/Pulumi.tenant-demo.yaml) on the local cluster.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$ROOT/scripts/setup.sh"
# shellcheck source=/dev/null
source "${CAMELEER_DATA_DIR:-$ROOT/.cameleer}/services.env"
cd "$ROOT"
pulumi stack select --create tenant-demo
pulumi up --yes --stack tenant-demo --policy-pack policy --message "demo: scripts/demo.sh"
