"""Fixtures for the integration suite: real servers on free 127.0.0.1 ports, temp state dirs.

One sandbox (S3, Redis, 3 replicas, haproxy, cache) is shared by the whole session; tests that
disturb it (kill a replica, stop Redis) put it back before they finish. Every process started
here is stopped by a finalizer.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import pytest

from conftest import REPO_ROOT, require_binary, require_registry
from registry_ha.sandbox import procs
from registry_ha.sandbox.core import Sandbox
from registry_ha.sandbox.ports import free_port, free_port_base

SERVERS = ("redis-server", "haproxy", "weed", "skopeo")


@dataclass
class Server:
    """A process a test started (pid + start time), with its address."""

    name: str
    address: str
    pid: int
    started: int
    log: Path

    def stop(self) -> None:
        procs.stop(self.pid, self.started, timeout=10)

    def running(self) -> bool:
        return procs.is_running(self.pid, self.started)


class ServerPool:
    def __init__(self, root: Path):
        self.root = root
        self.servers: list[Server] = []

    def start(self, name: str, argv: list[str], address: str, ready=None, env_extra: Optional[dict] = None, timeout: float = 30) -> Server:
        log = self.root / f"{name}.log"
        pid, started = procs.spawn(argv, log, procs.minimal_env(self.root, env_extra), self.root)
        server = Server(name, address, pid, started, log)
        self.servers.append(server)
        port = int(address.rsplit(":", 1)[1])
        check = ready or (lambda: procs.port_listening(port))
        def ok() -> bool:
            if not server.running():
                raise RuntimeError(f"{name} exited:\n{log.read_text(errors='replace')[-2000:]}")
            return check()
        if not procs.wait_until(ok, timeout):
            raise RuntimeError(f"{name} not ready after {timeout}s:\n{log.read_text(errors='replace')[-2000:]}")
        return server

    def plain_registry(self, name: str) -> Server:
        """A filesystem-backed registry (the cache's local upstream)."""
        port = free_port()
        data = self.root / f"{name}-data"
        config = self.root / f"{name}.yml"
        config.write_text(
            textwrap.dedent(
                f"""\
                version: 0.1
                log: {{level: warn}}
                storage: {{filesystem: {{rootdirectory: {data}}}, delete: {{enabled: true}}}}
                http: {{addr: 127.0.0.1:{port}}}
                """
            )
        )
        address = f"127.0.0.1:{port}"
        return self.start(
            name,
            [require_registry(), "serve", str(config)],
            address,
            ready=lambda: procs.http_status(address, "/v2/") == 200,
        )

    def stop_all(self) -> None:
        for server in reversed(self.servers):
            server.stop()


@pytest.fixture(scope="session")
def bins() -> dict[str, str]:
    return {**{name: require_binary(name) for name in SERVERS}, "registry": require_registry()}


@pytest.fixture(scope="session")
def pool(tmp_path_factory, bins):
    servers = ServerPool(tmp_path_factory.mktemp("servers"))
    yield servers
    servers.stop_all()


@pytest.fixture(scope="session")
def upstream(pool) -> Server:
    """A plain registry of the tests' own (tests that start a sandbox of their own point it here)."""
    return pool.plain_registry("upstream")


class SandboxProcess:
    """One of a sandbox's processes, seen as a Server (address, stop, start, running)."""

    def __init__(self, sb: Sandbox, name: str):
        self.sb, self.name = sb, name
        self.address = sb.components[name].address
        self.log = sb.log_path(name)

    def stop(self) -> None:
        self.sb.stop(self.name)

    def start(self) -> None:
        self.sb.start(self.name)

    def running(self) -> bool:
        return procs.is_running(self.sb.components[self.name].pid, self.sb.components[self.name].started)


# The session sandbox runs the stack's Docker Hub cache and a second one (ghcr.io): every cache
# proxies the one local upstream stand-in.
SESSION_MIRRORS = [
    {"name": "dockerhub", "host": "docker.io", "serviceName": "docker-registry-mirror"},
    {"name": "ghcr", "host": "ghcr.io"},
]


def _session_sandbox(tmp_path_factory, name: str, registry_version: Optional[str] = None):
    sb = Sandbox(
        tmp_path_factory.mktemp(name),
        stack="staging",
        lb_port=free_port(),
        port_base=free_port_base(),
        registry_version=registry_version,
        overrides={"mirrors": json.dumps(SESSION_MIRRORS)},
    )
    try:
        sb.up(out=open(os.devnull, "w"))
        skipped = {name: c.skipped for name, c in sb.components.items() if c.skipped}
        if skipped and registry_version is None:  # only a 2.8 cache may stay down (no upstream at start)
            raise RuntimeError(f"the 3.1.1 sandbox skipped caches: {skipped}")
        yield sb
    finally:
        sb.down(out=open(os.devnull, "w"))


@pytest.fixture(scope="session")
def sandbox(tmp_path_factory, bins):
    """The staging stack on the registry the program deploys (3.1.1), its caches (docker.io, ghcr.io) in front
    of a local stand-in."""
    yield from _session_sandbox(tmp_path_factory, "sandbox")


@pytest.fixture(scope="session")
def sandbox_compat(tmp_path_factory, bins):
    """The same stack rendered for registry:2.8.2 (Debian's docker-registry): the compat lane."""
    require_registry("registry:2.8.2")
    yield from _session_sandbox(tmp_path_factory, "sandbox-2.8", registry_version="2.8")


@pytest.fixture(params=["3.1.1", "2.8"], scope="session")
def any_sandbox(request):
    """Both lanes, for the tests that `registry:2.8.x` images must pass too."""
    return request.getfixturevalue("sandbox" if request.param == "3.1.1" else "sandbox_compat")


@pytest.fixture(scope="session")
def stand_in(sandbox) -> SandboxProcess:
    """The session sandbox's upstream stand-in, which its caches proxy."""
    return SandboxProcess(sandbox, "upstream")


@pytest.fixture(scope="session")
def containerd(tmp_path_factory, bins):
    """One containerd (1.6.20, Debian's) for the session: root, its own --config under a temp dir."""
    from conftest import require_root

    from .containerd import Containerd

    require_root("containerd")
    work = Path(tempfile.mkdtemp(prefix="ctrd-", dir="/tmp"))  # short: unix socket paths are limited to 107 bytes
    daemon = Containerd(work, require_binary("containerd"), require_binary("ctr"))
    try:
        yield daemon.start()
    finally:
        daemon.stop()
        shutil.rmtree(work, ignore_errors=True)


@pytest.fixture
def workdir(tmp_path) -> Path:
    return tmp_path


@pytest.fixture(scope="session")
def skopeo_bin(bins) -> str:
    return bins["skopeo"]


def replica_addresses(sb: Sandbox) -> list[str]:
    return [sb.components[name].address for name in sb.replica_names()]


__all__ = ["REPO_ROOT", "free_port", "free_port_base", "replica_addresses"]
