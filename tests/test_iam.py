"""The registry's IAM policy and the bucket's TLS-only policy, as documents."""
import json

from registry_ha.iam import registry_statements, tls_only_statements, to_policy_json

BUCKET = "arn:aws:s3:::neural-hive-registry-staging-x"


def test_registry_policy_is_least_privilege_on_this_bucket_only():
    doc = json.loads(to_policy_json(registry_statements(BUCKET)))
    by_sid = {s["Sid"]: s for s in doc["Statement"]}
    assert set(by_sid) == {"RegistryBucket", "RegistryObjects"}
    assert sorted(by_sid["RegistryBucket"]["Action"]) == [
        "s3:GetBucketLocation",
        "s3:ListBucket",
        "s3:ListBucketMultipartUploads",
    ]
    assert by_sid["RegistryBucket"]["Resource"] == BUCKET
    assert sorted(by_sid["RegistryObjects"]["Action"]) == [
        "s3:AbortMultipartUpload",
        "s3:DeleteObject",
        "s3:GetObject",
        "s3:ListMultipartUploadParts",
        "s3:PutObject",
    ]
    assert by_sid["RegistryObjects"]["Resource"] == f"{BUCKET}/*"
    for statement in doc["Statement"]:
        assert statement["Effect"] == "Allow"
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        assert not any("*" in a for a in actions)
        assert statement["Resource"] != "*"


def test_kms_key_adds_only_what_sse_kms_needs():
    key = "arn:aws:kms:us-east-1:123456789012:key/k"
    doc = json.loads(to_policy_json(registry_statements(BUCKET, key)))
    kms = [s for s in doc["Statement"] if s["Sid"] == "RegistryKmsKey"]
    assert kms == [{"Sid": "RegistryKmsKey", "Effect": "Allow", "Action": ["kms:GenerateDataKey", "kms:Decrypt"], "Resource": key}]


def test_bucket_policy_denies_requests_without_tls():
    doc = json.loads(to_policy_json(tls_only_statements(BUCKET)))
    (statement,) = doc["Statement"]
    assert statement["Effect"] == "Deny" and statement["Principal"] == "*" and statement["Action"] == "s3:*"
    assert statement["Resource"] == [BUCKET, f"{BUCKET}/*"]
    assert statement["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
