"""S3 bucket for blobs and manifests, and the IAM user whose keys the registry uses.

The cluster is not on AWS, so there is no instance role or IRSA: the registry gets an
access key of a user that may touch this one bucket and nothing else.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import pulumi
import pulumi_aws as aws

from registry_ha.iam import bucket_policy_statements, registry_statements
from registry_ha.settings import StorageSettings


@dataclass
class RegistryStorageArgs:
    settings: StorageSettings
    stack: str


class RegistryStorage(pulumi.ComponentResource):
    bucket_name: pulumi.Output[str]
    bucket_arn: pulumi.Output[str]
    kms_key_arn: Optional[pulumi.Output[str]]
    access_key_id: pulumi.Output[str]
    secret_access_key: pulumi.Output[str]
    user_name: pulumi.Output[str]

    def __init__(self, name: str, args: RegistryStorageArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("registry-ha:storage:RegistryStorage", name, None, opts)
        cfg = args.settings
        child = pulumi.ResourceOptions(parent=self)
        tags = {"project": "registry-ha", "stack": args.stack, "managed-by": "pulumi"}

        self.kms_key = None
        self.kms_key_arn: Optional[pulumi.Output[str]] = None
        if cfg.encryption == "sse-kms":
            if cfg.kms_key_arn:
                self.kms_key_arn = pulumi.Output.from_input(cfg.kms_key_arn)
            else:
                self.kms_key = aws.kms.Key(
                    f"{name}-key",
                    description=f"registry-ha {args.stack}: encryption of registry blobs at rest",
                    enable_key_rotation=True,
                    deletion_window_in_days=30,
                    tags=tags,
                    opts=child,
                )
                self.kms_key_arn = self.kms_key.arn

        self.bucket = aws.s3.Bucket(
            f"{name}-bucket",
            bucket=cfg.bucket_name,
            bucket_prefix=None if cfg.bucket_name else cfg.bucket_prefix,
            force_destroy=cfg.force_destroy,
            tags=tags,
            opts=child,
        )
        self.ownership = aws.s3.BucketOwnershipControls(
            f"{name}-ownership",
            bucket=self.bucket.id,
            rule={"object_ownership": "BucketOwnerEnforced"},
            opts=child,
        )
        self.public_access_block = aws.s3.BucketPublicAccessBlock(
            f"{name}-public-access-block",
            bucket=self.bucket.id,
            block_public_acls=True,
            block_public_policy=True,
            ignore_public_acls=True,
            restrict_public_buckets=True,
            opts=child,
        )
        default_encryption = {"sse_algorithm": "AES256"}
        if self.kms_key_arn is not None:
            default_encryption = {"sse_algorithm": "aws:kms", "kms_master_key_id": self.kms_key_arn}
        self.encryption = aws.s3.BucketServerSideEncryptionConfiguration(
            f"{name}-encryption",
            bucket=self.bucket.id,
            rules=[
                {
                    "apply_server_side_encryption_by_default": default_encryption,
                    "bucket_key_enabled": self.kms_key_arn is not None,
                }
            ],
            opts=child,
        )
        self.versioning = None
        if cfg.versioning:
            self.versioning = aws.s3.BucketVersioning(
                f"{name}-versioning",
                bucket=self.bucket.id,
                versioning_configuration={"status": "Enabled"},
                opts=child,
            )
        lifecycle_rules = [
            {
                "id": "abort-incomplete-multipart-uploads",
                "status": "Enabled",
                "filter": {"prefix": ""},
                "abort_incomplete_multipart_upload": {"days_after_initiation": cfg.abort_multipart_days},
            }
        ]
        if cfg.versioning:
            lifecycle_rules.append(
                {
                    "id": "expire-noncurrent-versions",
                    "status": "Enabled",
                    "filter": {"prefix": ""},
                    "noncurrent_version_expiration": {"noncurrent_days": cfg.noncurrent_version_days},
                }
            )
        self.lifecycle = aws.s3.BucketLifecycleConfiguration(
            f"{name}-lifecycle",
            bucket=self.bucket.id,
            rules=lifecycle_rules,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[r for r in [self.versioning] if r]),
        )
        bucket_policy = aws.iam.get_policy_document_output(
            statements=pulumi.Output.all(
                self.bucket.arn, self.kms_key_arn if self.kms_key_arn is not None else None
            ).apply(lambda v: bucket_policy_statements(v[0], v[1]))
        )
        self.bucket_policy = aws.s3.BucketPolicy(
            f"{name}-tls-only",
            bucket=self.bucket.id,
            policy=bucket_policy.json,
            # A policy put before the public-access block exists can race with it.
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.public_access_block]),
        )

        self.user = aws.iam.User(
            f"{name}-registry-user",
            name=f"registry-ha-{args.stack}-registry",
            path="/registry-ha/",
            tags=tags,
            opts=child,
        )
        registry_policy = aws.iam.get_policy_document_output(
            statements=pulumi.Output.all(
                self.bucket.arn, self.kms_key_arn if self.kms_key_arn is not None else None
            ).apply(lambda v: registry_statements(v[0], v[1]))
        )
        self.user_policy = aws.iam.UserPolicy(
            f"{name}-registry-policy",
            user=self.user.name,
            name="registry-s3-access",
            policy=registry_policy.json,
            opts=child,
        )
        self.access_key = aws.iam.AccessKey(f"{name}-registry-key", user=self.user.name, opts=child)

        self.bucket_name = self.bucket.bucket
        self.bucket_arn = self.bucket.arn
        self.access_key_id = self.access_key.id
        self.secret_access_key = pulumi.Output.secret(self.access_key.secret)
        self.user_name = self.user.name
        self.register_outputs(
            {
                "bucket_name": self.bucket_name,
                "bucket_arn": self.bucket_arn,
                "user_name": self.user_name,
                "kms_key_arn": self.kms_key_arn,
            }
        )
