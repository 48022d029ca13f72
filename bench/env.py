"""The servers a benchmark run needs: the sandbox (imported, never modified) plus extra processes.

Everything binds 127.0.0.1 on free ports (never 5000), runs with an explicit minimal
environment (`procs.minimal_env`: no inherited AWS_CA_BUNDLE), lives in one temp state dir, and
is stopped by `close()` (callers use try/finally).
"""
from __future__ import annotations

import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

from registry_ha.registry_config import dump_config
from registry_ha.sandbox import procs
from registry_ha.sandbox.core import Sandbox
from registry_ha.sandbox.ports import free_port, free_port_base


@dataclass
class Proc:
    name: str
    address: str
    pid: int
    started: int
    log: Path

    def running(self) -> bool:
        return procs.is_running(self.pid, self.started)


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)


class BenchEnv:
    def __init__(self, stack: str = "staging", out=None, registry_version: Optional[str] = None):
        self.root = Path(tempfile.mkdtemp(prefix="registry-ha-bench-"))
        os.chmod(self.root, 0o700)
        self.stack = stack
        self.registry_version = registry_version
        self.out = out
        self.extra: list[Proc] = []
        self.sandbox: Optional[Sandbox] = None
        self.upstream: Optional[Proc] = None
        self.bins: dict[str, str] = {}

    def log(self, msg: str) -> None:
        if self.out is not None:
            self.out.write(f"bench: {msg}\n")
            self.out.flush()

    # ---- lifecycle
    def up(self) -> None:
        t0 = time.monotonic()
        self.sandbox = Sandbox(
            self.root / "sandbox",
            stack=self.stack,
            lb_port=free_port(),
            port_base=free_port_base(),
            registry_version=self.registry_version,
        )
        self.bins = self.sandbox.binaries()
        if getattr(self.sandbox, "auth", False) or getattr(self.sandbox, "tls", False):
            raise RuntimeError(f"stack {self.stack} enables auth/TLS; the benchmark client speaks plain, "
                               "anonymous HTTP (as the default sandbox does)")
        self.sandbox.up(out=open(os.devnull, "w"))
        # the cache's upstream: the sandbox's local stand-in, whose access log counts what the cache fetches
        stand_in = self.sandbox.components["upstream"]
        self.upstream = Proc("upstream", stand_in.address, stand_in.pid, stand_in.started, self.sandbox.log_path("upstream"))
        self.log(f"sandbox up in {time.monotonic() - t0:.1f}s (LB {self.sandbox.endpoint}, state {self.root})")

    def close(self) -> None:
        for proc in reversed(self.extra):
            procs.stop(proc.pid, proc.started, timeout=10)
        if self.sandbox is not None:
            self.sandbox.down(out=open(os.devnull, "w"))
        shutil.rmtree(self.root, ignore_errors=True)

    # ---- CPU accounting (utime + stime of every server process, from /proc)
    def server_pids(self) -> list[int]:
        pids = [p.pid for p in self.extra if p.running()]
        if self.sandbox is not None:
            pids += [c.pid for c in self.sandbox.components.values() if procs.is_running(c.pid, c.started)]
        return pids

    @staticmethod
    def cpu_seconds(pids: list[int]) -> float:
        ticks = os.sysconf("SC_CLK_TCK")
        total = 0
        for pid in pids:
            try:
                raw = Path(f"/proc/{pid}/stat").read_text()
            except OSError:
                continue
            fields = raw[raw.rindex(")") + 2:].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
        return total / ticks

    # ---- extra processes
    def spawn(self, name: str, argv: list[str], address: str, ready: Callable[[], bool], timeout: float = 30) -> Proc:
        log = self.root / "logs" / f"{name}.log"
        pid, started = procs.spawn(argv, log, procs.minimal_env(self.root), self.root)
        proc = Proc(name, address, pid, started, log)
        self.extra.append(proc)

        def ok() -> bool:
            if not proc.running():
                raise RuntimeError(f"{name} exited:\n{log.read_text(errors='replace')[-2000:]}")
            return ready()

        if not procs.wait_until(ok, timeout):
            raise RuntimeError(f"{name} not ready after {timeout}s; see {log}")
        return proc

    def stop(self, proc: Proc) -> None:
        procs.stop(proc.pid, proc.started, timeout=10)

    def replica_variant(self, name: str, mutate: Callable[[dict], None], base: str = "registry-1") -> Proc:
        """An extra replica whose config is the sandbox's own `registry_config(base)` with only the
        listen/debug addresses changed and `mutate` applied."""
        assert self.sandbox is not None
        cfg = self.sandbox.registry_config(base)
        address, debug = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
        cfg["http"]["addr"] = address
        cfg["http"]["debug"]["addr"] = debug
        mutate(cfg)
        path = self.root / f"{name}.yml"
        _write_private(path, dump_config(cfg))
        return self.spawn(name, [self.bins["registry"], "serve", str(path)], address,
                          lambda: procs.http_status(address, "/") == 200)

    def haproxy_variant(self, name: str, drop: tuple[str, ...] = (), add_to_defaults: tuple[str, ...] = ()) -> tuple[Proc, Path]:
        """A second haproxy over the same replicas: the sandbox's own haproxy.cfg with only the bind
        port and stats socket changed, the `drop` lines removed and `add_to_defaults` added."""
        assert self.sandbox is not None
        text = (self.sandbox.state_dir / "config" / "haproxy.cfg").read_text()
        port = free_port()
        sock = self.root / f"{name}.sock"
        lines = []
        for line in text.splitlines():
            stripped = line.strip()
            if stripped in drop:
                continue
            if stripped.startswith("stats socket"):
                line = f"    stats socket {sock} mode 600 level admin"
            if stripped.startswith("bind "):
                line = f"    bind 127.0.0.1:{port}"
            lines.append(line)
            if stripped == "defaults":
                lines.extend(f"    {extra}" for extra in add_to_defaults)
        missing = [d for d in drop if d not in {l.strip() for l in text.splitlines()}]
        if missing:  # the sandbox changed its LB tuning: a silent no-op variant would compare nothing
            raise RuntimeError(f"{', '.join(missing)} not in the sandbox's haproxy.cfg")
        cfg = self.root / f"{name}.cfg"
        _write_private(cfg, "\n".join(lines) + "\n")
        address = f"127.0.0.1:{port}"
        proc = self.spawn(name, [self.bins["haproxy"], "-db", "-f", str(cfg)], address,
                          lambda: procs.port_listening(port))
        return proc, sock

    def default_haproxy(self, name: str = "lb-default") -> tuple[Proc, Path]:
        """haproxy's defaults where the sandbox tunes them: no `retries 1` (so retries 3) and no
        `option redispatch`; same health checks and timeouts."""
        return self.haproxy_variant(name, drop=("retries 1", "option redispatch"))


# --------------------------------------------------------------------------- registry logs and config variants


ACCESS_LINE = re.compile(r'"(GET|HEAD|POST|PUT|PATCH|DELETE) (\S+) HTTP/[\d.]+" (\d{3})')


def access_log_requests(text: str) -> list[tuple[str, str, int]]:
    """(method, path, status) of every combined-log-format access line in a registry's log."""
    return [(m.group(1), m.group(2), int(m.group(3))) for m in ACCESS_LINE.finditer(text)]


def set_storage_redirect(cfg: dict) -> None:
    cfg["storage"]["redirect"] = {"disable": False}


def set_inmemory_cache(cfg: dict) -> None:
    cfg["storage"]["cache"] = {"blobdescriptor": "inmemory"}


