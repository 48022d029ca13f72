"""14. Offline: the README's quick start, verbatim, in a fresh clone inside a network namespace that has
only loopback. `local up` exits 0, every line of the quick start works (a push, pulls through the LB and
the cache, test-registry-ha.sh), `status` exits 0 with every component healthy (the cache in front of
its local stand-in), and nothing tried to leave 127.0.0.1.

The proof is the kernel's own count: in a namespace with no route off the machine, every attempt to
reach another address (a TCP connect, a UDP send or connect, a DNS query to the nameserver, here a
TEST-NET address so that any lookup is such an attempt) fails with ENETUNREACH and is counted in
/proc/net/snmp's Ip OutNoRoutes (Ip6OutNoRoutes for IPv6). The counters must not move during the quick
start, and the control at the end (one connect, one lookup) shows that they do move.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import IN_CI, copy_repo, require_binary
from registry_ha.sandbox import procs
from registry_ha.sandbox.core import Sandbox

from .conftest import REPO_ROOT

pytestmark = pytest.mark.integration

# what a process logs when it tried to reach a name or an address beyond loopback
OFF_MACHINE = re.compile(r"lookup \S+|no such host|network is unreachable|dial (tcp|udp)\S* (?!127\.0\.0\.1)", re.I)
QUICK_START = re.compile(r"<!-- checked: quick-start .*?-->\n```bash\n(?P<lines>.*?)```\n<!-- end checked: quick-start -->", re.S)


def quick_start() -> list[str]:
    """The README's quick-start commands, as an operator would paste them (comments dropped)."""
    match = QUICK_START.search((REPO_ROOT / "README.md").read_text())
    assert match, "README.md has no checked quick-start block"
    lines = [line.split("  #")[0].strip() for line in match.group("lines").splitlines()]
    return [line for line in lines if line]


def no_route_counts(path: Path) -> tuple[int, int]:
    """(Ip OutNoRoutes, Ip6OutNoRoutes) from a copy of /proc/net/snmp + /proc/net/snmp6."""
    lines = path.read_text().splitlines()
    header, values = [line.split() for line in lines if line.startswith("Ip:")][:2]
    ipv6 = next(int(line.split()[1]) for line in lines if line.startswith("Ip6OutNoRoutes"))
    return int(values[header.index("OutNoRoutes")]), ipv6


def test_the_readme_quick_start_works_offline_and_stays_on_loopback(bins, tmp_path):
    unshare, ip = require_binary("unshare"), require_binary("ip")
    if os.geteuid() != 0:  # a network and a mount namespace of its own need root (CI runs as root)
        (pytest.fail if IN_CI else pytest.skip)("needs root for unshare --net --mount")
    commands = quick_start()
    assert commands[0] == "./scripts/deploy-registry-ha.sh local up" and len(commands) >= 6
    clone = copy_repo(tmp_path / "clone")
    resolv, out = tmp_path / "resolv.conf", tmp_path / "out"
    resolv.write_text("nameserver 192.0.2.53\n")  # TEST-NET-1: any lookup is an off-machine attempt
    out.mkdir()
    steps = "\n".join(f"{command} > {out}/step{i}.out 2>&1 || {{ echo $? > {out}/failed; echo {i} >> {out}/failed; exit 1; }}"
                      for i, command in enumerate(commands))
    script = f"""
        set -u
        {ip} link set lo up || exit 90
        mount --bind {resolv} /etc/resolv.conf || exit 91
        cd {clone}
        cat /proc/net/snmp /proc/net/snmp6 > {out}/before
        ( {steps}
        )
        ./scripts/deploy-registry-ha.sh local status --json > {out}/status.json 2> {out}/status.err; echo $? > {out}/status.rc
        ./scripts/deploy-registry-ha.sh local down > /dev/null 2> {out}/down.err; echo $? > {out}/down.rc
        cat /proc/net/snmp /proc/net/snmp6 > {out}/after
        {sys.executable} -c "import socket; socket.socket().connect(('192.0.2.1', 80))" 2> /dev/null
        getent hosts registry-1.docker.io > /dev/null
        cat /proc/net/snmp /proc/net/snmp6 > {out}/control
    """
    env = {"PATH": procs.SAFE_PATH, "HOME": str(tmp_path), "LANG": "C.UTF-8"}
    state = clone / ".sandbox"  # local up's default state directory, in the clone
    try:
        proc = subprocess.run([unshare, "--net", "--mount", "sh", "-c", script], env=env, capture_output=True,
                              text=True, timeout=400)
    finally:
        sandbox = Sandbox.from_state(state)  # whatever happened inside, stop what up recorded
        if sandbox is not None:
            sandbox.down(out=open(os.devnull, "w"))
    assert proc.returncode == 0, proc.stdout + proc.stderr

    def read(name: str) -> str:
        return (out / name).read_text()

    if (out / "failed").exists():
        code, step = read("failed").split()
        pytest.fail(f"quick-start line {commands[int(step)]!r} exited {code}:\n{read(f'step{step}.out')[-3000:]}")
    status = json.loads(read("status.json"))
    assert read("status.rc").strip() == "0", status
    assert read("down.rc").strip() == "0", read("down.err")
    assert all(c["healthy"] and c["skipped"] is None for c in status["components"]), status
    assert {c["role"] for c in status["components"]} == {"s3", "redis", "registry", "upstream", "mirror", "lb"}
    assert (status["endpoint"], status["mirrors"]) == ("127.0.0.1:5000", {"docker.io": "127.0.0.1:25000"})  # the README's addresses
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+", status["mirror_upstreams"]["docker.io"]), status
    up = read("step0.out")
    assert f"cache {'docker.io:':<20} 127.0.0.1:25000 -> {status['mirror_upstreams']['docker.io']}" in up
    live_test = next(read(f"step{i}.out") for i, c in enumerate(commands) if c.startswith("./scripts/test-registry-ha.sh"))
    assert "RESULT PASS" in live_test and "PASS  mirror" in live_test, live_test

    before, after, control = (no_route_counts(out / name) for name in ("before", "after", "control"))
    assert after == before, f"attempts to leave 127.0.0.1 during the quick start (IPv4, IPv6): {before} -> {after}"
    assert control[0] >= after[0] + 2, "the control connect and lookup were not counted: the proof proves nothing"

    logged = {log.name: [line for line in log.read_text(errors="replace").splitlines() if OFF_MACHINE.search(line)]
              for log in sorted((state / "logs").glob("*.log"))}
    assert len(logged) == len(status["components"])
    assert {name: lines for name, lines in logged.items() if lines} == {}
