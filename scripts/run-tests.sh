#!/usr/bin/env bash
# The whole test suite: unit tests under Pulumi mocks, then integration tests against real
# servers (docker-registry, redis, haproxy, skopeo, SeaweedFS, moto) that the fixtures start.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
./scripts/bootstrap.sh
exec .venv/bin/python -m pytest "$@"
