"""`local restart [--rolling] [--registry-version V]`: replace the registry processes of a running sandbox.

What a Deployment rollout does to the cluster's pods, done to processes: each replica is taken out of
the load balancer first (haproxy `state maint`: no new requests and no health checks, as endpoints
are removed before the preStop hook ends), its in-flight requests finish (SIGTERM, Distribution's
http.draintimeout), the new process starts with the config rendered now, and only once haproxy has
checked it and reports it UP again does the next replica go. So at most one replica is out of
rotation at any time. Without --rolling every
replica restarts at once (a short outage: for development).

`--registry-version` is the image bump: the stack's config is rendered for the new version (the 2.8
and 3.x schemas differ) and the new binary replaces the old one replica by replica, so for a while
both versions serve the same bucket and Redis db. A cache restarts after the replicas when its
config or binary changed (one process each here; on the cluster they surge).
"""
from __future__ import annotations

import json
import socket
import sys
import time
from pathlib import Path
from typing import Optional

from registry_ha.sandbox import procs, registry
from registry_ha.sandbox.binaries import lane_image
from registry_ha.sandbox.core import Sandbox
from registry_ha.sandbox.errors import SandboxError

LB_BACKEND = "replicas"
UP_TIMEOUT = 30.0


def haproxy_command(sock_path: Path, command: str) -> str:
    """One command on haproxy's admin socket (`set server ...`); its answer (empty when it worked)."""
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(2)
        sock.connect(str(sock_path))
        sock.sendall(command.encode() + b"\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    return data.decode().strip()


def lb_socket(sb: Sandbox) -> Path:
    return sb.state_dir / "lb.sock"


def lb_status(sb: Sandbox, name: str) -> str:
    return procs.haproxy_server_status(lb_socket(sb), name, LB_BACKEND)


def lb_sessions(sb: Sandbox, name: str) -> int:
    return int(procs.haproxy_stats(lb_socket(sb), LB_BACKEND)[name].get("scur") or 0)


def set_lb_state(sb: Sandbox, name: str, state: str) -> None:
    answer = haproxy_command(lb_socket(sb), f"set server {LB_BACKEND}/{name} state {state}")
    if answer:
        raise SandboxError(f"haproxy refused `set server {LB_BACKEND}/{name} state {state}`: {answer}")


def stop_until_ports_free(sb: Sandbox, name: str, timeout: float = 10.0) -> None:
    """Stop a process and wait until its ports can be bound again: under load its main thread shows as
    exited (a zombie) a moment before its other threads let go of its sockets."""
    sb.stop(name)
    ports = sb.components[name].ports
    if not procs.wait_until(lambda: all(procs.port_free(port) for port in ports), timeout, 0.05):
        raise SandboxError(f"{name} stopped but its ports {ports} are still taken after {timeout:.0f}s")


def replace_replica(sb: Sandbox, name: str, binaries: dict[str, str]) -> float:
    """Take `name` out of the LB, stop it, start it with its current config, wait until the LB has it UP.
    Checks are off in maintenance, so UP after `ready` comes from checks of the new process."""
    t0 = time.monotonic()
    set_lb_state(sb, name, "maint")
    drain = max(1, min(sb.settings.registry.pre_stop_seconds, 10))
    procs.wait_until(lambda: lb_sessions(sb, name) == 0, drain, 0.05)
    stop_until_ports_free(sb, name)
    sb.start(name, binaries)
    set_lb_state(sb, name, "ready")
    if not procs.wait_until(lambda: lb_status(sb, name) == "UP", UP_TIMEOUT, 0.05):
        raise SandboxError(f"{name} restarted but haproxy has it {lb_status(sb, name)} after {UP_TIMEOUT:.0f}s; "
                           f"see {sb.log_path(name)}")
    return time.monotonic() - t0


def _config_texts(sb: Sandbox) -> dict[str, Optional[str]]:
    texts = {}
    for name, comp in sb.components.items():
        if comp.role in ("registry", "mirror"):
            path = sb.config_dir / name / "config.yml"
            texts[name] = path.read_text() if path.exists() else None
    return texts


def roll(sb: Sandbox, binaries: dict[str, str], rolling: bool = True, out=None) -> dict[str, float]:
    """Render every registry config from `sb.settings` and replace the replicas (one at a time when
    rolling), then each cache whose config or binary changed. Returns seconds per replaced process."""
    out = out or sys.stderr
    if not procs.is_running(sb.components["lb"].pid, sb.components["lb"].started):
        raise SandboxError("the load balancer is not running; start the sandbox first (`local up`)")
    before = _config_texts(sb)
    registry.write_configs(sb)
    after = _config_texts(sb)
    sb.save()
    seconds: dict[str, float] = {}
    replicas = sb.replica_names()
    if rolling:
        for name in replicas:
            seconds[name] = replace_replica(sb, name, binaries)
            out.write(f"local: {name:<11} replaced, UP in the LB ({seconds[name]:.1f}s)\n")
    else:
        t0 = time.monotonic()
        for name in replicas:
            stop_until_ports_free(sb, name)
        for name in replicas:
            sb.start(name, binaries)
            seconds[name] = time.monotonic() - t0
            out.write(f"local: {name:<11} restarted ({seconds[name]:.1f}s)\n")
    for name in [n for n, c in sb.components.items() if c.role == "mirror"]:
        cache = sb.components[name]
        if not procs.is_running(cache.pid, cache.started):
            continue
        if before.get(name) != after.get(name) or cache.argv[:1] != [binaries["registry"]]:
            t0 = time.monotonic()
            stop_until_ports_free(sb, name)
            sb.start(name, binaries)
            seconds[name] = time.monotonic() - t0
            out.write(f"local: {name:<11} restarted ({seconds[name]:.1f}s)\n")
    return seconds


def adopt(state_dir: Path | str, registry_version: Optional[str] = None) -> Sandbox:
    """The running sandbox of `state_dir`, re-planned for `registry_version` when one is given: the
    version is recorded in its state.json and the sandbox read back from it, so every other option it
    was started with stays (the running processes are adopted; `roll` replaces them)."""
    current = Sandbox.from_state(state_dir)
    if current is None:
        raise SandboxError(f"no sandbox recorded in {state_dir}; start one with `local up`")
    if registry_version is None or lane_image(registry_version) == current.settings.registry.image:
        return current
    path = current.state_dir / "state.json"
    state = json.loads(path.read_text())
    state["registry_version"] = registry_version
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(state, indent=2))
    tmp.replace(path)
    return Sandbox.from_state(state_dir)


def restart(state_dir: Path | str, rolling: bool = True, registry_version: Optional[str] = None, out=None) -> dict:
    """`local restart`: the replicas (and any changed cache) replaced with the stack's config rendered now."""
    from registry_ha.sandbox.gc import clear_maintenance

    out = out or sys.stderr
    sb = adopt(state_dir, registry_version)
    binaries = sb.binaries(install=True, out=out)
    t0 = time.monotonic()
    seconds = roll(sb, binaries, rolling, out)
    if not sb.settings.registry.read_only:
        clear_maintenance(sb)  # the stack's own config is writable: an interrupted gc is over
    return {"image": sb.settings.registry.image, "rolling": rolling, "seconds": round(time.monotonic() - t0, 2),
            "replaced": {k: round(v, 2) for k, v in seconds.items()}}
