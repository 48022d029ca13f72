# Sourced by the scripts: the repository root and the Python that has the project's packages.
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [ -n "${REGISTRY_HA_PYTHON:-}" ]; then
  PYTHON="$REGISTRY_HA_PYTHON"
elif [ -x "$REPO_ROOT/.venv/bin/python" ]; then
  PYTHON="$REPO_ROOT/.venv/bin/python"
else
  echo "error: no project virtualenv in $REPO_ROOT/.venv; run ./scripts/bootstrap.sh first" >&2
  exit 1
fi
if ! "$PYTHON" -c "import pulumi, yaml" 2>/dev/null; then
  echo "error: $PYTHON lacks the project's packages (pulumi, pyyaml); run ./scripts/bootstrap.sh first" >&2
  exit 1
fi
export PYTHONPATH="$REPO_ROOT${PYTHONPATH:+:$PYTHONPATH}"
