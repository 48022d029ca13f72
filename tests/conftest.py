"""Shared fixtures. Real-server tests call `require_binary`: under CI a missing binary fails."""
from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require_binary(name: str) -> str:
    """Path of a binary the test needs. Missing: a failure under CI, a skip on a developer machine."""
    path = shutil.which(name)
    if path is None:
        venv_bin = REPO_ROOT / ".venv" / "bin" / name
        path = str(venv_bin) if venv_bin.exists() else None
    if path is None:
        message = f"{name} not found; run ./scripts/bootstrap.sh"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return path
