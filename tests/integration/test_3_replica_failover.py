"""3. SIGKILL one replica during a loop of pulls through the LB: no failed pull when the client
retries once; the restarted replica rejoins (haproxy marks it UP) and serves again."""
from __future__ import annotations

import os
import re
import signal
import threading
import time

import pytest

from registry_ha.sandbox import procs

from .oci import build_image, get_blob, get_manifest, push, sha256

pytestmark = pytest.mark.integration

VICTIM = "registry-2"


def lb_server_status(sandbox, server: str) -> str:
    return procs.haproxy_server_status(sandbox.state_dir / "lb.sock", server)


def requests_served(address: str) -> int:
    """Sum of registry_http_requests_total on a replica's debug port (a restarted process starts at 0)."""
    status = procs.http_status(address, "/metrics")
    assert status == 200
    import http.client

    host, port = address.split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=5)
    conn.request("GET", "/metrics")
    text = conn.getresponse().read().decode()
    conn.close()
    return int(sum(float(v) for v in re.findall(r"^registry_http_requests_total\{[^}]*\} (\S+)$", text, re.M)))


def pull_once(address: str, repo: str, image) -> None:
    status, headers, body = get_manifest(address, repo, image.tag)
    if status != 200 or sha256(body) != image.manifest_digest:
        raise IOError(f"manifest {status}")
    for digest in image.blob_digests:
        status, _, body = get_blob(address, repo, digest)
        if status != 200 or sha256(body) != digest:
            raise IOError(f"blob {digest[:15]} {status}")


def test_sigkill_replica_during_pulls(sandbox, skopeo_bin, workdir):
    image = build_image(workdir / "layout", "v1", layer_sizes=(64 * 1024, 1024 * 1024))
    assert push(skopeo_bin, image, sandbox.endpoint, "it/failover").returncode == 0

    stats = {"pulls": 0, "first_attempt_failures": 0, "failed": 0, "errors": []}
    lock = threading.Lock()
    stop = threading.Event()

    def client() -> None:
        while not stop.is_set():
            for attempt in (1, 2):  # one client retry, after a short backoff as real clients do
                if attempt == 2:
                    time.sleep(0.5)
                try:
                    pull_once(sandbox.endpoint, "it/failover", image)
                    break
                except Exception as exc:  # any way a pull can fail (a body cut short is an HTTPException, not an OSError)
                    with lock:
                        if attempt == 1:
                            stats["first_attempt_failures"] += 1
                        else:
                            stats["failed"] += 1
                            stats["errors"].append(repr(exc))
            with lock:
                stats["pulls"] += 1

    threads = [threading.Thread(target=client, daemon=True) for _ in range(4)]
    victim = sandbox.components[VICTIM]
    try:
        for t in threads:
            t.start()
        time.sleep(2)
        pulls_before_kill = stats["pulls"]
        os.kill(victim.pid, signal.SIGKILL)
        killed_at = time.monotonic()
        assert procs.wait_until(lambda: lb_server_status(sandbox, VICTIM).startswith("DOWN"), 10, 0.05)
        down_after = time.monotonic() - killed_at
        time.sleep(1.5)  # keep pulling with one replica gone
        sandbox.start(VICTIM)
        restarted_at = time.monotonic()
        assert procs.wait_until(lambda: lb_server_status(sandbox, VICTIM) == "UP", 15, 0.05)
        up_after = time.monotonic() - restarted_at
        debug = sandbox.debug_address(VICTIM)
        # the rejoined replica takes its share of the LB's traffic
        assert procs.wait_until(lambda: requests_served(debug) >= 20, 15, 0.2), requests_served(debug)
        served_after_rejoin = requests_served(debug)
    finally:
        stop.set()
        for t in threads:
            t.join(30)
        if not sandbox.healthy(VICTIM):
            sandbox.start(VICTIM)
    print(
        f"\nfailover: {stats['pulls']} pulls ({pulls_before_kill} before the kill), "
        f"{stats['first_attempt_failures']} failed first attempts, {stats['failed']} failed after 1 retry; "
        f"haproxy DOWN {down_after:.2f}s after SIGKILL, UP {up_after:.2f}s after restart; "
        f"{served_after_rejoin} requests served by the restarted replica"
    )
    assert stats["failed"] == 0, stats["errors"][:5]
    assert stats["pulls"] > pulls_before_kill > 0
