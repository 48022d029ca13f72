"""8. `local down` leaves no process and no listening port behind; `local up` after `down` still serves
the images pushed before. Runs the real command, scripts/deploy-registry-ha.sh local ..."""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from registry_ha import docs
from registry_ha.sandbox import procs

from .conftest import REPO_ROOT, free_port, free_port_base
from .oci import assert_dir_matches, build_image, pull_dir, push

pytestmark = pytest.mark.integration

SCRIPT = REPO_ROOT / "scripts" / "deploy-registry-ha.sh"


def local(*args: str) -> subprocess.CompletedProcess:
    env = {"PATH": os.environ.get("PATH", procs.SAFE_PATH), "HOME": os.environ.get("HOME", "/tmp")}
    return subprocess.run([str(SCRIPT), "local", *args], capture_output=True, text=True, timeout=180, env=env)


def processes_under(path: Path) -> list[str]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if str(path) in cmdline and procs.start_time(int(entry.name)) is not None:
            found.append(f"{entry.name}: {cmdline[:120]}")
    return found


def test_down_leaves_nothing_and_up_keeps_images(pool, skopeo_bin, tmp_path):
    upstream = pool.plain_registry("upstream-8")
    state = tmp_path / "state"
    opts = ["--state-dir", str(state), "--port", str(free_port()), "--port-base", str(free_port_base()),
            "--upstream", f"http://{upstream.address}"]
    try:
        up = local("up", "--json", *opts)
        assert up.returncode == 0, up.stderr
        status = json.loads(up.stdout)
        # exactly the keys docs/sandbox.md documents (registry_ha/docs.py generates that table)
        assert list(status) == list(docs.STATUS_KEYS)
        assert status["mirror_upstreams"] == {"docker.io": f"http://{upstream.address}"}
        assert status["mirrors"] == {"docker.io": next(c["address"] for c in status["components"] if c["name"] == "dockerhub-cache")}
        assert sorted(p.name for p in (state / "certs.d").iterdir()) == ["37.60.241.150:30500", "docker.io", "registry.neural-hive.local:5000"]
        assert (status["scheme"], status["auth_users"], status["ca_cert"]) == ("http", [], None)  # open by default
        assert (status["stack"], status["registry_image"]) == ("staging", "registry:3.1.1")
        assert all(list(c) == list(docs.STATUS_COMPONENT_KEYS) for c in status["components"])
        versions = {c["role"]: c["version"] for c in status["components"]}
        assert versions["registry"] == versions["mirror"] == "3.1.1", versions
        assert sorted({c["role"] for c in status["components"]}) == ["lb", "mirror", "redis", "registry", "s3"]
        assert [c["role"] for c in status["components"]].count("registry") == 3
        assert all(c["healthy"] and isinstance(c["pid"], int) for c in status["components"]), status
        assert (state / "secrets.json").stat().st_mode & 0o077 == 0

        image = build_image(tmp_path / "layout", "v1", layer_sizes=(64 * 1024, 512 * 1024))
        assert push(skopeo_bin, image, status["endpoint"], "it/persist").returncode == 0
        recorded = json.loads((state / "state.json").read_text())
        ports = sorted({p for c in recorded["components"].values() for p in c["ports"]})
        pids = [c["pid"] for c in status["components"]]

        down = local("down", *opts)
        assert down.returncode == 0, down.stderr
        assert [pid for pid in pids if procs.start_time(pid) is not None] == []
        assert processes_under(state) == []
        assert [p for p in ports if procs.port_listening(p)] == []
        after = json.loads(local("status", "--json", *opts).stdout)
        assert all(c["pid"] is None and not c["healthy"] for c in after["components"])

        again = local("up", "--json", *opts)
        assert again.returncode == 0, again.stderr
        dest = tmp_path / "after-restart"
        result = pull_dir(skopeo_bin, json.loads(again.stdout)["endpoint"], "it/persist:v1", dest)
        assert result.returncode == 0, result.stderr
        assert_dir_matches(dest, image)
        print(f"\ndown/up: {len(pids)} processes and {len(ports)} ports gone after down; image served after up")
    finally:
        local("down", *opts)
        upstream.stop()
    assert processes_under(state) == []
