"""11. Offline: the real `local up` in a fresh network namespace that has only loopback exits 0, `status`
then exits 0 with every component healthy (the cache in front of its local stand-in), and nothing
tried to leave 127.0.0.1.

The proof is the kernel's own count: in a namespace with no route off the machine, every attempt to
reach another address (a TCP connect, a UDP send or connect, a DNS query to the nameserver, here a
TEST-NET address so that a lookup is such an attempt) fails with ENETUNREACH and is counted in
/proc/net/snmp's Ip OutNoRoutes (Ip6OutNoRoutes for IPv6). The counters must not move during
up/status/down, and the control at the end (one connect, one lookup) shows that they do move.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import IN_CI, require_binary
from registry_ha.sandbox import procs
from registry_ha.sandbox.core import Sandbox

from .conftest import REPO_ROOT

pytestmark = pytest.mark.integration

DEPLOY = REPO_ROOT / "scripts" / "deploy-registry-ha.sh"
# what a process logs when it tried to reach a name or an address beyond loopback
OFF_MACHINE = re.compile(r"lookup \S+|no such host|network is unreachable|dial (tcp|udp)\S* (?!127\.0\.0\.1)", re.I)


def no_route_counts(path: Path) -> tuple[int, int]:
    """(Ip OutNoRoutes, Ip6OutNoRoutes) from a copy of /proc/net/snmp + /proc/net/snmp6."""
    lines = path.read_text().splitlines()
    header, values = [line.split() for line in lines if line.startswith("Ip:")][:2]
    ipv6 = next(int(line.split()[1]) for line in lines if line.startswith("Ip6OutNoRoutes"))
    return int(values[header.index("OutNoRoutes")]), ipv6


def test_local_up_offline_reaches_nothing_beyond_loopback(bins, tmp_path):
    unshare, ip = require_binary("unshare"), require_binary("ip")
    if os.geteuid() != 0:  # a network and a mount namespace of its own need root (CI runs as root)
        (pytest.fail if IN_CI else pytest.skip)("needs root for unshare --net --mount")
    resolv = tmp_path / "resolv.conf"
    resolv.write_text("nameserver 192.0.2.53\n")  # TEST-NET-1: any lookup is an off-machine attempt
    state, out = tmp_path / "sandbox", tmp_path / "out"
    out.mkdir()
    script = f"""
        set -u
        {ip} link set lo up || exit 90
        mount --bind {resolv} /etc/resolv.conf || exit 91
        cat /proc/net/snmp /proc/net/snmp6 > {out}/before
        {DEPLOY} local up --state-dir {state} > {out}/up.out 2> {out}/up.err; echo $? > {out}/up.rc
        {DEPLOY} local status --json --state-dir {state} > {out}/status.json 2> {out}/status.err; echo $? > {out}/status.rc
        {DEPLOY} local down --state-dir {state} > /dev/null 2> {out}/down.err; echo $? > {out}/down.rc
        cat /proc/net/snmp /proc/net/snmp6 > {out}/after
        {sys.executable} -c "import socket; socket.socket().connect(('192.0.2.1', 80))" 2> /dev/null
        getent hosts registry-1.docker.io > /dev/null
        cat /proc/net/snmp /proc/net/snmp6 > {out}/control
    """
    env = {"PATH": procs.SAFE_PATH, "HOME": str(tmp_path), "LANG": "C.UTF-8"}
    try:
        proc = subprocess.run([unshare, "--net", "--mount", "sh", "-c", script], env=env, capture_output=True,
                              text=True, timeout=300)
    finally:
        sandbox = Sandbox.from_state(state)  # whatever happened inside, stop what up recorded
        if sandbox is not None:
            sandbox.down(out=open(os.devnull, "w"))
    assert proc.returncode == 0, proc.stdout + proc.stderr

    def read(name: str) -> str:
        return (out / name).read_text()

    assert read("up.rc").strip() == "0", read("up.err")
    status = json.loads(read("status.json"))
    assert read("status.rc").strip() == "0", status
    assert read("down.rc").strip() == "0", read("down.err")
    assert all(c["healthy"] and c["skipped"] is None for c in status["components"]), status
    assert {c["role"] for c in status["components"]} == {"s3", "redis", "registry", "upstream", "mirror", "lb"}
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+", status["mirror_upstream"]), status
    assert f"cache:         {status['mirror']} -> {status['mirror_upstream']}" in read("up.out")

    before, after, control = (no_route_counts(out / name) for name in ("before", "after", "control"))
    assert after == before, f"attempts to leave 127.0.0.1 during up/status/down (IPv4, IPv6): {before} -> {after}"
    assert control[0] >= after[0] + 2, "the control connect and lookup were not counted: the proof proves nothing"

    logged = {log.name: [line for line in log.read_text(errors="replace").splitlines() if OFF_MACHINE.search(line)]
              for log in sorted((state / "logs").glob("*.log"))}
    assert len(logged) == len(status["components"])
    assert {name: lines for name, lines in logged.items() if lines} == {}
