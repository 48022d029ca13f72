"""5. The pull-through cache: pull from a local upstream through it; stop the upstream; the same image
still pulls by tag and by digest from the cache's S3; a push to the cache is refused with 405."""
from __future__ import annotations

import time

import botocore.exceptions
import pytest

from registry_ha.registry_config import ROOT_DIRECTORIES
from registry_ha.sandbox import procs

from .oci import assert_dir_matches, build_image, pull_dir, push, request, sha256

pytestmark = pytest.mark.integration

REPO = "library/cached"


def cached_in_s3(sandbox, digest: str) -> bool:
    """The proxy writes a blob to S3 shortly *after* answering the client: look for the object itself."""
    hexdigest = digest.split(":", 1)[1]
    key = f"{ROOT_DIRECTORIES['mirror'].strip('/')}/docker/registry/v2/blobs/sha256/{hexdigest[:2]}/{hexdigest}/data"
    try:
        obj = sandbox.s3_client().get_object(Bucket=sandbox.bucket, Key=key)
    except botocore.exceptions.ClientError:
        return False
    return sha256(obj["Body"].read()) == digest


def test_pull_through_cache_survives_upstream_and_refuses_push(sandbox, upstream, skopeo_bin, workdir):
    assert sandbox.healthy("mirror"), sandbox.log_tail("mirror")
    image = build_image(workdir / "layout", "v1", layer_sizes=(64 * 1024, 512 * 1024))
    assert push(skopeo_bin, image, upstream.address, REPO).returncode == 0

    t0 = time.monotonic()
    cold = pull_dir(skopeo_bin, sandbox.mirror_address, f"{REPO}:v1", workdir / "cold")
    cold_seconds = time.monotonic() - t0
    assert cold.returncode == 0, cold.stderr
    assert_dir_matches(workdir / "cold", image)

    t0 = time.monotonic()
    every = (image.manifest_digest, *image.blob_digests)
    assert procs.wait_until(lambda: all(cached_in_s3(sandbox, d) for d in every), 20, 0.02), "cache never reached S3"
    s3_lag = time.monotonic() - t0

    upstream.stop()
    assert procs.http_status(upstream.address, "/v2/") is None

    for ref in (f"{REPO}:v1", f"{REPO}@{image.manifest_digest}"):
        dest = workdir / ref.replace("/", "_").replace(":", "_").replace("@", "_")
        t0 = time.monotonic()
        result = pull_dir(skopeo_bin, sandbox.mirror_address, ref, dest)
        assert result.returncode == 0, (ref, result.stderr)
        assert_dir_matches(dest, image)
    offline_seconds = time.monotonic() - t0

    status, _, body = request(sandbox.mirror_address, "POST", f"/v2/{REPO}/blobs/uploads/")
    assert status == 405 and b"UNSUPPORTED" in body, (status, body)
    refused = push(skopeo_bin, build_image(workdir / "other", "v9"), sandbox.mirror_address, "library/pushed")
    assert refused.returncode != 0
    print(
        f"\nmirror: cold pull {cold_seconds:.2f}s, all {len(every)} objects in S3 within {s3_lag:.3f}s of the pull's end, "
        f"upstream stopped -> pull by tag and by digest OK ({offline_seconds:.2f}s), POST upload -> {status} UNSUPPORTED"
    )
