#!/usr/bin/env bash
# Deploy, preview, roll back, render and run locally the HA registry. See README.md.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/_python.sh"
exec "$PYTHON" -m registry_ha.cli "$@"
