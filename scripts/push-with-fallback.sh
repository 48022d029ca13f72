#!/usr/bin/env bash
# Push an image to REGISTRY_PRIMARY, else REGISTRY_SECONDARY, else ECR in AWS_REGION.
#   ./scripts/push-with-fallback.sh SOURCE NAME:TAG
# SOURCE: a Docker daemon image (team/app:1.0), an OCI layout directory, an OCI/docker archive,
# or any skopeo transport reference (oci:DIR:TAG, docker-daemon:IMG). See registry_ha/push_fallback.py.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/_python.sh"
exec "$PYTHON" -m registry_ha.push_fallback "$@"
