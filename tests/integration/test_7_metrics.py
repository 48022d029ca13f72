"""7. Each replica's debug port serves Prometheus metrics after traffic; the LB port does not serve /debug/."""
from __future__ import annotations

import re

import pytest

from .conftest import replica_addresses
from .oci import build_image, get_blob, push, request

pytestmark = pytest.mark.integration


def sample_total(text: str, family: str) -> float:
    return sum(float(v) for v in re.findall(rf"^{family}(?:_count)?\{{[^}}]*\}} (\S+)$", text, re.M))


def test_metrics_on_debug_port_not_on_lb(sandbox, skopeo_bin, workdir):
    image = build_image(workdir / "layout", "v1", layer_sizes=(16 * 1024, 64 * 1024))
    assert push(skopeo_bin, image, sandbox.endpoint, "it/metrics").returncode == 0
    for address in replica_addresses(sandbox):  # traffic on every replica
        for digest in image.blob_digests:
            assert get_blob(address, "it/metrics", digest)[0] == 200
    seen = {}
    for name in sandbox.replica_names():
        status, _, body = request(sandbox.debug_address(name), "GET", "/metrics")
        assert status == 200, name
        text = body.decode()
        requests = sample_total(text, "registry_http_requests_total")
        storage = sample_total(text, "registry_storage_action_seconds")
        assert requests > 0 and storage > 0, (name, requests, storage)
        seen[name] = (requests, storage)
    for path in ("/debug/metrics", "/metrics", "/debug/vars", "/debug/pprof/", "/debug/health"):
        status, _, body = request(sandbox.endpoint, "GET", path)
        assert status != 200 and b"registry_http_requests_total" not in body and b"memstats" not in body, (path, status)
    print(f"\nmetrics: (requests_total, storage_action_seconds count) per replica {seen}; LB /debug/* and /metrics -> 404")
