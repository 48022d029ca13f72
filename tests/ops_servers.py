"""Real servers for the operations-tooling tests: docker-registry (filesystem storage, optional
htpasswd auth or pull-through proxy), moto_server, and a silent listener that never answers.

Every server binds 127.0.0.1 on a free port, runs from a temp dir with an explicit minimal
environment (no inherited AWS_CA_BUNDLE), and is killed by `Servers.close()`.
"""
from __future__ import annotations

import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Optional

import yaml

from conftest import require_binary
from registry_ha.sandbox.ports import free_port


def dead_address() -> str:
    """An address where nothing listens: connection refused."""
    return f"127.0.0.1:{free_port()}"


def minimal_env(home: Path) -> dict:
    return {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(home), "LANG": "C.UTF-8"}


def wait_http(url: str, timeout: float = 15.0, proc: Optional[subprocess.Popen] = None, log: Optional[Path] = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited early: {log.read_text()[-2000:] if log else ''}")
        try:
            urllib.request.urlopen(url, timeout=1).close()
            return
        except urllib.error.HTTPError:
            return  # it answers (401 from an auth registry is fine)
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{url} did not answer within {timeout}s")


class Registry:
    def __init__(self, address: str, debug: str, proc: subprocess.Popen, log: Path):
        self.address, self.debug, self.proc, self.log = address, debug, proc, log


class Servers:
    def __init__(self, tmp: Path):
        self.tmp = tmp
        self.procs: list[subprocess.Popen] = []
        self.sockets: list[socket.socket] = []

    def registry(self, name: str, *, htpasswd: Optional[str] = None, proxy: Optional[str] = None,
                 delete: bool = True) -> Registry:
        binary = require_binary("docker-registry")
        root = self.tmp / name
        root.mkdir()
        port, debug = free_port(), free_port()
        config = {
            "version": 0.1,
            "log": {"level": "info", "accesslog": {"disabled": False}},
            "storage": {"filesystem": {"rootdirectory": str(root / "data")}, "delete": {"enabled": delete}},
            "http": {"addr": f"127.0.0.1:{port}", "secret": "test-secret",
                     "debug": {"addr": f"127.0.0.1:{debug}", "prometheus": {"enabled": True, "path": "/metrics"}}},
        }
        if htpasswd is not None:
            (root / "htpasswd").write_text(htpasswd)
            config["auth"] = {"htpasswd": {"realm": "test", "path": str(root / "htpasswd")}}
        if proxy is not None:
            config["proxy"] = {"remoteurl": proxy}
        (root / "config.yml").write_text(yaml.safe_dump(config))
        log = root / "log"
        proc = subprocess.Popen([binary, "serve", str(root / "config.yml")], cwd=root, env=minimal_env(root),
                                stdout=open(log, "wb"), stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self.procs.append(proc)
        wait_http(f"http://127.0.0.1:{port}/v2/", proc=proc, log=log)
        return Registry(f"127.0.0.1:{port}", f"127.0.0.1:{debug}", proc, log)

    def moto(self) -> str:
        binary = require_binary("moto_server")
        root = self.tmp / f"moto-{len(self.procs)}"
        root.mkdir()
        port = free_port()
        log = root / "log"
        proc = subprocess.Popen([binary, "-H", "127.0.0.1", "-p", str(port)], cwd=root, env=minimal_env(root),
                                stdout=open(log, "wb"), stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self.procs.append(proc)
        wait_http(f"http://127.0.0.1:{port}/moto-api/", proc=proc, log=log)
        return f"http://127.0.0.1:{port}"

    def silent(self) -> str:
        """Accepts TCP connections (kernel backlog) but never answers: clients time out."""
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        self.sockets.append(sock)
        return f"127.0.0.1:{sock.getsockname()[1]}"

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for sock in self.sockets:
            sock.close()


def push_oci(image, address: str) -> None:
    skopeo = require_binary("skopeo")
    subprocess.run([skopeo, "--insecure-policy", "copy", "--dest-tls-verify=false", image.reference,
                    f"docker://{address}"], check=True, capture_output=True, timeout=60)
