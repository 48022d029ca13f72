"""A throw-away containerd for the tests (root, Linux): config, root, state, sockets and the `opt` plugin
dir all under one temporary directory, the CRI plugin off; `ctr` talks to it. Debian 12's containerd 1.6.20.

`ctr` resolves registries and fetches tokens in its own process (`--user` offers the credentials to
whatever realm the registry names), so it is containerd's own client code talking to the registry.
"""
from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Optional

from registry_ha.sandbox import procs

DISABLED_PLUGINS = (
    "io.containerd.grpc.v1.cri",
    "io.containerd.snapshotter.v1.aufs",
    "io.containerd.snapshotter.v1.btrfs",
    "io.containerd.snapshotter.v1.zfs",
    "io.containerd.snapshotter.v1.devmapper",
)


def config_toml(work: Path) -> str:
    # Without the `opt` path containerd creates /opt/containerd on the host.
    return "\n".join([
        "version = 2",
        f'root = "{work / "root"}"',
        f'state = "{work / "state"}"',
        "disabled_plugins = [" + ", ".join(f'"{p}"' for p in DISABLED_PLUGINS) + "]",
        "[grpc]",
        f'  address = "{work / "containerd.sock"}"',
        "[ttrpc]",
        f'  address = "{work / "containerd.sock.ttrpc"}"',
        '[plugins."io.containerd.internal.v1.opt"]',
        f'  path = "{work / "opt"}"',
        "",
    ])


def _mounts_under(prefix: Path) -> list[str]:
    prefix_s = str(prefix.resolve())
    found = set()
    with open("/proc/self/mountinfo") as fh:
        for line in fh:
            point = line.split()[4]
            if point == prefix_s or point.startswith(prefix_s + "/"):
                found.add(point)
    return sorted(found, key=lambda p: p.count("/"), reverse=True)


class Containerd:
    def __init__(self, work: Path, containerd: str, ctr: str):
        self.work, self.containerd, self.ctr_binary = Path(work), containerd, ctr
        self.work.mkdir(parents=True, exist_ok=True)
        self.socket = self.work / "containerd.sock"
        if len(str(self.socket)) + len(".ttrpc") > 107:
            raise ValueError(f"unix socket path too long: {self.socket}")
        (self.work / "config.toml").write_text(config_toml(self.work))
        self.log = self.work / "containerd.log"
        self.proc: Optional[subprocess.Popen] = None

    def start(self, timeout: float = 30.0) -> "Containerd":
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen([self.containerd, "--config", str(self.work / "config.toml")],
                                         stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                         env=procs.minimal_env(self.work), start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"containerd exited {self.proc.returncode}: {self.log.read_text()[-2000:]}")
            if self.socket.exists() and self.ctr("version").returncode == 0:
                return self
            time.sleep(0.05)
        self.stop()
        raise TimeoutError(f"containerd not ready after {timeout}s")

    def ctr(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run([self.ctr_binary, "-a", str(self.socket), "-n", "test", *args], capture_output=True,
                              text=True, env=procs.minimal_env(self.work), timeout=timeout, stdin=subprocess.DEVNULL)

    def pull(self, ref: str, user: Optional[str] = None, hosts_dir: Optional[Path] = None) -> subprocess.CompletedProcess:
        args = ["images", "pull", "--snapshotter", "native", "--plain-http"]
        args += ["--hosts-dir", str(hosts_dir)] if hosts_dir else []
        args += ["--user", user] if user else []
        return self.ctr(*args, ref)

    def push(self, ref: str, source: str, user: Optional[str] = None) -> subprocess.CompletedProcess:
        """Tag `source` (already pulled) as `ref` and push it."""
        self.ctr("images", "rm", ref)
        tagged = self.ctr("images", "tag", source, ref)
        if tagged.returncode != 0:
            return tagged
        return self.ctr("images", "push", "--plain-http", *(["--user", user] if user else []), ref)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        self.proc = None
        for point in _mounts_under(self.work):  # a killed unpack can leave bind mounts behind
            subprocess.run(["umount", "-l", point], capture_output=True)
