"""11. SSE-KMS: every object the registry writes is under the stack's key, whatever the client's chunking.

Three 3.1.1 replicas with the production stack's rendered config (encryption: sse-kms) share one
bucket on moto, which applies the bucket's default encryption (the stack's key, bucket key on) to
PutObject, multipart uploads and copies, as S3 does. Blobs are pushed with PATCHes under 5 MiB,
each request to the next replica: the path where 3.1.1 re-creates the multipart upload and drops
`keyid`. Then every object in the bucket is HEADed.

moto fills a missing key id from the bucket default where AWS would use the aws/s3 key, so HEAD
alone would not catch a registry that sends `aws:kms` without a key: moto's request recording
shows which SSE headers the registries sent, and the program's config must send none.
"""
from __future__ import annotations

import json
import os
import secrets
import sys
from urllib.parse import parse_qs, urlsplit

import boto3
import pytest
import requests
from botocore.config import Config

from registry_ha.registry_config import Credentials, Endpoints, build_registry_config, dump_config
from registry_ha.sandbox import procs
from tests.mocking import settings_for

from .conftest import free_port
from .oci import MANIFEST_TYPE, chunked_upload, get_blob, request, sha256

pytestmark = pytest.mark.integration

MiB = 2**20
BUCKET = "registry-kms-test"
REGION = "us-east-1"


def client(service: str, endpoint: str):
    return boto3.client(service, endpoint_url=endpoint, aws_access_key_id="AKIAEXAMPLE", aws_secret_access_key="x",
                        region_name=REGION, config=Config(s3={"addressing_style": "path"}))


@pytest.fixture(scope="module")
def kms_registries(pool, bins, tmp_path_factory):
    root = tmp_path_factory.mktemp("kms")
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    recording = root / "moto.rec"
    moto = pool.start(
        "moto-kms", [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)], f"127.0.0.1:{port}",
        env_extra={"MOTO_ENABLE_RECORDING": "true", "MOTO_RECORDER_FILEPATH": str(recording)},
    )
    kms = client("kms", endpoint)
    cmk = kms.create_key(Description="the stack's key")["KeyMetadata"]["Arn"]
    s3 = client("s3", endpoint)
    s3.create_bucket(Bucket=BUCKET)
    # what components/storage.py declares for sse-kms: the stack's key as the bucket default, bucket key on
    s3.put_bucket_encryption(Bucket=BUCKET, ServerSideEncryptionConfiguration={"Rules": [{
        "ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": cmk},
        "BucketKeyEnabled": True}]})

    redis_port, redis_password = free_port(), secrets.token_urlsafe(24)
    redis_conf = root / "redis.conf"
    redis_conf.write_text(f"bind 127.0.0.1\nport {redis_port}\nrequirepass {redis_password}\nsave \"\"\n"
                          f"appendonly no\ndir {root}\n")
    redis = pool.start("kms-redis", [bins["redis-server"], str(redis_conf)], f"127.0.0.1:{redis_port}")

    # production's storage; its token auth (on in its stack file) is test 15's subject, not this one's
    settings = settings_for("production", authEnabled="false")
    assert settings.storage.encryption == "sse-kms"
    credentials = Credentials(http_secret=secrets.token_urlsafe(32), redis_password=redis_password,
                              s3_access_key="AKIAEXAMPLE", s3_secret_key="x")
    replicas = []
    requests.post(f"{endpoint}/moto-api/recorder/start-recording", timeout=5)
    for i in range(3):
        listen, debug = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
        config = build_registry_config(settings, "private", Endpoints(
            s3_bucket=BUCKET, s3_region=REGION, redis_addr=redis.address, s3_endpoint=endpoint,
            listen_addr=listen, debug_addr=debug), credentials)
        path = root / f"registry-{i}.yml"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(dump_config(config))
        replicas.append(pool.start(f"kms-registry-{i}", [bins["registry"], "serve", str(path)], listen,
                                   ready=lambda listen=listen: procs.http_status(listen, "/") == 200))
    yield {"endpoint": endpoint, "cmk": cmk, "recording": recording, "replicas": [r.address for r in replicas]}
    for server in (*replicas, redis, moto):
        server.stop()


@pytest.fixture(scope="module")
def pushed(kms_registries):
    """Layers pushed in PATCHes across replicas: 1 MiB chunks (the re-create path), a 6 MiB part then 1 MiB
    chunks, and a 33 MiB layer (committed by multipart copy); then a manifest through another replica."""
    replicas = kms_registries["replicas"]
    layers = []
    for size, chunk in ((3 * MiB + 12345, MiB), (7 * MiB + 7, 6 * MiB), (33 * MiB + 5, 8 * MiB)):
        blob = os.urandom(size)
        chunked_upload(replicas, "team/app", blob, chunk)
        layers.append({"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": sha256(blob), "size": size})
    config = json.dumps({"architecture": "amd64", "os": "linux"}).encode()
    chunked_upload(replicas[1:], "team/app", config, len(config))
    manifest = json.dumps({"schemaVersion": 2, "mediaType": MANIFEST_TYPE, "layers": layers, "config": {
        "mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha256(config), "size": len(config)}}).encode()
    status, _, body = request(replicas[2], "PUT", "/v2/team/app/manifests/v1", body=manifest,
                              headers={"Content-Type": MANIFEST_TYPE})
    assert status == 201, body
    return layers


def test_every_object_is_under_the_stacks_key(kms_registries, pushed):
    for replica in kms_registries["replicas"]:
        for layer in pushed:
            status, _, body = get_blob(replica, "team/app", layer["digest"])
            assert status == 200 and sha256(body) == layer["digest"]
    s3 = client("s3", kms_registries["endpoint"])
    rows = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET):
        for item in page.get("Contents", []):
            head = s3.head_object(Bucket=BUCKET, Key=item["Key"])
            rows.append((item["Key"], head.get("ServerSideEncryption"), head.get("SSEKMSKeyId"), head.get("BucketKeyEnabled")))
    data = {key.split("/")[-2] for key, *_ in rows if "/blobs/sha256/" in key and key.endswith("/data")}
    assert {layer["digest"].split(":")[1] for layer in pushed} <= data  # the layers, besides config, manifest, links
    wrong = [r for r in rows if r[1:] != ("aws:kms", kms_registries["cmk"], True)]
    assert wrong == [], wrong


def test_the_registry_sends_no_encryption_headers_of_its_own(kms_registries, pushed):
    """The bucket default is the only authority: a registry that names the key (or aws:kms without it,
    as 3.1.1's re-created multipart upload does) would put objects under the aws/s3 key on AWS."""
    sent = []
    for line in kms_registries["recording"].read_text().splitlines():
        entry = json.loads(line)
        headers = {k.lower(): v for k, v in entry["headers"].items()}
        if any(k.startswith("x-amz-server-side-encryption") for k in headers):
            uploads = "uploads" in parse_qs(urlsplit(entry["url"]).query, keep_blank_values=True)
            sent.append((entry["method"], "CreateMultipartUpload" if uploads else urlsplit(entry["url"]).path,
                         headers.get("x-amz-server-side-encryption"),
                         headers.get("x-amz-server-side-encryption-aws-kms-key-id")))
    writes = sum(1 for line in kms_registries["recording"].read_text().splitlines()
                 if json.loads(line)["method"] in ("PUT", "POST"))
    assert writes > 20  # the recording saw the registries' writes
    assert sent == [], f"{len(sent)} requests carried SSE headers, e.g. {sent[:4]}"
