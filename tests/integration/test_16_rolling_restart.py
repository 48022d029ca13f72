"""16. `local restart --rolling` under a loop of pulls through the LB: no failed pull when a client retries
once, never more than one replica out of the LB at a time, every replica replaced. Then the image bump:
a 2.8.2 sandbox upgraded to 3.1.1 replica by replica (the stack's config rendered for each version),
under the same pulls, serving the images pushed before. p99 pull latency is printed, not asserted
(a speed figure; the failed-pull count is the property)."""
from __future__ import annotations

import os
import subprocess
import threading
import time
from pathlib import Path

import pytest
import yaml

from bench.stats import percentile
from conftest import require_registry
from registry_ha.sandbox import procs
from registry_ha.sandbox.binaries import binary_version
from registry_ha.sandbox.core import Sandbox

from .conftest import REPO_ROOT, free_port, free_port_base, replica_addresses
from .oci import assert_dir_matches, build_image, get_blob, get_manifest, pull_dir, push, sha256

pytestmark = pytest.mark.integration

SCRIPT = REPO_ROOT / "scripts" / "deploy-registry-ha.sh"
CLIENTS = 4


def local(state_dir: Path, *args: str) -> subprocess.CompletedProcess:
    env = {"PATH": os.environ.get("PATH", procs.SAFE_PATH), "HOME": os.environ.get("HOME", "/tmp")}
    return subprocess.run([str(SCRIPT), "local", *args, "--state-dir", str(state_dir)],
                          capture_output=True, text=True, timeout=600, env=env)


def _sandbox(tmp_path_factory, name: str, registry_version=None):
    directory = tmp_path_factory.mktemp(name)
    sb = Sandbox(directory, stack="staging", lb_port=free_port(), port_base=free_port_base(),
                 registry_version=registry_version)
    try:
        sb.up(out=open(os.devnull, "w"))
        yield directory
    finally:
        (Sandbox.from_state(directory) or sb).down(out=open(os.devnull, "w"))


@pytest.fixture(scope="module")
def state_dir(tmp_path_factory, bins):
    yield from _sandbox(tmp_path_factory, "restart-sandbox")


@pytest.fixture(scope="module")
def compat_dir(tmp_path_factory, bins):
    require_registry("registry:2.8.2")
    yield from _sandbox(tmp_path_factory, "upgrade-sandbox", registry_version="2.8")


class PullLoop:
    """CLIENTS threads pulling one image through the LB (manifest + every blob, digests checked), each
    pull retried once after 0.5 s; and a monitor sampling how many replicas haproxy has UP."""

    def __init__(self, sb: Sandbox, repo: str, image):
        self.sb, self.repo, self.image = sb, repo, image
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.seconds: list[float] = []
        self.first_attempt_failures = 0
        self.failed: list[str] = []
        self.min_up = len(sb.replica_names())
        self.threads = [threading.Thread(target=self._client, daemon=True) for _ in range(CLIENTS)]
        self.threads.append(threading.Thread(target=self._monitor, daemon=True))

    def _pull(self) -> None:
        status, _, body = get_manifest(self.sb.endpoint, self.repo, self.image.tag)
        if status != 200 or sha256(body) != self.image.manifest_digest:
            raise IOError(f"manifest {status}")
        for digest in self.image.blob_digests:
            status, _, body = get_blob(self.sb.endpoint, self.repo, digest)
            if status != 200 or sha256(body) != digest:
                raise IOError(f"blob {digest[:15]} {status}")

    def _client(self) -> None:
        while not self.stop.is_set():
            t0 = time.monotonic()
            for attempt in (1, 2):
                if attempt == 2:
                    time.sleep(0.5)
                try:
                    self._pull()
                    with self.lock:
                        self.seconds.append(time.monotonic() - t0)
                    break
                except Exception as exc:  # any way a pull can fail (a body cut short is an HTTPException, not an OSError)
                    with self.lock:
                        if attempt == 1:
                            self.first_attempt_failures += 1
                        else:
                            self.failed.append(repr(exc))

    def _monitor(self) -> None:
        sock = self.sb.state_dir / "lb.sock"
        while not self.stop.is_set():
            rows = procs.haproxy_stats(sock)
            up = sum(1 for name in self.sb.replica_names() if rows[name]["status"] == "UP")
            self.min_up = min(self.min_up, up)
            time.sleep(0.02)

    def __enter__(self) -> "PullLoop":
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(60)

    def report(self, what: str) -> str:
        p99 = percentile(self.seconds, 99)
        return (f"{what}: {len(self.seconds) + len(self.failed)} pulls through the LB by {CLIENTS} clients, "
                f"{self.first_attempt_failures} failed first attempts, {len(self.failed)} failed after 1 retry, "
                f"p50 {percentile(self.seconds, 50) * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms; "
                f"fewest replicas UP in the LB: {self.min_up}")


def run_under_pulls(state_dir: Path, repo: str, image, *restart_args: str):
    sb = Sandbox.from_state(state_dir)
    before = {name: sb.components[name].pid for name in sb.replica_names()}
    with PullLoop(sb, repo, image) as loop:
        time.sleep(1.0)
        pulls_before = len(loop.seconds)
        result = local(state_dir, "restart", *restart_args)
        time.sleep(1.0)
    assert result.returncode == 0, result.stderr
    assert pulls_before > 0 and len(loop.seconds) > pulls_before
    after = Sandbox.from_state(state_dir)
    assert all(after.components[n].pid != before[n] for n in before), "every replica is a new process"
    return loop, result, after


def test_rolling_restart_under_pulls_fails_no_pull(state_dir, skopeo_bin, workdir):
    sb = Sandbox.from_state(state_dir)
    image = build_image(workdir / "layout", "v1", layer_sizes=(64 * 1024, 1024 * 1024))
    assert push(skopeo_bin, image, sb.endpoint, "it/rolling").returncode == 0
    loop, result, _ = run_under_pulls(state_dir, "it/rolling", image, "--rolling")
    print("\n" + loop.report("rolling restart") + f"; {result.stdout.strip()}")
    assert loop.failed == [], loop.failed[:5]
    assert loop.min_up == len(sb.replica_names()) - 1  # one replica out at a time, and one at least was
    assert result.stderr.count("replaced, UP in the LB") == len(sb.replica_names())


def test_upgrade_28_to_311_replica_by_replica_under_pulls(compat_dir, skopeo_bin, workdir):
    sb = Sandbox.from_state(compat_dir)
    assert {binary_version(sb.components[n].argv[0]) for n in sb.replica_names()} == {"2.8.2"}
    image = build_image(workdir / "layout", "v1", layer_sizes=(64 * 1024, 1024 * 1024))
    assert push(skopeo_bin, image, sb.endpoint, "it/upgrade").returncode == 0
    loop, result, upgraded = run_under_pulls(compat_dir, "it/upgrade", image, "--rolling", "--registry-version", "3.1.1")
    print("\n" + loop.report("upgrade 2.8.2 -> 3.1.1") + f"; {result.stdout.strip()}")
    assert loop.failed == [], loop.failed[:5]
    assert loop.min_up == len(sb.replica_names()) - 1
    caches = [n for n, c in upgraded.components.items() if c.role == "mirror"]
    assert caches
    versions = {n: binary_version(upgraded.components[n].argv[0]) for n in [*upgraded.replica_names(), *caches]}
    assert set(versions.values()) == {"3.1.1"}, versions
    assert upgraded.settings.registry.image == "registry:3.1.1" and upgraded.settings.registry.schema == "v3"
    # the stack's config, rendered for v3 now: Redis `addrs`, not 2.8's `addr`
    config = yaml.safe_load((compat_dir / "config" / "registry-1" / "config.yml").read_text())
    assert config["redis"]["addrs"] == [upgraded.redis_address] and "addr" not in config["redis"]
    assert Sandbox.from_state(compat_dir).registry_version == "3.1.1"  # recorded: status/down see the new version
    for address in [upgraded.endpoint, *replica_addresses(upgraded)]:
        dest = workdir / f"pull-{address.replace(':', '_')}"
        pulled = pull_dir(skopeo_bin, address, "it/upgrade:v1", dest)
        assert pulled.returncode == 0, (address, pulled.stderr)
        assert_dir_matches(dest, image)
    after = build_image(workdir / "after", "v2", layer_sizes=(64 * 1024,))
    assert push(skopeo_bin, after, upgraded.endpoint, "it/upgrade").returncode == 0
