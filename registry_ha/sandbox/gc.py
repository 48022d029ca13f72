"""`local gc [--dry-run] [--delete-untagged]`: the cluster's garbage-collection sequence on the sandbox.

1. readOnly: every replica's config is re-rendered with the stack's `readOnly: true` (the program's
   builder adds storage.maintenance.readonly) and the replicas are replaced one at a time (rollout.py);
   then each replica is asked to delete a manifest that does not exist, and must answer 405.
2. `registry garbage-collect` with a replica's rendered config (only the listen addresses differ).
3. FLUSHDB of the private registry's Redis db only (settings.redis.registry_db); the cache's stays.
4. back to read-write (the same rolling replacement), always: also when 2 or 3 failed.

`<state>/maintenance.json` marks a sandbox between 1 and 4: a gc refuses to start on it (an
interrupted run), and `local restart` (the stack's writable config) clears it. `--dry-run` only
reports, with the replicas left writable. The cache is never collected (its proxy.ttl expiry is).
"""
from __future__ import annotations

import base64
import contextlib
import dataclasses
import datetime as dt
import http.client
import json
import socket
import ssl
import subprocess
import sys
import time
from typing import Iterator

from registry_ha import gc_job
from registry_ha.registry_config import dump_config
from registry_ha.sandbox import procs, rollout
from registry_ha.sandbox.core import Sandbox
from registry_ha.sandbox.errors import SandboxError
from registry_ha.sandbox.secrets import write_private

MAINTENANCE_FILE = "maintenance.json"
# a digest no manifest has: deleting it writes nothing, and tells a read-only replica (405) from a writable one (404)
PROBE_REPOSITORY = "registry-ha/read-only-probe"
PROBE_DIGEST = "sha256:" + "0" * 64
GC_TIMEOUT = 3600


# --------------------------------------------------------------------------- state


def maintenance_path(sb: Sandbox):
    return sb.state_dir / MAINTENANCE_FILE


def mark_maintenance(sb: Sandbox, phase: str) -> None:
    write_private(maintenance_path(sb), json.dumps({"phase": phase, "since": dt.datetime.now(dt.timezone.utc).isoformat()}))


def clear_maintenance(sb: Sandbox) -> None:
    maintenance_path(sb).unlink(missing_ok=True)


def refuse_unknown_state(sb: Sandbox, dry_run: bool) -> None:
    marker = maintenance_path(sb)
    if marker.exists() and not dry_run:
        since = json.loads(marker.read_text()).get("since", "?")
        raise SandboxError(f"a gc left this sandbox in maintenance since {since} ({marker}); if none is running, "
                           "return to read-write with `local restart --rolling`, then run gc again")
    if sb.settings.registry.read_only and not dry_run:
        raise SandboxError(f"Pulumi.{sb.stack}.yaml sets readOnly: true; remove it, `local restart --rolling`, "
                           "then run gc (it switches read-only itself)")
    unhealthy = [n for n in ["s3", "redis", *sb.replica_names(), "lb"] if not sb.healthy(n)]
    if unhealthy:
        raise SandboxError(f"{', '.join(unhealthy)} not healthy; `local status` shows why (`local up` starts it)")


# --------------------------------------------------------------------------- the steps


def _request(sb: Sandbox, address: str, method: str, path: str) -> int:
    """Status of one request to a replica, with the sandbox's TLS trust and credentials when on."""
    host, _, port = address.rpartition(":")
    if sb.tls:
        context = ssl.create_default_context(cafile=str(sb.ca_cert))
        conn: http.client.HTTPConnection = http.client.HTTPSConnection(host, int(port), timeout=10, context=context)
    else:
        conn = http.client.HTTPConnection(host, int(port), timeout=10)
    headers = {}
    passwords = sb.user_passwords()
    if passwords:
        user, password = next(iter(passwords.items()))
        headers["Authorization"] = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
    try:
        conn.request(method, path, headers=headers)
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def writes_refused(sb: Sandbox) -> dict[str, int]:
    """Each replica's answer to deleting a manifest that does not exist: 405 read-only, 404 writable."""
    path = f"/v2/{PROBE_REPOSITORY}/manifests/{PROBE_DIGEST}"
    return {name: _request(sb, sb.components[name].address, "DELETE", path) for name in sb.replica_names()}


def _with_read_only(sb: Sandbox, on: bool) -> None:
    sb.settings = dataclasses.replace(sb.settings, registry=dataclasses.replace(sb.settings.registry, read_only=on))


@contextlib.contextmanager
def read_only(sb: Sandbox, out=None) -> Iterator[None]:
    """Every replica read-only inside the block (verified), writable again after it, whatever happened."""
    out = out or sys.stderr
    binaries = sb.binaries()
    mark_maintenance(sb, "read-only")
    try:
        _with_read_only(sb, True)
        rollout.roll(sb, binaries, rolling=True, out=out)
        answers = writes_refused(sb)
        if set(answers.values()) != {405}:
            raise SandboxError(f"replicas still accept writes after the read-only switch: {answers}")
        yield
    finally:
        _with_read_only(sb, False)
        try:
            rollout.roll(sb, binaries, rolling=True, out=out)
            answers = writes_refused(sb)
        except (SandboxError, OSError) as exc:
            raise SandboxError(f"returning to read-write failed: {exc}; finish with `local restart --rolling`") from None
        if 405 in answers.values():
            raise SandboxError(f"replicas still read-only after switching back: {answers}; run `local restart --rolling`")
        clear_maintenance(sb)


def collect(sb: Sandbox, dry_run: bool, delete_untagged: bool) -> tuple[int, str]:
    """`registry garbage-collect` with registry-1's rendered config: (exit code, its output)."""
    config = sb.registry_config(sb.replica_names()[0])
    directory = sb.config_dir / "gc"
    directory.mkdir(parents=True, exist_ok=True)
    write_private(directory / "config.yml", dump_config(config))
    args = gc_job.gc_args(sb.settings, dry_run, delete_untagged)[2:]
    argv = [sb.binaries()["registry"], "garbage-collect", str(directory / "config.yml"), *args]
    log = sb.log_path("gc")
    log.parent.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=GC_TIMEOUT,
                          env=procs.minimal_env(sb.state_dir), cwd=sb.state_dir)
    log.write_text(proc.stdout + proc.stderr)
    return proc.returncode, proc.stdout + proc.stderr


def redis_call(address: str, password: str, db: int, *command: str, timeout: float = 5.0) -> str:
    """AUTH, SELECT db, then `command`; its reply as text (+OK -> OK, :3 -> 3). Errors raise SandboxError."""
    def encode(*parts: str) -> bytes:
        return b"*%d\r\n" % len(parts) + b"".join(b"$%d\r\n%s\r\n" % (len(p.encode()), p.encode()) for p in parts)

    host, _, port = address.rpartition(":")
    with socket.create_connection((host, int(port)), timeout=timeout) as sock:
        sock.settimeout(timeout)
        sock.sendall(encode("AUTH", password) + encode("SELECT", str(db)) + encode(*command))
        replies: list[str] = []
        data = b""
        while len(replies) < 3:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
            replies = [line.decode() for line in data.split(b"\r\n") if line[:1] in (b"+", b"-", b":")]
    if len(replies) < 3 or any(r.startswith("-") for r in replies):
        raise SandboxError(f"redis {' '.join(command[:1])} on db {db} failed: {replies}")
    return replies[2][1:]


def flush_registry_db(sb: Sandbox) -> None:
    reply = redis_call(sb.redis_address, sb.secrets()["redis_password"], sb.settings.redis.registry_db, "FLUSHDB")
    if reply != "OK":
        raise SandboxError(f"FLUSHDB answered {reply!r}")


# --------------------------------------------------------------------------- the command


def gc(state_dir, dry_run: bool = False, delete_untagged: bool = False, out=None) -> dict:
    """`local gc`: returns the summary, the timings and the exit code of garbage-collect."""
    out = out or sys.stderr
    sb = Sandbox.from_state(state_dir)
    if sb is None:
        raise SandboxError(f"no sandbox recorded in {state_dir}; start one with `local up`")
    refuse_unknown_state(sb, dry_run)
    t0 = time.monotonic()
    if dry_run:
        code, output = collect(sb, True, delete_untagged)
        return {"dry_run": True, "exit": code, "summary": gc_job.parse_summary(output),
                "seconds": round(time.monotonic() - t0, 2), "output_tail": output[-2000:]}
    timings: dict[str, float] = {}
    code, output = 1, ""
    with read_only(sb, out):
        timings["switch_on"] = time.monotonic() - t0
        out.write(f"local: every replica read-only ({timings['switch_on']:.1f}s); garbage-collect\n")
        t1 = time.monotonic()
        try:
            code, output = collect(sb, False, delete_untagged)
        finally:
            timings["garbage_collect"] = time.monotonic() - t1
            t2 = time.monotonic()
            flush_registry_db(sb)  # also after a failed sweep: it may have deleted blobs Redis still describes
            timings["flush"] = time.monotonic() - t2
            out.write(f"local: FLUSHDB of Redis db {sb.settings.redis.registry_db}; back to read-write\n")
        leaving = time.monotonic()
    timings["switch_off"] = time.monotonic() - leaving
    timings["total"] = time.monotonic() - t0  # pushes are refused somewhere for about this long
    return {"dry_run": False, "exit": code, "summary": gc_job.parse_summary(output),
            "seconds": {k: round(v, 2) for k, v in timings.items()}, "output_tail": output[-2000:]}
