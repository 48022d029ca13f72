"""IAM and bucket policy documents for the registry's S3 bucket, as plain data.

Statements are in the input form of `aws.iam.get_policy_document` (sid, effect, actions,
resources, principals, conditions); `to_policy_json` turns them into the JSON AWS stores,
which is what the moto integration test enforces.
"""
from __future__ import annotations

import json
from typing import Optional

BUCKET_ACTIONS = ("s3:ListBucket", "s3:GetBucketLocation", "s3:ListBucketMultipartUploads")
OBJECT_ACTIONS = (
    "s3:PutObject",
    "s3:GetObject",
    "s3:DeleteObject",
    "s3:ListMultipartUploadParts",
    "s3:AbortMultipartUpload",
)
KMS_ACTIONS = ("kms:GenerateDataKey", "kms:Decrypt")


def registry_statements(bucket_arn: str, kms_key_arn: Optional[str] = None) -> list[dict]:
    """Least privilege for Distribution's S3 driver: this bucket only, no wildcard action."""
    statements = [
        {"sid": "RegistryBucket", "effect": "Allow", "actions": list(BUCKET_ACTIONS), "resources": [bucket_arn]},
        {
            "sid": "RegistryObjects",
            "effect": "Allow",
            "actions": list(OBJECT_ACTIONS),
            "resources": [f"{bucket_arn}/*"],
        },
    ]
    if kms_key_arn:
        statements.append(
            {"sid": "RegistryKmsKey", "effect": "Allow", "actions": list(KMS_ACTIONS), "resources": [kms_key_arn]}
        )
    return statements


def tls_only_statements(bucket_arn: str) -> list[dict]:
    """Deny every request to the bucket and its objects that does not arrive over TLS."""
    return [
        {
            "sid": "DenyInsecureTransport",
            "effect": "Deny",
            "principals": [{"type": "*", "identifiers": ["*"]}],
            "actions": ["s3:*"],
            "resources": [bucket_arn, f"{bucket_arn}/*"],
            "conditions": [{"test": "Bool", "variable": "aws:SecureTransport", "values": ["false"]}],
        }
    ]


KMS_KEY_ID = "s3:x-amz-server-side-encryption-aws-kms-key-id"
SSE_ALGORITHM = "s3:x-amz-server-side-encryption"


def kms_only_statements(bucket_arn: str, kms_key_arn: str) -> list[dict]:
    """Refuse object writes that name another KMS key, another algorithm, or aws:kms without a key id.

    Writes without SSE headers pass: the bucket's default encryption (this key) applies to them, and
    that is how the registry writes (it sends no SSE headers in KMS mode). The third statement turns
    Distribution 3.1.1's re-created multipart upload (aws:kms, keyid dropped: AWS would use the
    aws/s3 key) into a refusal instead of an object under the wrong key. S3 authorises
    CreateMultipartUpload, UploadPart, CopyObject and UploadPartCopy as s3:PutObject; the
    condition compares the header literally, so the key is named by its key ARN."""
    every = {"type": "*", "identifiers": ["*"]}
    objects = [f"{bucket_arn}/*"]
    return [
        {
            "sid": "DenyOtherKmsKey",
            "effect": "Deny",
            "principals": [every],
            "actions": ["s3:PutObject"],
            "resources": objects,
            "conditions": [
                {"test": "StringNotEquals", "variable": KMS_KEY_ID, "values": [kms_key_arn]},
                {"test": "Null", "variable": KMS_KEY_ID, "values": ["false"]},
            ],
        },
        {
            "sid": "DenyOtherEncryption",
            "effect": "Deny",
            "principals": [every],
            "actions": ["s3:PutObject"],
            "resources": objects,
            "conditions": [
                {"test": "StringNotEquals", "variable": SSE_ALGORITHM, "values": ["aws:kms"]},
                {"test": "Null", "variable": SSE_ALGORITHM, "values": ["false"]},
            ],
        },
        {
            "sid": "DenyKmsWithoutKeyId",
            "effect": "Deny",
            "principals": [every],
            "actions": ["s3:PutObject"],
            "resources": objects,
            "conditions": [
                {"test": "StringEquals", "variable": SSE_ALGORITHM, "values": ["aws:kms"]},
                {"test": "Null", "variable": KMS_KEY_ID, "values": ["true"]},
            ],
        },
    ]


def bucket_policy_statements(bucket_arn: str, kms_key_arn: Optional[str] = None) -> list[dict]:
    """The bucket policy: TLS only, and with SSE-KMS only the stack's key."""
    return tls_only_statements(bucket_arn) + (kms_only_statements(bucket_arn, kms_key_arn) if kms_key_arn else [])


def to_policy_json(statements: list[dict]) -> str:
    """The JSON document AWS stores for `statements` (what get_policy_document returns)."""
    out = []
    for st in statements:
        doc: dict = {"Sid": st["sid"], "Effect": st["effect"], "Action": _one_or_list(st["actions"])}
        doc["Resource"] = _one_or_list(st["resources"])
        for principal in st.get("principals", []):
            doc["Principal"] = (
                "*" if principal["type"] == "*" else {principal["type"]: _one_or_list(principal["identifiers"])}
            )
        for cond in st.get("conditions", []):
            doc.setdefault("Condition", {}).setdefault(cond["test"], {})[cond["variable"]] = _one_or_list(
                cond["values"]
            )
        out.append(doc)
    return json.dumps({"Version": "2012-10-17", "Statement": out}, sort_keys=False)


def _one_or_list(values: list[str]):
    return values[0] if len(values) == 1 else list(values)
