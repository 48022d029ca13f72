"""10. Nodes on a real containerd: the hosts.toml files the program renders, followed by containerd.

Debian's containerd 1.6.20 runs as root with its own --config (one daemon for the session);
`ctr images pull --hosts-dir <certs.d> --snapshotter native` pulls and unpacks exactly as a node
would resolve the image. The certs.d directory is what the sandbox wrote at `local up`: the
program's `node_files` with the sandbox's NodeEndpoints (127.0.0.1 ports) instead of the cluster's,
the same mechanism that puts 127.0.0.1 into the sandbox's registry configs. No /etc/hosts entry:
the registry names in the image references only pick the directory.

Requests are told apart by their User-Agent in the access logs: `containerd/...` is the node,
`Go-http-client/...` is a cache fetching from its upstream.
"""
from __future__ import annotations

import re
import subprocess
import time
import tomllib
import urllib.parse
from pathlib import Path

import pytest

from registry_ha.imagetools import plain_request
from registry_ha.nodes import SCRIPT_PATH
from registry_ha.sandbox import procs

from .containerd import AccessLog
from .oci import build_image, push

pytestmark = pytest.mark.integration

HUB, GHCR = "dockerhub-cache", "ghcr-cache"
PRIVATE = "registry.neural-hive.local:5000"


def image(workdir: Path, label: str):
    """A 2-layer image whose blobs no other test has (containerd would not fetch what it holds)."""
    return build_image(workdir / label, "v1", layer_sizes=(4096, 16384))  # random content per call


def metric(sb, component: str, name: str, **labels: str) -> float:
    """A counter from a cache's debug port (registry_proxy_*), 0 when absent."""
    address = sb.debug_address(component)
    status, _, body = plain_request(address, "GET", "/metrics")
    assert status == 200, (component, status)
    wanted = "".join(f'{k}="{v}"' for k, v in labels.items())
    total = 0.0
    for line in body.decode().splitlines():
        match = re.match(rf"^{name}\{{([^}}]*)\}} (\S+)$", line)
        if match and all(f'{k}="{v}"' in match.group(1) for k, v in labels.items()):
            total += float(match.group(2))
        elif not wanted and line.startswith(f"{name} "):
            total += float(line.split()[1])
    return total


def hosts_of(sb) -> list[str]:
    """Every address the sandbox's node files dial."""
    found = []
    for path in sb.certs_dir.glob("*/hosts.toml"):
        doc = tomllib.loads(path.read_text())
        found += [doc["server"], *doc["host"]]
    return found


def test_the_node_files_are_the_programs_with_local_addresses(sandbox):
    """What the tests below use: every cache, both private-registry names, and only 127.0.0.1."""
    names = sorted(p.name for p in sandbox.certs_dir.iterdir())
    assert names == ["37.60.241.150:30500", "docker.io", "ghcr.io", PRIVATE]
    assert {urllib.parse.urlsplit(url).hostname for url in hosts_of(sandbox)} == {"127.0.0.1"}
    assert sandbox.node_files().as_dict() == {
        str(p.relative_to(sandbox.certs_dir)): p.read_text() for p in sandbox.certs_dir.glob("*/*")
    }


def test_docker_hub_image_pulls_through_its_cache_and_nothing_goes_to_the_fallback(sandbox, stand_in, containerd, skopeo_bin, workdir):
    img = image(workdir, "hub")
    assert push(skopeo_bin, img, stand_in.address, "library/nodeimg").returncode == 0
    hub_log, ghcr_log, upstream_log = AccessLog(sandbox.log_path(HUB)), AccessLog(sandbox.log_path(GHCR)), AccessLog(stand_in.log)
    misses = metric(sandbox, HUB, "registry_proxy_misses_total", type="blob")

    t0 = time.monotonic()
    pulled = containerd.pull("docker.io/library/nodeimg:v1", sandbox.certs_dir)
    seconds = time.monotonic() - t0
    assert pulled.returncode == 0, pulled.stderr + containerd.log_tail()
    assert containerd.image_digest("docker.io/library/nodeimg:v1") == img.manifest_digest

    node = hub_log.from_containerd()
    assert node and all(r["path"].startswith("/v2/library/nodeimg/") and r["query"] == {"ns": ["docker.io"]} for r in node), node
    blob_gets = {r["path"].rsplit("/", 1)[1] for r in node if "/blobs/" in r["path"]}
    assert blob_gets == set(img.blob_digests)  # every blob came from the cache
    assert upstream_log.from_containerd() == []  # the fallback (the upstream itself) saw nothing from the node
    assert upstream_log.from_caches(), "the cache never fetched from its upstream"
    assert ghcr_log.requests() == []  # the other cache neither
    grown = metric(sandbox, HUB, "registry_proxy_misses_total", type="blob") - misses
    assert grown == len(img.blob_digests), grown  # the cache's upstream counter moved: one miss per blob
    print(f"\ncontainerd: docker.io/library/nodeimg:v1 through the docker.io cache in {seconds:.2f}s: "
          f"{len(node)} node requests to the cache, 0 to the fallback, {len(upstream_log.from_caches())} cache->upstream, "
          f"registry_proxy_misses_total{{type=blob}} +{grown:.0f}")


def test_a_second_upstream_pulls_through_its_own_cache(sandbox, stand_in, containerd, skopeo_bin, workdir):
    img = image(workdir, "ghcr")
    assert push(skopeo_bin, img, stand_in.address, "neural-hive/tool").returncode == 0
    hub_log, ghcr_log, upstream_log = AccessLog(sandbox.log_path(HUB)), AccessLog(sandbox.log_path(GHCR)), AccessLog(stand_in.log)
    misses = metric(sandbox, GHCR, "registry_proxy_misses_total", type="blob")

    t0 = time.monotonic()
    pulled = containerd.pull("ghcr.io/neural-hive/tool:v1", sandbox.certs_dir)
    seconds = time.monotonic() - t0
    assert pulled.returncode == 0, pulled.stderr
    assert containerd.image_digest("ghcr.io/neural-hive/tool:v1") == img.manifest_digest
    node = ghcr_log.from_containerd()
    assert node and all(r["path"].startswith("/v2/neural-hive/tool/") and r["query"] == {"ns": ["ghcr.io"]} for r in node), node
    assert hub_log.requests() == [] and upstream_log.from_containerd() == []
    grown = metric(sandbox, GHCR, "registry_proxy_misses_total", type="blob") - misses
    assert grown == len(img.blob_digests)
    print(f"\ncontainerd: ghcr.io/neural-hive/tool:v1 through the ghcr.io cache in {seconds:.2f}s "
          f"({len(node)} node requests, registry_proxy_misses_total{{type=blob}} +{grown:.0f}; docker.io cache untouched)")


def test_the_private_registry_by_its_name_through_the_lb(sandbox, containerd, skopeo_bin, workdir):
    img = image(workdir, "private")
    assert push(skopeo_bin, img, sandbox.endpoint, "team/app").returncode == 0
    replicas = [AccessLog(sandbox.log_path(name)) for name in sandbox.replica_names()]
    sessions = lambda: sum(int(row["stot"]) for row in procs.haproxy_stats(sandbox.state_dir / "lb.sock").values()  # noqa: E731
                           if row["svname"] not in ("BACKEND", "FRONTEND"))
    before = sessions()

    ref = f"{PRIVATE}/team/app:v1"
    pulled = containerd.pull(ref, sandbox.certs_dir)
    assert pulled.returncode == 0, pulled.stderr
    assert containerd.image_digest(ref) == img.manifest_digest
    node = [r for log in replicas for r in log.from_containerd()]
    assert node and all(r["query"] == {"ns": [PRIVATE]} for r in node), node
    assert sessions() > before  # through haproxy, the sandbox's LoadBalancer

    # and a node can push under that name (the private registry's files allow push; the caches' do not)
    pushed_ref = f"{PRIVATE}/team/from-node:v1"
    assert containerd.ctr("images", "tag", ref, pushed_ref).returncode == 0
    pushed = containerd.push(pushed_ref, sandbox.certs_dir)
    assert pushed.returncode == 0, pushed.stderr
    status, _, _ = plain_request(sandbox.endpoint, "HEAD", "/v2/team/from-node/manifests/v1",
                                 headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})
    assert status == 200


def test_with_its_cache_stopped_containerd_falls_back_to_the_upstream(sandbox, stand_in, containerd, skopeo_bin, workdir):
    """The fallback is the next host in hosts.toml: the upstream itself, here the local stand-in."""
    img = image(workdir, "fallback")
    assert push(skopeo_bin, img, stand_in.address, "library/fallback").returncode == 0
    upstream_log = AccessLog(stand_in.log)
    sandbox.stop(HUB)
    try:
        t0 = time.monotonic()
        pulled = containerd.pull("docker.io/library/fallback:v1", sandbox.certs_dir)
        seconds = time.monotonic() - t0
        assert pulled.returncode == 0, pulled.stderr
        assert containerd.image_digest("docker.io/library/fallback:v1") == img.manifest_digest
        node = upstream_log.from_containerd()
        assert {r["path"].rsplit("/", 1)[1] for r in node if "/blobs/" in r["path"]} == set(img.blob_digests)
        assert all(r["query"] == {"ns": ["docker.io"]} for r in node)
        assert upstream_log.from_caches() == []  # nothing through a cache: it is down
        assert seconds < 10, seconds  # a stopped cache refuses at once: no timeout per step
    finally:
        sandbox.start(HUB)
    print(f"\ncontainerd: docker.io cache stopped -> pulled from the fallback upstream in {seconds:.2f}s ({len(node)} requests)")


def test_files_the_configurator_writes_are_followed_at_once_and_its_removal_too(sandbox, containerd, skopeo_bin, workdir):
    """The configurator's script writes the sandbox's files into a directory standing in for a node's
    /etc/containerd/certs.d; containerd follows them on the next pull (no restart), and after
    --remove the private registry's name is no longer configured (containerd then tries
    https://registry.neural-hive.local:5000, which this machine cannot resolve)."""
    node_dir = workdir / "node-certs.d"
    (node_dir / "quay.io").mkdir(parents=True)
    (node_dir / "quay.io" / "hosts.toml").write_text('server = "https://quay.io"\n\n[host."https://quay.io"]\n')
    img = image(workdir, "configured")
    assert push(skopeo_bin, img, sandbox.endpoint, "team/configured").returncode == 0
    ref = f"{PRIVATE}/team/configured:v1"

    def configure(*extra):
        result = subprocess.run(["sh", str(SCRIPT_PATH), str(sandbox.certs_dir), str(node_dir), "--once", *extra],
                                capture_output=True, text=True, timeout=30)
        assert result.returncode == 0, result.stdout + result.stderr
        return result.stdout

    assert "wrote" in configure()
    assert "wrote" not in configure()  # idempotent
    assert containerd.pull(ref, node_dir).returncode == 0
    containerd.ctr("images", "rm", ref)
    assert "removed" in configure("--remove")
    assert sorted(p.name for p in node_dir.iterdir()) == ["quay.io"]  # only the node's own file is left
    refused = containerd.pull(ref, node_dir, timeout=60)
    assert refused.returncode != 0 and "registry.neural-hive.local" in refused.stderr, refused.stderr
