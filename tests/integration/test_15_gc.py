"""15. Garbage collection with three replicas on shared S3 (3.1.1): `local gc`, the cluster's sequence.

On a sandbox of its own (a sweep deletes what other tests' uploads leave behind, and the read-only
switch replaces every replica): images A and B share two layers; A's manifest is deleted; the sweep
removes exactly A's unique blobs from S3 (counted), B pulls identical from the LB and every replica;
Redis answers 200 for the deleted blobs until the FLUSHDB (the control), 404 after it, and the cache's
db and S3 prefix are untouched. A push while read-only is refused (405) and writes nothing; a sweep
that fails still flushes and returns to read-write; an interrupted run is refused.
"""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path

import pytest

from registry_ha import gc_job
from registry_ha.imagetools import plain_request
from registry_ha.sandbox import gc, procs
from registry_ha.sandbox.core import Sandbox

from .conftest import REPO_ROOT, free_port, free_port_base, replica_addresses
from .oci import assert_dir_matches, build_image, pull_dir, push

pytestmark = pytest.mark.integration

SCRIPT = REPO_ROOT / "scripts" / "deploy-registry-ha.sh"


@pytest.fixture(scope="module")
def state_dir(tmp_path_factory, bins):
    """A staging sandbox of this module's own; every test reads its current processes from state.json."""
    directory = tmp_path_factory.mktemp("gc-sandbox")
    sb = Sandbox(directory, stack="staging", lb_port=free_port(), port_base=free_port_base())
    try:
        sb.up(out=open(os.devnull, "w"))
        yield directory
    finally:
        (Sandbox.from_state(directory) or sb).down(out=open(os.devnull, "w"))


def current(state_dir: Path) -> Sandbox:
    return Sandbox.from_state(state_dir)


def root_of(sb: Sandbox, name: str) -> str:
    """The S3 prefix a registry process stores under (its rendered rootdirectory)."""
    return sb.registry_config(name)["storage"]["s3"]["rootdirectory"].strip("/") + "/"


def blobs_prefix(sb: Sandbox) -> str:
    return f"{root_of(sb, 'registry-1')}docker/registry/v2/blobs/"


def the_cache(sb: Sandbox) -> str:
    """The (first) pull-through cache's component name."""
    return next(name for name, c in sb.components.items() if c.role == "mirror")


def cache_db(sb: Sandbox) -> int:
    return sb.registry_config(the_cache(sb))["redis"]["db"]


def local(state_dir: Path, *args: str) -> subprocess.CompletedProcess:
    env = {"PATH": os.environ.get("PATH", procs.SAFE_PATH), "HOME": os.environ.get("HOME", "/tmp")}
    return subprocess.run([str(SCRIPT), "local", *args, "--state-dir", str(state_dir)],
                          capture_output=True, text=True, timeout=600, env=env)


def keys(sb: Sandbox, prefix: str) -> set[str]:
    s3, found = sb.s3_client(), set()
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=sb.bucket, Prefix=prefix):
        found |= {o["Key"] for o in page.get("Contents", [])}
    return found


def blob_digests(sb: Sandbox) -> set[str]:
    return {"sha256:" + k.split("/")[-2] for k in keys(sb, blobs_prefix(sb)) if k.endswith("/data")}


def heads(sb: Sandbox, repo: str, digests) -> dict:
    """HEAD of each blob on each replica directly: {(replica, digest): status}."""
    return {(name, d): plain_request(sb.components[name].address, "HEAD", f"/v2/{repo}/blobs/{d}")[0]
            for name in sb.replica_names() for d in digests}


def dbsize(sb: Sandbox, db: int) -> int:
    return int(gc.redis_call(sb.redis_address, sb.secrets()["redis_password"], db, "DBSIZE"))


def shared_pair(workdir: Path, seed: bytes, tags=("a", "b")):
    """Two images with the same first two layers (same content, same digests) and their own third."""
    a = build_image(workdir / tags[0], tags[0], layer_sizes=(64 * 1024, 128 * 1024, 100 * 1024), seed=seed)
    b = build_image(workdir / tags[1], tags[1], layer_sizes=(64 * 1024, 128 * 1024, 200 * 1024), seed=seed)
    assert len(set(a.layer_digests) & set(b.layer_digests)) == 2
    return a, b


def cache_something(sb: Sandbox, skopeo_bin: str, workdir: Path) -> None:
    """An image in the cache: pushed to its upstream stand-in, pulled through the cache."""
    upstream = sb.components["upstream"].address
    image = build_image(workdir / "upstream-image", "v1", layer_sizes=(32 * 1024,))
    assert push(skopeo_bin, image, upstream, "library/cached").returncode == 0
    pulled = pull_dir(skopeo_bin, sb.components[the_cache(sb)].address, "library/cached:v1", workdir / "via-cache")
    assert pulled.returncode == 0, pulled.stderr


def test_sweep_removes_exactly_the_deleted_images_blobs_and_flush_ends_stale_answers(state_dir, skopeo_bin, workdir):
    sb = current(state_dir)
    a, b = shared_pair(workdir, b"gc-test-1")
    assert push(skopeo_bin, a, sb.endpoint, "it/gc-a").returncode == 0
    assert push(skopeo_bin, b, sb.endpoint, "it/gc-b").returncode == 0
    cache_something(sb, skopeo_bin, workdir)
    a_only = {a.manifest_digest, *a.blob_digests} - {b.manifest_digest, *b.blob_digests}
    assert len(a_only) == 3  # A's manifest, config and third layer
    assert set(heads(sb, "it/gc-a", a_only - {a.manifest_digest}).values()) == {200}  # described in Redis now
    cache_prefix = root_of(sb, the_cache(sb))
    before, cache_before, cache_db_before = blob_digests(sb), keys(sb, cache_prefix), dbsize(sb, cache_db(sb))
    assert cache_before and cache_db_before > 0
    assert plain_request(sb.endpoint, "DELETE", f"/v2/it/gc-a/manifests/{a.manifest_digest}")[0] == 202

    with gc.read_only(sb, out=open(os.devnull, "w")):
        code, output = gc.collect(sb, dry_run=False, delete_untagged=True)
        assert code == 0, output[-1500:]
        assert gc_job.parse_summary(output)["blobs_eligible"] == 3
        after = blob_digests(sb)
        assert before - after == a_only, (sorted(before - after), sorted(a_only))
        assert len(before) - len(after) == 3
        # the control: without the FLUSHDB every replica still answers 200 for the blobs just deleted
        stale = heads(sb, "it/gc-a", a_only - {a.manifest_digest})
        assert set(stale.values()) == {200}, stale
        gc.flush_registry_db(sb)
        registry_db = sb.settings.redis.registry_db
        assert dbsize(sb, registry_db) == 0 and dbsize(sb, cache_db(sb)) == cache_db_before  # only the registry's db

    assert set(heads(sb, "it/gc-a", a_only).values()) == {404}
    for address in [sb.endpoint, *replica_addresses(sb)]:
        dest = workdir / f"b-{address.replace(':', '_')}"
        result = pull_dir(skopeo_bin, address, "it/gc-b:b", dest)
        assert result.returncode == 0, (address, result.stderr)
        assert_dir_matches(dest, b)
    assert cache_before - keys(sb, cache_prefix) == set()  # the cache is never collected: nothing of it deleted
    assert gc.writes_refused(sb) == {name: 404 for name in sb.replica_names()}  # writable again
    print(f"\ngc: {len(before)} blobs before, {len(after)} after; A's unique {len(a_only)} gone; "
          f"stale HEAD 200 on {len(stale)} replica/blob pairs until FLUSHDB, 404 after")


def test_a_push_while_read_only_is_refused_and_writes_nothing(state_dir, skopeo_bin, workdir):
    sb = current(state_dir)
    image = build_image(workdir / "layout", "v1", layer_sizes=(64 * 1024, 256 * 1024))
    private = root_of(sb, "registry-1")
    everything = keys(sb, private)
    with gc.read_only(sb, out=open(os.devnull, "w")):
        refused = push(skopeo_bin, image, sb.endpoint, "it/during-gc")
        assert refused.returncode != 0
        assert "405" in refused.stderr or "unsupported" in refused.stderr.lower(), refused.stderr[-500:]
        status, _, body = plain_request(sb.endpoint, "POST", "/v2/it/during-gc/blobs/uploads/")
        assert status == 405, (status, body[:200])
        assert {plain_request(r, "POST", "/v2/it/during-gc/blobs/uploads/")[0] for r in replica_addresses(sb)} == {405}
        assert keys(sb, private) == everything  # no upload, no blob, no repository: nothing half-written
    result = push(skopeo_bin, image, sb.endpoint, "it/during-gc")
    assert result.returncode == 0, result.stderr
    dest = workdir / "pulled"
    assert pull_dir(skopeo_bin, sb.endpoint, "it/during-gc:v1", dest).returncode == 0
    assert_dir_matches(dest, image)
    print(f"\nread-only push refused: {refused.stderr.strip().splitlines()[-1][-160:]}")


def test_local_gc_end_to_end(state_dir, skopeo_bin, workdir):
    """The command an operator runs: the same result through `deploy-registry-ha.sh local gc`."""
    sb = current(state_dir)
    c, d = shared_pair(workdir, b"gc-test-2", tags=("c", "d"))
    assert push(skopeo_bin, c, sb.endpoint, "it/gc-c").returncode == 0
    assert push(skopeo_bin, d, sb.endpoint, "it/gc-d").returncode == 0
    c_only = {c.manifest_digest, *c.blob_digests} - {d.manifest_digest, *d.blob_digests}
    assert set(heads(sb, "it/gc-c", c_only - {c.manifest_digest}).values()) == {200}
    pids = {name: sb.components[name].pid for name in sb.replica_names()}
    dry = local(state_dir, "gc", "--dry-run", "--delete-untagged", "--json")
    assert dry.returncode == 0, dry.stderr
    report = json.loads(dry.stdout)
    assert report["summary"]["blobs_eligible"] == 0  # C is still tagged
    assert {n: current(state_dir).components[n].pid for n in pids} == pids  # a report restarts nothing
    before = blob_digests(sb)
    assert plain_request(sb.endpoint, "DELETE", f"/v2/it/gc-c/manifests/{c.manifest_digest}")[0] == 202
    run = local(state_dir, "gc", "--delete-untagged")
    assert run.returncode == 0, run.stderr
    assert "deleted 3 blobs" in run.stdout
    sb = current(state_dir)
    assert before - blob_digests(sb) == c_only
    assert set(heads(sb, "it/gc-c", c_only).values()) == {404}
    assert all(sb.components[n].pid != pids[n] for n in pids)  # every replica went read-only and back
    assert gc.writes_refused(sb) == {name: 404 for name in sb.replica_names()}
    assert not gc.maintenance_path(sb).exists()
    dest = workdir / "pulled-d"
    assert pull_dir(skopeo_bin, sb.endpoint, "it/gc-d:d", dest).returncode == 0
    assert_dir_matches(dest, d)
    print(f"\nlocal gc: {run.stdout.strip()}")


def test_a_failing_sweep_still_flushes_and_returns_to_read_write(state_dir, skopeo_bin, workdir):
    sb = current(state_dir)
    s3 = sb.s3_client()
    # a manifest revision whose stored content is not a manifest: the mark phase fails on it
    garbage = b"this is not a manifest"
    digest = hashlib.sha256(garbage).hexdigest()
    blobs = blobs_prefix(sb)
    root = blobs.rsplit("blobs/", 1)[0]
    planted = [f"{blobs}sha256/{digest[:2]}/{digest}/data",
               f"{root}repositories/it/broken/_manifests/revisions/sha256/{digest}/link"]
    s3.put_object(Bucket=sb.bucket, Key=planted[0], Body=garbage)
    s3.put_object(Bucket=sb.bucket, Key=planted[1], Body=f"sha256:{digest}".encode())
    # a descriptor in the registry's db that the flush must remove
    image = build_image(workdir / "layout", "v1", layer_sizes=(16 * 1024,))
    assert push(skopeo_bin, image, sb.endpoint, "it/after-failure").returncode == 0
    assert dbsize(sb, sb.settings.redis.registry_db) > 0
    try:
        run = local(state_dir, "gc")
        assert run.returncode == 1, run.stdout + run.stderr
        assert "garbage-collect failed" in run.stderr and "the replicas are writable again" in run.stderr
        sb = current(state_dir)
        assert gc.writes_refused(sb) == {name: 404 for name in sb.replica_names()}
        assert not gc.maintenance_path(sb).exists()
        assert dbsize(sb, sb.settings.redis.registry_db) == 0  # flushed although the sweep failed: it may have deleted first
    finally:
        for key in planted:
            s3.delete_object(Bucket=sb.bucket, Key=key)
    assert push(skopeo_bin, build_image(workdir / "again", "v2", layer_sizes=(16 * 1024,)), sb.endpoint,
                "it/after-failure").returncode == 0


def test_an_interrupted_gc_is_refused_until_a_restart(state_dir):
    sb = current(state_dir)
    gc.mark_maintenance(sb, "read-only")  # what a killed `local gc` leaves behind
    refused = local(state_dir, "gc")
    assert refused.returncode == 1
    assert "a gc left this sandbox in maintenance" in refused.stderr and "local restart --rolling" in refused.stderr
    restart = local(state_dir, "restart", "--rolling")
    assert restart.returncode == 0, restart.stderr
    assert not gc.maintenance_path(current(state_dir)).exists()
    assert local(state_dir, "gc", "--dry-run").returncode == 0
