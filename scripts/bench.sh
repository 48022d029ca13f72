#!/usr/bin/env bash
# Benchmarks (issue 6): ratios measured side by side on the local sandbox. See the README's Performance section.
#   ./scripts/bench.sh [--quick] [--only program,pulls,failover,redis,mirror,suite] [--with-suite]
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/_python.sh"
cd "$REPO_ROOT"
exec "$PYTHON" -m bench "$@"
