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


def require_root(what: str) -> None:
    """Tests that run a server as root (containerd). Not root: a failure under CI, a skip elsewhere."""
    if os.geteuid() != 0:
        message = f"{what} needs root (CI runs as root)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)


def require_registry(image: str = "registry:3.1.1") -> str:
    """The registry binary the sandbox runs for `image`: .tools/ for 3.x (bootstrap builds the default
    image's version), Debian's docker-registry for 2.8. Missing: a failure under CI, a skip elsewhere."""
    from registry_ha.sandbox.binaries import registry_binary
    from registry_ha.sandbox.errors import SandboxError

    try:
        return registry_binary(image)
    except SandboxError as exc:
        if IN_CI:
            pytest.fail(str(exc))
        pytest.skip(str(exc))


def require_token_server() -> str:
    """The docker_auth binary `local up --auth` runs (bootstrap builds it into .tools/). Missing: a failure
    under CI, a skip elsewhere."""
    from registry_ha.sandbox.errors import SandboxError
    from registry_ha.sandbox.token import binary

    try:
        return binary()
    except SandboxError as exc:
        if IN_CI:
            pytest.fail(str(exc))
        pytest.skip(str(exc))


def copy_repo(dest: Path, git_commit: bool = False) -> Path:
    """The project as a fresh clone holds it (tracked and new files; nothing git ignores) in `dest`, with
    the .venv and .tools that ./scripts/bootstrap.sh makes linked in, so its scripts run as they would
    there. git_commit: make it a git repository with one commit (rollback reads the checkout)."""
    import subprocess

    dest.mkdir(parents=True, exist_ok=True)
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            cwd=REPO_ROOT, capture_output=True, check=True).stdout.decode()
    for name in filter(None, listed.split("\0")):
        source = REPO_ROOT / name
        if source.is_file() and not source.is_symlink():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)
    for name in (".venv", ".tools"):
        if (REPO_ROOT / name).exists():
            (dest / name).symlink_to((REPO_ROOT / name).resolve())
    if git_commit:
        def git(*args):
            subprocess.run(["git", *args], cwd=dest, check=True, capture_output=True)
        git("init", "-q", "-b", "main")
        git("-c", "user.email=t@example.com", "-c", "user.name=t", "add", "-A")
        git("-c", "user.email=t@example.com", "-c", "user.name=t", "commit", "-q", "-m", "copy")
    return dest


FAKES = REPO_ROOT / "tests" / "fakes"
STACK_FILES = ("Pulumi.yaml", "Pulumi.staging.yaml", "Pulumi.production.yaml")


def stand_in_project(repo: Path, state: Path, monkeypatch) -> None:
    """A project dir with the shipped stack files, run in-process against the stand-in `pulumi`."""
    repo.mkdir(exist_ok=True)
    for name in STACK_FILES:
        shutil.copy(REPO_ROOT / name, repo / name)
    use_stand_in_pulumi(repo, state, monkeypatch)


def use_stand_in_pulumi(repo: Path, state: Path, monkeypatch) -> None:
    """The CLI, run in-process, works on `repo` and finds the stand-in `pulumi` (tests/fakes/pulumi)
    first on PATH, which records every call in state/calls.jsonl."""
    state.mkdir(exist_ok=True)
    monkeypatch.setenv("FAKE_PULUMI_DIR", str(state))
    monkeypatch.setenv("PATH", f"{FAKES}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("REGISTRY_HA_PROJECT_DIR", str(repo))
    monkeypatch.delenv("PULUMI_CONFIG_PASSPHRASE", raising=False)


def pulumi_argvs(state: Path) -> list[list[str]]:
    """The stand-in pulumi's calls, oldest first."""
    import json

    path = state / "calls.jsonl"
    return [json.loads(line)["argv"] for line in path.read_text().splitlines()] if path.exists() else []
