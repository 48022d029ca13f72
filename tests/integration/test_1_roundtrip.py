"""1. Push through the LB; pull back through the LB and from each replica directly: identical bytes
(on 3.1.1 and on the 2.8 compat lane)."""
from __future__ import annotations

import time

import pytest

from .conftest import replica_addresses
from .oci import assert_dir_matches, build_image, get_blob, get_manifest, pull_dir, push, sha256

pytestmark = pytest.mark.integration


def test_push_via_lb_pull_everywhere_identical(any_sandbox, skopeo_bin, workdir):
    sandbox = any_sandbox
    image = build_image(workdir / "layout", "v1", layer_sizes=(64 * 1024, 2 * 1024 * 1024, 300 * 1024))
    t0 = time.monotonic()
    result = push(skopeo_bin, image, sandbox.endpoint, "it/roundtrip")
    assert result.returncode == 0, result.stderr
    push_seconds = time.monotonic() - t0

    for address in [sandbox.endpoint, *replica_addresses(sandbox)]:
        # the client's view: skopeo copies manifest and blobs to disk, compared by content digest
        dest = workdir / f"pull-{address.replace(':', '_')}"
        result = pull_dir(skopeo_bin, address, "it/roundtrip:v1", dest)
        assert result.returncode == 0, (address, result.stderr)
        assert_dir_matches(dest, image)
        # the registry's view: the manifest by tag and by digest, every blob, byte for byte
        status, headers, body = get_manifest(address, "it/roundtrip", "v1")
        assert status == 200 and body == image.manifest, address
        assert headers["docker-content-digest"] == image.manifest_digest
        status, _, body = get_manifest(address, "it/roundtrip", image.manifest_digest)
        assert status == 200 and sha256(body) == image.manifest_digest
        for digest in image.blob_digests:
            status, _, body = get_blob(address, "it/roundtrip", digest)
            assert status == 200 and sha256(body) == digest, (address, digest)
    print(f"push via LB {push_seconds:.2f}s; pulled identical from LB + {len(replica_addresses(sandbox))} replicas")
