#!/usr/bin/env bash
# Prove that a live registry works: /v2/, push + pull-back of a small image (skopeo), pods and
# per-pod pulls (kubectl), metrics, the Docker Hub cache, cleanup. See registry_ha/live_test.py.
#   ./scripts/test-registry-ha.sh [--registry HOST:PORT] [--mirror HOST:PORT[=IMAGE] ...] [--metrics HOST:PORT]
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/_python.sh"
exec "$PYTHON" -m registry_ha.live_test "$@"
