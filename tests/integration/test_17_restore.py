"""17. `deploy-registry-ha.sh restore` against moto's S3 with versioning (3.1.1 on the program's config):
push, delete the tag and the manifest, garbage-collect so the image's blobs go too, restore as of a time
before the delete, and the same digest pulls again. An unversioned bucket and a time before the image
existed are refused with one line, and nothing is written."""
from __future__ import annotations

import datetime as dt
import os
import secrets
import subprocess
import sys
import time

import boto3
import pytest
from botocore.config import Config

from conftest import require_binary
from registry_ha.imagetools import plain_request
from registry_ha.registry_config import Credentials, Endpoints, build_registry_config, dump_config
from registry_ha.restore import Layout, private_root_directory
from registry_ha.sandbox import procs
from registry_ha.sandbox.gc import redis_call
from registry_ha.settings import load_settings

from .conftest import REPO_ROOT, free_port
from .oci import assert_dir_matches, build_image, pull_dir, push

pytestmark = pytest.mark.integration

SCRIPT = REPO_ROOT / "scripts" / "deploy-registry-ha.sh"
BUCKET, PLAIN_BUCKET, REGION = "registry-restore-test", "registry-unversioned", "us-east-1"
KEY = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}


def _private(path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)


@pytest.fixture(scope="module")
def moto_registry(pool, bins, tmp_path_factory):
    require_binary("moto_server")
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    moto = pool.start("moto-restore", [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                      f"127.0.0.1:{port}")
    s3 = boto3.client("s3", endpoint_url=endpoint, region_name=REGION, aws_access_key_id="testing",
                      aws_secret_access_key="testing", config=Config(s3={"addressing_style": "path"}))
    s3.create_bucket(Bucket=BUCKET)
    s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})  # what production sets
    s3.create_bucket(Bucket=PLAIN_BUCKET)

    root = tmp_path_factory.mktemp("restore")
    redis_port, redis_password = free_port(), secrets.token_urlsafe(24)
    _private(root / "redis.conf", f'bind 127.0.0.1\nport {redis_port}\nsave ""\nappendonly no\n'
                                  f"requirepass {redis_password}\nmaxmemory 64mb\nmaxmemory-policy allkeys-lru\n")
    redis = pool.start("restore-redis", [bins["redis-server"], str(root / "redis.conf")], f"127.0.0.1:{redis_port}")
    listen, debug = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
    config = build_registry_config(
        load_settings({"registry-ha:authEnabled": "false"}, "staging"), "private",
        Endpoints(s3_bucket=BUCKET, s3_region=REGION, redis_addr=redis.address, s3_endpoint=endpoint,
                  listen_addr=listen, debug_addr=debug),
        Credentials(http_secret=secrets.token_urlsafe(32), redis_password=redis_password,
                    s3_access_key="testing", s3_secret_key="testing"),
    )
    _private(root / "registry.yml", dump_config(config))
    registry = pool.start("restore-registry", [bins["registry"], "serve", str(root / "registry.yml")], listen,
                          ready=lambda: procs.http_status(listen, "/") == 200)
    yield {"registry": registry.address, "endpoint": endpoint, "s3": s3, "config": root / "registry.yml",
           "redis": (redis.address, redis_password)}
    for server in (registry, redis, moto):
        server.stop()


def restore(moto_registry, *args: str) -> subprocess.CompletedProcess:
    env = {"PATH": os.environ.get("PATH", procs.SAFE_PATH), "HOME": os.environ.get("HOME", "/tmp"),
           "AWS_ENDPOINT_URL_S3": moto_registry["endpoint"], **KEY}
    return subprocess.run([str(SCRIPT), "restore", "staging", *args], capture_output=True, text=True, timeout=120, env=env)


def exists(s3, key: str) -> bool:
    try:
        s3.head_object(Bucket=BUCKET, Key=key)
        return True
    except s3.exceptions.ClientError:
        return False


def utc(moment: float) -> str:
    return dt.datetime.fromtimestamp(moment, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_deleted_and_collected_image_is_restored_with_the_same_digest(moto_registry, skopeo_bin, bins, workdir):
    registry, s3 = moto_registry["registry"], moto_registry["s3"]
    image = build_image(workdir / "layout", "v1", layer_sizes=(64 * 1024, 512 * 1024))
    pushed = push(skopeo_bin, image, registry, "team/app")
    assert pushed.returncode == 0, pushed.stderr
    time.sleep(1.1)  # S3 times have a resolution of one second
    before = utc(time.time())
    time.sleep(1.1)
    assert plain_request(registry, "DELETE", f"/v2/team/app/manifests/{image.manifest_digest}")[0] == 202
    # a garbage collection after the delete takes the blobs only this image used
    collected = subprocess.run([bins["registry"], "garbage-collect", str(moto_registry["config"]), "--delete-untagged"],
                               capture_output=True, text=True, timeout=120, env=procs.minimal_env(workdir))
    assert collected.returncode == 0, collected.stderr[-1000:]
    assert f"{len(image.blob_digests) + 1} blobs and 0 manifests eligible for deletion" in collected.stdout
    address, password = moto_registry["redis"]
    assert redis_call(address, password, 0, "FLUSHDB") == "OK"
    assert plain_request(registry, "GET", "/v2/team/app/manifests/v1")[0] == 404
    assert {plain_request(registry, "HEAD", f"/v2/team/app/blobs/{d}")[0] for d in image.blob_digests} == {404}

    layout = Layout(private_root_directory(load_settings({}, "staging")))
    needed = {layout.tag_current("team/app", "v1"), layout.tag_index("team/app", "v1", image.manifest_digest),
              layout.revision("team/app", image.manifest_digest), layout.blob(image.manifest_digest),
              *[layout.blob(d) for d in image.blob_digests], *[layout.layer("team/app", d) for d in image.blob_digests]}
    gone = {key for key in needed if not exists(s3, key)}
    assert layout.blob(image.manifest_digest) in gone and layout.tag_current("team/app", "v1") in gone

    result = restore(moto_registry, "team/app:v1", "--before", before, "--bucket", BUCKET, "--yes")
    assert result.returncode == 0, result.stderr
    assert f"team/app:v1 was {image.manifest_digest} at {before}" in result.stdout
    assert "delete marker" in result.stdout and "_manifests/tags/v1/current/link" in result.stdout
    restored = [line.split()[1] for line in result.stdout.splitlines() if line.startswith("restore ")]
    assert {f"{layout.base}/{key}" for key in restored} == gone  # exactly what was gone, nothing else
    assert restored[-1] == "repositories/team/app/_manifests/tags/v1/current/link"  # the tag last
    assert all(exists(s3, key) for key in needed)

    dest = workdir / "pulled"
    pulled = pull_dir(skopeo_bin, registry, "team/app:v1", dest)
    assert pulled.returncode == 0, pulled.stderr
    assert_dir_matches(dest, image)
    versions = s3.list_object_versions(Bucket=BUCKET, Prefix="registry/docker/registry/v2/repositories/team/app/")
    assert versions.get("DeleteMarkers")  # history kept: restoring wrote new versions, deleted nothing
    again = restore(moto_registry, "team/app:v1", "--before", before, "--bucket", BUCKET, "--yes")
    assert again.returncode == 0 and "nothing to restore" in again.stdout
    print(f"\nrestore: {len(restored)} objects copied back from their versions; {image.manifest_digest[:19]} pulls again")


def test_refusals_write_nothing(moto_registry, skopeo_bin, workdir):
    s3 = moto_registry["s3"]
    image = build_image(workdir / "layout", "v1", layer_sizes=(16 * 1024,))
    too_early = utc(time.time() - 3600)
    assert push(skopeo_bin, image, moto_registry["registry"], "team/early").returncode == 0
    count = len(s3.list_object_versions(Bucket=BUCKET).get("Versions", []))
    early = restore(moto_registry, "team/early:v1", "--before", too_early, "--bucket", BUCKET, "--yes")
    assert early.returncode == 1
    assert f"team/early:v1 did not exist at {too_early} (tag history: set " in early.stderr
    unversioned = restore(moto_registry, "team/early:v1", "--before", utc(time.time()), "--bucket", PLAIN_BUCKET, "--yes")
    assert unversioned.returncode == 1
    assert "bucket registry-unversioned has no versioning (bucketVersioning: false)" in unversioned.stderr
    assert len(s3.list_object_versions(Bucket=BUCKET).get("Versions", [])) == count
    bad = restore(moto_registry, "team/early:v1", "--before", "yesterday", "--bucket", BUCKET)
    assert bad.returncode == 2 and "an ISO 8601 time such as 2026-11-28T10:00:00Z (got 'yesterday')" in bad.stderr
    assert "Traceback" not in early.stderr + unversioned.stderr + bad.stderr


def test_an_overwritten_tag_is_moved_back(moto_registry, skopeo_bin, workdir):
    registry = moto_registry["registry"]
    first = build_image(workdir / "first", "v1", layer_sizes=(16 * 1024,))
    second = build_image(workdir / "second", "v1", layer_sizes=(16 * 1024,))
    assert push(skopeo_bin, first, registry, "team/moved").returncode == 0
    time.sleep(1.1)
    before = utc(time.time())
    time.sleep(1.1)
    assert push(skopeo_bin, second, registry, "team/moved").returncode == 0  # v1 now names another image
    result = restore(moto_registry, "team/moved:v1", "--before", before, "--bucket", BUCKET, "--yes")
    assert result.returncode == 0, result.stderr
    restored = [line.split()[1] for line in result.stdout.splitlines() if line.startswith("restore ")]
    assert restored == ["repositories/team/moved/_manifests/tags/v1/current/link"]  # the first image is still there
    dest = workdir / "pulled"
    assert pull_dir(skopeo_bin, registry, "team/moved:v1", dest).returncode == 0
    assert_dir_matches(dest, first)
