"""S3 for the sandbox: SeaweedFS `weed mini`, with the registry's identity limited to what the
program's IAM policy grants (Read/Write/List on the one bucket) and an admin identity for tests."""
from __future__ import annotations

import json
from typing import TYPE_CHECKING

from registry_ha import iam
from registry_ha.sandbox import procs
from registry_ha.sandbox.errors import SandboxError
from registry_ha.sandbox.secrets import write_private

if TYPE_CHECKING:
    from registry_ha.sandbox.core import Sandbox

# SeaweedFS identities grant Read/Write/List per bucket; map the program's IAM actions onto them.
_SEAWEED_ACTION = {
    "s3:GetObject": "Read",
    "s3:PutObject": "Write",
    "s3:DeleteObject": "Write",
    "s3:AbortMultipartUpload": "Write",
    "s3:ListBucket": "List",
    "s3:ListBucketMultipartUploads": "List",
    "s3:ListMultipartUploadParts": "List",
    "s3:GetBucketLocation": "List",
}


def seaweed_actions(statements: list[dict], bucket: str) -> list[str]:
    actions = set()
    for st in statements:
        if st["effect"] != "Allow":
            continue
        for action in st["actions"]:
            if action.startswith("s3:"):
                actions.add(f"{_SEAWEED_ACTION[action]}:{bucket}")
    return sorted(actions)


def write_config(sb: "Sandbox") -> None:
    s = sb.secrets()
    statements = iam.registry_statements(f"arn:aws:s3:::{sb.bucket}")
    write_private(sb.config_dir / "registry-iam-policy.json", iam.to_policy_json(statements))
    identities = {
        "identities": [
            {
                "name": "registry",
                "credentials": [{"accessKey": s["s3_access_key"], "secretKey": s["s3_secret_key"]}],
                "actions": seaweed_actions(statements, sb.bucket),
            },
            {
                "name": "sandbox-admin",
                "credentials": [{"accessKey": s["admin_access_key"], "secretKey": s["admin_secret_key"]}],
                "actions": ["Admin", "Read", "Write", "List", "Tagging"],
            },
        ]
    }
    write_private(sb.config_dir / "s3-identities.json", json.dumps(identities, indent=2))


def argv(sb: "Sandbox", name: str, binaries: dict[str, str]) -> list[str]:
    opts = {
        "dir": str(sb.state_dir / "s3"),
        "ip": "127.0.0.1",
        "ip.bind": "127.0.0.1",
        "master.telemetry": "false",
        "admin.ui": "false",
        "webdav": "false",
        "s3.port.iceberg": "0",
        "s3.port.lance": "0",
        "s3.config": str(sb.config_dir / "s3-identities.json"),
        "s3.localSocket": str(sb.state_dir / "s3.sock"),
        "filer.localSocket": str(sb.state_dir / "filer.sock"),
        "bucket": sb.bucket,
        **{k: str(v) for k, v in sb.ports.weed().items()},
    }
    return [binaries["weed"], "mini", *[f"-{k}={v}" for k, v in opts.items()]]


def before_start(sb: "Sandbox", name: str) -> None:
    # weed mini reloads mini.options from its data dir; the flags must win
    (sb.state_dir / "s3").mkdir(exist_ok=True)
    (sb.state_dir / "s3" / "mini.options").unlink(missing_ok=True)
    for sock in ("s3.sock", "filer.sock"):
        (sb.state_dir / sock).unlink(missing_ok=True)


def healthy(sb: "Sandbox", name: str) -> bool:
    return procs.http_status(sb.components[name].address, "/healthz") == 200


def client(sb: "Sandbox", admin: bool = True):
    """boto3 S3 client for the sandbox itself and the tests (the admin identity, never the registry's)."""
    import boto3
    from botocore.config import Config

    s = sb.secrets()
    prefix = "admin" if admin else "s3"
    return boto3.client(
        "s3",
        endpoint_url=sb.s3_endpoint,
        aws_access_key_id=s[f"{prefix}_access_key"],
        aws_secret_access_key=s[f"{prefix}_secret_key"],
        region_name=sb.settings.storage.region,
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 2}),
    )


def after_start(sb: "Sandbox", name: str) -> None:
    """The bucket exists, and a write/read/list round trip works (healthz answers before the volume
    server has re-registered after a restart; until then the registry would answer 500)."""
    import botocore.exceptions

    s3 = client(sb)

    def exists() -> bool:
        try:
            s3.head_bucket(Bucket=sb.bucket)
            return True
        except (botocore.exceptions.ClientError, botocore.exceptions.EndpointConnectionError):
            return False

    if not procs.wait_until(exists, 10):
        s3.create_bucket(Bucket=sb.bucket)
        if not procs.wait_until(exists, 10):
            raise SandboxError(f"bucket {sb.bucket} could not be created in SeaweedFS")

    def round_trip() -> bool:
        key = "sandbox-readiness/probe"
        try:
            s3.put_object(Bucket=sb.bucket, Key=key, Body=b"ok")
            if s3.get_object(Bucket=sb.bucket, Key=key)["Body"].read() != b"ok":
                return False
            s3.list_objects_v2(Bucket=sb.bucket, MaxKeys=5)
            s3.delete_object(Bucket=sb.bucket, Key=key)
            return True
        except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError):
            return False

    if not procs.wait_until(round_trip, 30, 0.2):
        raise SandboxError("SeaweedFS S3 did not serve a write/read round trip within 30s")
