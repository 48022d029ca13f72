#!/usr/bin/env bash
# Benchmarks: ratios measured side by side on the local sandbox. See docs/performance.md.
#   ./scripts/bench.sh [--quick] [--only program,pulls,failover,redis,mirror,suite] [--with-suite]
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/_python.sh"
cd "$REPO_ROOT"
exec "$PYTHON" -m bench "$@"
