"""5. The pull-through cache serves what it holds with its upstream down (and 3.1.1 restarts then), refuses
what it never cached, and refuses pushes (405).

On 3.1.1 (what the program deploys): fill the cache from its upstream, stop the upstream, restart
the cache process. It starts (proxy.exec: no upstream contact at startup), serves what it holds by
tag and by digest, fails fast and clearly for an image it never cached, and pulls uncached images
again once the upstream is back. A push to the cache is refused with 405.

On 2.8 (compat lane): the cache serves what it holds while the upstream is down, but it cannot
start then: 2.8 has no proxy.exec and contacts its upstream while starting (documented).
"""
from __future__ import annotations

import time

import botocore.exceptions
import pytest

from registry_ha.sandbox import procs

from .conftest import SandboxProcess
from .oci import assert_dir_matches, build_image, pull_dir, push, request, sha256

pytestmark = pytest.mark.integration

REPO = "library/cached"
HUB = "dockerhub-cache"  # the Docker Hub cache's component (the sandbox names processes as the program names components)


def cached_in_s3(sb, digest: str) -> bool:
    """The proxy writes a blob to S3 shortly *after* answering the client: look for the object itself."""
    hexdigest = digest.split(":", 1)[1]
    root = sb.cache_of(HUB).root_directory.strip("/")
    key = f"{root}/docker/registry/v2/blobs/sha256/{hexdigest[:2]}/{hexdigest}/data"
    try:
        obj = sb.s3_client().get_object(Bucket=sb.bucket, Key=key)
    except botocore.exceptions.ClientError:
        return False
    return sha256(obj["Body"].read()) == digest


def fill_cache(sb, skopeo_bin, workdir, repo: str):
    """Push an image to the upstream stand-in, pull it through the cache, wait until S3 has all of it."""
    image = build_image(workdir / f"layout-{repo.replace('/', '_')}", "v1", layer_sizes=(64 * 1024, 512 * 1024))
    assert push(skopeo_bin, image, sb.components["upstream"].address, repo).returncode == 0
    cold = pull_dir(skopeo_bin, sb.mirror_address(), f"{repo}:v1", workdir / f"cold-{repo.replace('/', '_')}")
    assert cold.returncode == 0, cold.stderr
    every = (image.manifest_digest, *image.blob_digests)
    assert procs.wait_until(lambda: all(cached_in_s3(sb, d) for d in every), 20, 0.02), "cache never reached S3"
    return image


def pulls(skopeo_bin, sb, ref, workdir, image) -> float:
    dest = workdir / ref.replace("/", "_").replace(":", "_").replace("@", "_")
    t0 = time.monotonic()
    result = pull_dir(skopeo_bin, sb.mirror_address(), ref, dest)
    assert result.returncode == 0, (ref, result.stderr)
    assert_dir_matches(dest, image)
    return time.monotonic() - t0


def test_cache_restarts_and_serves_while_its_upstream_is_down(sandbox, stand_in, skopeo_bin, workdir):
    cached = fill_cache(sandbox, skopeo_bin, workdir, REPO)
    uncached = build_image(workdir / "layout-later", "v1", layer_sizes=(32 * 1024,))
    assert push(skopeo_bin, uncached, stand_in.address, "library/later").returncode == 0

    stand_in.stop()
    cache = SandboxProcess(sandbox, HUB)
    try:
        cache.stop()
        t0 = time.monotonic()
        sandbox.start(HUB)  # raises with the log's last lines if the cache panics while starting
        restart_seconds = time.monotonic() - t0
        assert sandbox.panic_line(HUB) is None

        by_tag = pulls(skopeo_bin, sandbox, f"{REPO}:v1", workdir, cached)
        by_digest = pulls(skopeo_bin, sandbox, f"{REPO}@{cached.manifest_digest}", workdir, cached)

        t0 = time.monotonic()
        missing = pull_dir(skopeo_bin, sandbox.mirror_address(), "library/later:v1", workdir / "missing")
        missing_seconds = time.monotonic() - t0
        assert missing.returncode != 0
        assert missing_seconds < 10, missing_seconds
        assert "manifest unknown" in missing.stderr or "connection refused" in missing.stderr, missing.stderr
    finally:
        stand_in.start()

    back = pulls(skopeo_bin, sandbox, "library/later:v1", workdir, uncached)
    print(
        f"\ncache: restarted with its upstream down in {restart_seconds:.2f}s; cached image by tag {by_tag:.2f}s, "
        f"by digest {by_digest:.2f}s; uncached image refused in {missing_seconds:.2f}s; upstream back -> pulled in {back:.2f}s"
    )


def test_cache_refuses_pushes(any_sandbox, skopeo_bin, workdir):
    sb = any_sandbox
    status, _, body = request(sb.mirror_address(), "POST", f"/v2/{REPO}/blobs/uploads/")
    assert status == 405 and b"UNSUPPORTED" in body, (status, body)
    refused = push(skopeo_bin, build_image(workdir / "other", "v9"), sb.mirror_address(), "library/pushed")
    assert refused.returncode != 0


def test_compat_cache_serves_cached_content_but_cannot_start_without_its_upstream(sandbox_compat, skopeo_bin, workdir):
    sb = sandbox_compat
    stand_in = SandboxProcess(sb, "upstream")
    image = fill_cache(sb, skopeo_bin, workdir, "library/compat")
    stand_in.stop()
    try:
        pulls(skopeo_bin, sb, "library/compat:v1", workdir, image)
        pulls(skopeo_bin, sb, f"library/compat@{image.manifest_digest}", workdir, image)
        sb.stop(HUB)
        with pytest.raises(Exception, match="exited"):
            sb.start(HUB, timeout=20)
        assert "connection refused" in (sb.panic_line(HUB) or ""), sb.log_tail(HUB)
    finally:
        stand_in.start()
        sb.start(HUB)
