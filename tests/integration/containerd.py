"""A throw-away containerd for the integration tests, and the registries' access logs.

containerd runs as root with its own --config: root, state, sockets and the `opt` plugin dir under
one temp dir (without the `opt` override it creates /opt/containerd on the host), the CRI plugin
off. `ctr images pull --hosts-dir DIR` reads DIR/<registry>/hosts.toml in the ctr process on every
command, with the same resolver code the CRI plugin uses inside the daemon, so the files under test
are exactly what a node's containerd would follow.
"""
from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path
from typing import Optional
from urllib.parse import parse_qs, urlsplit

from registry_ha.sandbox.procs import SAFE_PATH

ENV = {"PATH": SAFE_PATH}
DISABLED_PLUGINS = (
    "io.containerd.grpc.v1.cri",
    "io.containerd.snapshotter.v1.aufs",
    "io.containerd.snapshotter.v1.btrfs",
    "io.containerd.snapshotter.v1.zfs",
    "io.containerd.snapshotter.v1.devmapper",
)
ACCESS_LINE = re.compile(r'^\S+ \S+ \S+ \[[^\]]*\] "(\S+) (\S+) [^"]*" (\d{3}) \S+ "[^"]*" "([^"]*)"')


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


class Containerd:
    def __init__(self, work: Path, containerd: str, ctr: str, namespace: str = "test"):
        self.work = Path(work)
        self.work.mkdir(parents=True, exist_ok=True)
        self.socket = self.work / "containerd.sock"
        if len(str(self.socket)) > 100:
            raise ValueError(f"unix socket path too long: {self.socket}")
        self.binary, self.ctr_binary, self.namespace = containerd, ctr, namespace
        self.config = self.work / "config.toml"
        self.config.write_text("\n".join([
            "version = 2",
            f"root = {_quote(str(self.work / 'root'))}",
            f"state = {_quote(str(self.work / 'state'))}",
            "disabled_plugins = [" + ", ".join(_quote(p) for p in DISABLED_PLUGINS) + "]",
            "[grpc]", f"  address = {_quote(str(self.socket))}",
            "[ttrpc]", f"  address = {_quote(str(self.socket) + '.ttrpc')}",
            '[plugins."io.containerd.internal.v1.opt"]', f"  path = {_quote(str(self.work / 'opt'))}",
            "",
        ]))
        self.log_path = self.work / "containerd.log"
        self.proc: Optional[subprocess.Popen] = None

    def start(self, timeout: float = 30.0) -> "Containerd":
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([self.binary, "--config", str(self.config)], stdin=subprocess.DEVNULL, stdout=log,
                                     stderr=subprocess.STDOUT, env={**ENV, "HOME": str(self.work)}, start_new_session=True)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"containerd exited with {self.proc.returncode}:\n{self.log_tail()}")
            if self.socket.exists() and self.ctr("version").returncode == 0:
                return self
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"containerd not ready after {timeout}s:\n{self.log_tail()}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        self.proc = None
        # an unpack interrupted by a kill can leave a bind mount under root/: never leave one behind
        for mount_point in self._mounts():
            subprocess.run(["umount", "-l", mount_point], env=ENV, capture_output=True)

    def _mounts(self) -> list[str]:
        prefix = str(self.work.resolve())
        with open("/proc/self/mountinfo") as mountinfo:
            points = {line.split()[4] for line in mountinfo}
        return sorted((p for p in points if p == prefix or p.startswith(prefix + "/")), key=len, reverse=True)

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return ""

    def ctr(self, *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess:
        return subprocess.run([self.ctr_binary, "-a", str(self.socket), "-n", self.namespace, *args],
                              capture_output=True, text=True, timeout=timeout, env=ENV)

    def pull(self, ref: str, hosts_dir: Optional[Path] = None, timeout: float = 60.0,
             user: Optional[str] = None) -> subprocess.CompletedProcess:
        """What a node does for an image: resolve, fetch and unpack (native snapshotter: no overlay mounts).
        Without hosts_dir the registry is plain HTTP at the reference's own address. user ("name:password"):
        `ctr --user`, offered to whatever token realm the registry names."""
        where = ["--hosts-dir", str(hosts_dir)] if hosts_dir else ["--plain-http"]
        return self.ctr("images", "pull", "--snapshotter", "native", *where, *(["--user", user] if user else []), ref,
                        timeout=timeout)

    def push(self, ref: str, hosts_dir: Path) -> subprocess.CompletedProcess:
        return self.ctr("images", "push", "--hosts-dir", str(hosts_dir), ref)

    def tag_and_push(self, ref: str, source: str, user: Optional[str] = None) -> subprocess.CompletedProcess:
        """Tag `source` (already pulled) as `ref` and push it over plain HTTP, as `user` if given."""
        self.ctr("images", "rm", ref)
        tagged = self.ctr("images", "tag", source, ref)
        if tagged.returncode != 0:
            return tagged
        return self.ctr("images", "push", "--plain-http", *(["--user", user] if user else []), ref, timeout=120)

    def image_digest(self, ref: str) -> Optional[str]:
        for line in self.ctr("images", "ls").stdout.splitlines()[1:]:
            fields = line.split()
            if fields and fields[0] == ref:
                return next((f for f in fields if f.startswith("sha256:")), None)
        return None


class AccessLog:
    """The requests a Distribution process logged (its combined-format access lines) since a mark."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.offset = self.path.stat().st_size if self.path.exists() else 0

    def requests(self) -> list[dict]:
        data = self.path.read_bytes()[self.offset:] if self.path.exists() else b""
        found = []
        for line in data.decode(errors="replace").splitlines():
            match = ACCESS_LINE.match(line)
            if match:
                url = urlsplit(match.group(2))
                found.append({"method": match.group(1), "path": url.path, "query": parse_qs(url.query),
                              "status": int(match.group(3)), "user_agent": match.group(4)})
        return found

    def from_containerd(self) -> list[dict]:
        return [r for r in self.requests() if r["user_agent"].startswith("containerd/")]

    def from_caches(self) -> list[dict]:
        """What a pull-through cache asked its upstream (Distribution's Go HTTP client)."""
        return [r for r in self.requests() if r["user_agent"].startswith("Go-http-client/")]
