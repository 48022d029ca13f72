"""6. The registry runs with exactly the IAM policy the program generates, against moto's S3 with IAM
enforcement: push and pull work; removing s3:PutObject, s3:GetObject, s3:ListBucket or
s3:ListMultipartUploadParts breaks push. Outcomes are checked in the stored state (moto's batch
DeleteObjects is authorised against the bucket ARN, so delete status codes are not faithful)."""
from __future__ import annotations

import json
import sys
import os
import secrets

import boto3
import botocore.exceptions
import pytest
from botocore.config import Config

from conftest import require_binary
from registry_ha import iam
from registry_ha.registry_config import Credentials, Endpoints, build_registry_config, dump_config
from registry_ha.sandbox import procs
from registry_ha.settings import load_settings

from .conftest import free_port
from .oci import assert_dir_matches, build_image, pull_dir, push, sha256

pytestmark = pytest.mark.integration

BUCKET = "registry-iam-test"
REGION = "us-east-1"
# The setup below makes exactly this many requests before enforcement must start: create the
# bucket; the admin user, its policy and key; the registry user, its key and its policy.
FREE_ACTIONS = 7
REMOVALS = ("s3:PutObject", "s3:GetObject", "s3:ListBucket", "s3:ListMultipartUploadParts")


def _client(service: str, endpoint: str, key: str, secret: str):
    return boto3.client(
        service,
        endpoint_url=endpoint,
        aws_access_key_id=key,
        aws_secret_access_key=secret,
        region_name=REGION,
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
    )


# moto authorises a batch DeleteObjects against the bucket ARN, AWS per key (s3:DeleteObject on
# bucket/*, which the program grants). 2.8.2 ignored the per-key AccessDenied moto returns; 3.1.1
# fails the upload's commit on it (500). This statement stands in for AWS's per-key check, for moto only.
MOTO_BATCH_DELETE = {"sid": "MotoBatchDelete", "effect": "Allow", "actions": ["s3:DeleteObject"],
                     "resources": [f"arn:aws:s3:::{BUCKET}"]}


def policy_without(action: str | None) -> str:
    statements = iam.registry_statements(f"arn:aws:s3:::{BUCKET}")
    if action:
        statements = [dict(st, actions=[a for a in st["actions"] if a != action]) for st in statements]
    return iam.to_policy_json([*statements, MOTO_BATCH_DELETE])


@pytest.fixture(scope="module")
def moto_registry(pool, bins, tmp_path_factory):
    moto_port = free_port()
    endpoint = f"http://127.0.0.1:{moto_port}"
    require_binary("moto_server")  # presence (moto[server] installed); run as a module, see below
    # readiness by TCP only: an HTTP probe would be an S3 request and use up a free action.
    # Started as `python -m moto.server`: under the `moto_server` console script (moto 5.2.5) the
    # registry's SigV4 for ListMultipartUploads got SignatureDoesNotMatch even with the full policy.
    moto = pool.start(
        "moto-iam",
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(moto_port)],
        f"127.0.0.1:{moto_port}",
        env_extra={"INITIAL_NO_AUTH_ACTION_COUNT": str(FREE_ACTIONS)},
    )
    anon_iam = _client("iam", endpoint, "bootstrap", "bootstrap")
    anon_s3 = _client("s3", endpoint, "bootstrap", "bootstrap")
    anon_s3.create_bucket(Bucket=BUCKET)  # 1
    anon_iam.create_user(UserName="admin")  # 2
    anon_iam.put_user_policy(  # 3
        UserName="admin",
        PolicyName="admin",
        PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}),
    )
    admin_key = anon_iam.create_access_key(UserName="admin")["AccessKey"]  # 4
    anon_iam.create_user(UserName="registry")  # 5
    reg_key = anon_iam.create_access_key(UserName="registry")["AccessKey"]  # 6
    anon_iam.put_user_policy(UserName="registry", PolicyName="registry", PolicyDocument=policy_without(None))  # 7

    # enforcement is on from here: an unknown key is refused, the admin works
    with pytest.raises(botocore.exceptions.ClientError) as refused:
        anon_s3.list_objects_v2(Bucket=BUCKET)
    assert refused.value.response["Error"]["Code"] in ("InvalidAccessKeyId", "AccessDenied", "403")
    admin_s3 = _client("s3", endpoint, admin_key["AccessKeyId"], admin_key["SecretAccessKey"])
    admin_iam = _client("iam", endpoint, admin_key["AccessKeyId"], admin_key["SecretAccessKey"])
    admin_s3.head_bucket(Bucket=BUCKET)
    wrong_secret = _client("s3", endpoint, reg_key["AccessKeyId"], "not-the-secret")
    with pytest.raises(botocore.exceptions.ClientError) as bad_signature:
        wrong_secret.list_objects_v2(Bucket=BUCKET)
    assert bad_signature.value.response["Error"]["Code"] == "SignatureDoesNotMatch"

    root = tmp_path_factory.mktemp("iam")
    redis_port, redis_password = free_port(), secrets.token_urlsafe(24)
    redis_conf = root / "redis.conf"
    fd = os.open(redis_conf, os.O_WRONLY | os.O_CREAT, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(f'bind 127.0.0.1\nport {redis_port}\nsave ""\nappendonly no\nrequirepass {redis_password}\n'
                 "maxmemory 64mb\nmaxmemory-policy allkeys-lru\n")
    redis = pool.start("iam-redis", [bins["redis-server"], str(redis_conf)], f"127.0.0.1:{redis_port}")

    # S3 access is what this test is about: no token server (test 15 covers token auth)
    settings = load_settings({"registry-ha:authEnabled": "false"}, "staging")
    listen, debug = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
    config = build_registry_config(
        settings,
        "private",
        Endpoints(s3_bucket=BUCKET, s3_region=REGION, redis_addr=redis.address, s3_endpoint=endpoint,
                  listen_addr=listen, debug_addr=debug),
        Credentials(http_secret=secrets.token_urlsafe(32), redis_password=redis_password,
                    s3_access_key=reg_key["AccessKeyId"], s3_secret_key=reg_key["SecretAccessKey"]),
    )
    config_path = root / "registry.yml"
    fd = os.open(config_path, os.O_WRONLY | os.O_CREAT, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(dump_config(config))
    registry = pool.start(
        "iam-registry", [bins["registry"], "serve", str(config_path)], listen,
        ready=lambda: procs.http_status(listen, "/") == 200,
    )
    yield {"registry": registry.address, "admin_s3": admin_s3, "admin_iam": admin_iam}
    for server in (registry, redis, moto):
        server.stop()


def manifest_stored(admin_s3, repo: str, digest: str) -> bool:
    key = f"registry/docker/registry/v2/repositories/{repo}/_manifests/revisions/sha256/{digest.split(':', 1)[1]}/link"
    try:
        admin_s3.head_object(Bucket=BUCKET, Key=key)
        return True
    except botocore.exceptions.ClientError:
        return False


def blob_stored(admin_s3, digest: str) -> bool:
    hexdigest = digest.split(":", 1)[1]
    key = f"registry/docker/registry/v2/blobs/sha256/{hexdigest[:2]}/{hexdigest}/data"
    try:
        return sha256(admin_s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()) == digest
    except botocore.exceptions.ClientError:
        return False


@pytest.mark.parametrize("removed", [None, *REMOVALS], ids=["full-policy", *[r.split(":")[1] for r in REMOVALS]])
def test_generated_policy_is_sufficient_and_each_permission_needed(moto_registry, skopeo_bin, workdir, removed):
    admin_iam, admin_s3 = moto_registry["admin_iam"], moto_registry["admin_s3"]
    admin_iam.put_user_policy(UserName="registry", PolicyName="registry", PolicyDocument=policy_without(removed))
    try:
        repo = f"iam/{(removed or 'full').split(':')[-1].lower()}"
        # layers under S3's 5 MiB part minimum: moto 5.2.5 rejects the registry's SigV4 signature on a
        # flushed >= 5 MiB UploadPart (SignatureDoesNotMatch) even with the full policy; SeaweedFS does not.
        image = build_image(workdir / "layout", "v1", layer_sizes=(64 * 1024, 2 * 1024 * 1024))
        result = push(skopeo_bin, image, moto_registry["registry"], repo)
        if removed is None:
            assert result.returncode == 0, result.stderr
            assert manifest_stored(admin_s3, repo, image.manifest_digest)
            assert all(blob_stored(admin_s3, d) for d in image.blob_digests)
            dest = workdir / "pulled"
            assert pull_dir(skopeo_bin, moto_registry["registry"], f"{repo}:v1", dest).returncode == 0
            assert_dir_matches(dest, image)
        else:
            assert result.returncode != 0, f"push succeeded without {removed}"
            assert not manifest_stored(admin_s3, repo, image.manifest_digest), f"manifest stored without {removed}"
    finally:
        admin_iam.put_user_policy(UserName="registry", PolicyName="registry", PolicyDocument=policy_without(None))
