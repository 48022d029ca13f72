"""4. Redis is a cache, not a dependency: with Redis stopped pulls and pushes still succeed; with Redis
hung (SIGSTOP) pulls still succeed within a bound set by the configured redis timeouts."""
from __future__ import annotations

import os
import signal
import statistics
import time

import pytest

from registry_ha.sandbox import procs

from .oci import assert_dir_matches, build_image, get_blob, get_manifest, pull_dir, push, sha256

pytestmark = pytest.mark.integration

HUNG_PULL_BOUND_S = 15.0  # without timeouts a pull hangs > 20 s
# 3.1.1 with go-redis' default 3 retries: p50 1.6 s per pull with Redis stopped (0.03 s up); no retries
# (maxretries -1): about 2x the Redis-up p50. The benchmark measures the ratio; this bound only catches
# the retrying configuration, with room for a loaded machine.
STOPPED_PULL_P50_BOUND_S = 0.6


def timed_pull(address: str, repo: str, image) -> float:
    t0 = time.monotonic()
    status, _, body = get_manifest(address, repo, image.tag)
    assert status == 200 and sha256(body) == image.manifest_digest, status
    for digest in image.blob_digests:
        status, _, body = get_blob(address, repo, digest, )
        assert status == 200 and sha256(body) == digest, (digest, status)
    return time.monotonic() - t0


def test_redis_stopped_then_hung(sandbox, skopeo_bin, workdir):
    image = build_image(workdir / "layout", "v1", layer_sizes=(32 * 1024, 256 * 1024))
    assert push(skopeo_bin, image, sandbox.endpoint, "it/redis").returncode == 0
    warm = [timed_pull(sandbox.endpoint, "it/redis", image) for _ in range(5)]
    redis = sandbox.components["redis"]
    try:
        # --- Redis stopped: connection refused on every cache operation
        sandbox.stop("redis")
        assert not procs.port_listening(sandbox.ports.redis)
        stopped = [timed_pull(sandbox.endpoint, "it/redis", image) for _ in range(10)]
        fresh = build_image(workdir / "layout2", "v2", layer_sizes=(48 * 1024, 128 * 1024))
        t0 = time.monotonic()
        result = push(skopeo_bin, fresh, sandbox.endpoint, "it/redis-down")
        push_seconds = time.monotonic() - t0
        assert result.returncode == 0, result.stderr
        dest = workdir / "pulled-while-down"
        assert pull_dir(skopeo_bin, sandbox.endpoint, "it/redis-down:v2", dest).returncode == 0
        assert_dir_matches(dest, fresh)
        sandbox.start("redis")

        # --- Redis hung: accepts connections, never answers
        os.kill(redis.pid, signal.SIGSTOP)
        hung = [timed_pull(sandbox.endpoint, "it/redis", image) for _ in range(3)]
    finally:
        if procs.is_running(redis.pid, redis.started):
            os.kill(redis.pid, signal.SIGCONT)
        else:
            sandbox.start("redis")
    assert sandbox.healthy("redis")
    print(
        f"\nredis: pull p50 warm {statistics.median(warm):.3f}s, redis stopped {statistics.median(stopped):.3f}s "
        f"(10/10 ok, push {push_seconds:.2f}s ok), redis SIGSTOPped {statistics.median(hung):.2f}s "
        f"(max {max(hung):.2f}s, 3/3 ok)"
    )
    assert max(hung) < HUNG_PULL_BOUND_S
    assert statistics.median(stopped) < STOPPED_PULL_P50_BOUND_S
