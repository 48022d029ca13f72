"""`deploy-registry-ha.sh restore <stack> REPO:TAG --before TIME [--yes]`: bring back a deleted image
from the bucket's object versions (bucketVersioning, production's setting).

Distribution keeps an image as objects under the private registry's root directory:
  repositories/<repo>/_manifests/tags/<tag>/current/link           the tag -> the manifest digest
  repositories/<repo>/_manifests/tags/<tag>/index/sha256/<d>/link  the tag's history
  repositories/<repo>/_manifests/revisions/sha256/<d>/link         the manifest belongs to the repository
  repositories/<repo>/_layers/sha256/<d>/link                      each config/layer blob belongs to it
  blobs/sha256/<d[:2]>/<d>/data                                    the content (manifests and layers)
Deleting a manifest (or a tag) deletes its links; a later garbage collection deletes the blobs only
it used. On a versioned bucket each delete only adds a delete marker. This command reads the tag's
versions to find the digest the tag pointed at TIME, lists the versions of every object that image
needs, and copies the newest version before TIME back over each one that is gone now (a new current
version; nothing is deleted). Blobs first, the tag last, so the tag never points at a missing manifest.

It needs read access to the object versions and s3:PutObject on the bucket (the operator's AWS
credentials, not the registry's, which cannot list versions). Redis needs nothing: it only caches
descriptors of blobs that exist.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
from dataclasses import dataclass
from typing import Any, Optional, Sequence

from registry_ha.imagetools import UsageError, parse_name_tag
from registry_ha.pulumi_ops import OpsError, _parser, _pulumi_json, _run_main, check_ready, confirm, project_dir
from registry_ha.registry_config import Credentials, Endpoints, build_registry_config
from registry_ha.settings import Settings, SettingsError, load_settings
from registry_ha.stacks import read_stack_file

MANIFEST_LISTS = ("application/vnd.oci.image.index.v1+json", "application/vnd.docker.distribution.manifest.list.v2+json")


def parse_time(value: str) -> dt.datetime:
    """ISO 8601 (2026-11-28T10:00:00Z, 2026-11-28 10:00, with an offset or not: no offset is UTC)."""
    try:
        moment = dt.datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"an ISO 8601 time such as 2026-11-28T10:00:00Z (got {value!r})") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.timezone.utc)


def _image_arg(value: str) -> tuple[str, str]:
    try:
        return parse_name_tag(value)
    except UsageError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


@dataclass
class Version:
    key: str
    version_id: str
    modified: dt.datetime
    deleted: bool  # a delete marker
    latest: bool  # what S3 serves now (a delete marker: nothing)
    size: int = 0


@dataclass
class Step:
    key: str
    source: Optional[Version]  # the version to copy back; None: gone and nothing to restore it from
    why: str


def private_root_directory(settings: Settings) -> str:
    """The private registry's S3 rootdirectory, as the program's config builder renders it."""
    placeholder = Endpoints(s3_bucket="-", s3_region=settings.storage.region, redis_addr="-")
    config = build_registry_config(settings, "private", placeholder, Credentials("-", "-", "-", "-"))
    return config["storage"]["s3"]["rootdirectory"]


class Layout:
    """Object keys of the private registry's storage under its rootdirectory."""

    def __init__(self, rootdirectory: str):
        self.base = f"{rootdirectory.strip('/')}/docker/registry/v2"

    def repository(self, repo: str) -> str:
        return f"{self.base}/repositories/{repo}"

    def tag_current(self, repo: str, tag: str) -> str:
        return f"{self.repository(repo)}/_manifests/tags/{tag}/current/link"

    def tag_index(self, repo: str, tag: str, digest: str) -> str:
        return f"{self.repository(repo)}/_manifests/tags/{tag}/index/sha256/{digest.split(':', 1)[1]}/link"

    def revision(self, repo: str, digest: str) -> str:
        return f"{self.repository(repo)}/_manifests/revisions/sha256/{digest.split(':', 1)[1]}/link"

    def layer(self, repo: str, digest: str) -> str:
        return f"{self.repository(repo)}/_layers/sha256/{digest.split(':', 1)[1]}/link"

    def blob(self, digest: str) -> str:
        hexd = digest.split(":", 1)[1]
        return f"{self.base}/blobs/sha256/{hexd[:2]}/{hexd}/data"


class Bucket:
    """The object versions of one bucket, fetched per key (and cached)."""

    def __init__(self, s3, name: str):
        self.s3, self.name = s3, name
        self._versions: dict[str, list[Version]] = {}

    def versions(self, key: str) -> list[Version]:
        """Every version and delete marker of exactly `key`, newest first."""
        if key not in self._versions:
            found: list[Version] = []
            for page in self.s3.get_paginator("list_object_versions").paginate(Bucket=self.name, Prefix=key):
                for v in page.get("Versions", []):
                    if v["Key"] == key:
                        found.append(Version(key, v["VersionId"], v["LastModified"], False, v["IsLatest"], int(v.get("Size", 0))))
                for m in page.get("DeleteMarkers", []):
                    if m["Key"] == key:
                        found.append(Version(key, m["VersionId"], m["LastModified"], True, m["IsLatest"]))
            # newest first; within one second (S3's resolution) the latest, then a delete marker, is the newer
            found.sort(key=lambda v: (v.modified, v.latest, v.deleted), reverse=True)
            self._versions[key] = found
        return self._versions[key]

    def current(self, key: str) -> Optional[Version]:
        """The version S3 serves now (None: the key is absent or deleted)."""
        return next((v for v in self.versions(key) if v.latest and not v.deleted), None)

    def at(self, key: str, moment: dt.datetime) -> Optional[Version]:
        """The newest version or delete marker written at or before `moment`."""
        return next((v for v in self.versions(key) if v.modified <= moment), None)

    def restorable(self, key: str, moment: dt.datetime) -> Optional[Version]:
        """The newest real version at or before `moment`, else the oldest one after it."""
        real = [v for v in self.versions(key) if not v.deleted]
        before = [v for v in real if v.modified <= moment]
        return before[0] if before else (real[-1] if real else None)

    def read(self, version: Version) -> bytes:
        return self.s3.get_object(Bucket=self.name, Key=version.key, VersionId=version.version_id)["Body"].read()

    def restore(self, version: Version) -> None:
        self.s3.copy_object(Bucket=self.name, Key=version.key,
                            CopySource={"Bucket": self.name, "Key": version.key, "VersionId": version.version_id})


def plan(bucket: Bucket, layout: Layout, repo: str, tag: str, moment: dt.datetime) -> tuple[str, list[Step], list[Version]]:
    """(the digest REPO:TAG pointed at at `moment`, the steps that bring it back, the versions looked at)."""
    tag_key = layout.tag_current(repo, tag)
    at = bucket.at(tag_key, moment)
    if at is None or at.deleted:
        history = ", ".join(f"{'deleted' if v.deleted else 'set'} {v.modified:%Y-%m-%dT%H:%M:%SZ}"
                            for v in reversed(bucket.versions(tag_key))) or "no versions at all"
        raise OpsError(f"{repo}:{tag} did not exist at {moment:%Y-%m-%dT%H:%M:%SZ} (tag history: {history})")
    digest = bucket.read(at).decode().strip()
    if not digest.startswith("sha256:"):
        raise OpsError(f"{tag_key} version {at.version_id} holds {digest[:80]!r}, not a digest")
    steps: list[Step] = []
    seen: set[str] = set()

    def need(key: str, why: str, expected: Optional[bytes] = None) -> None:
        if key in seen:
            return
        seen.add(key)
        now = bucket.current(key)
        if now is not None and (expected is None or bucket.read(now).strip() == expected):
            return
        steps.append(Step(key, bucket.restorable(key, moment), why))

    def manifest(digest: str, why: str) -> None:
        need(layout.blob(digest), f"{why} (manifest content)")
        need(layout.revision(repo, digest), f"{why} (manifest in {repo})")
        source = bucket.current(layout.blob(digest)) or bucket.restorable(layout.blob(digest), moment)
        if source is None:
            return  # reported as a step without a source
        document = json.loads(bucket.read(source))
        if document.get("mediaType") in MANIFEST_LISTS or "manifests" in document:
            for child in document.get("manifests", []):
                manifest(child["digest"], f"platform manifest of {digest[:19]}")
            return
        for blob in [document.get("config"), *document.get("layers", [])]:
            if blob and blob.get("digest"):
                need(layout.blob(blob["digest"]), "config/layer content")
                need(layout.layer(repo, blob["digest"]), f"config/layer in {repo}")

    manifest(digest, f"{repo}:{tag}")
    need(layout.tag_index(repo, tag, digest), f"tag {tag} history")
    need(layout.tag_current(repo, tag), f"tag {tag} -> {digest[:19]}", expected=digest.encode())
    looked_at = [v for key in sorted(seen) for v in bucket.versions(key)]
    return digest, steps, looked_at


def _short(layout: Layout, key: str) -> str:
    return key[len(layout.base) + 1:]


def format_versions(layout: Layout, versions: list[Version]) -> str:
    lines = ["object versions (newest first):"]
    for v in versions:
        kind = "delete marker" if v.deleted else f"{v.size} bytes"
        lines.append(f"  {v.modified:%Y-%m-%dT%H:%M:%SZ}  {v.version_id[:32]:<32}  {kind:<13}  {_short(layout, v.key)}")
    return "\n".join(lines) + "\n"


def s3_client(settings: Settings, region: str):
    import boto3
    from botocore.config import Config

    endpoint = settings.storage.endpoint or os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    style = "path" if endpoint else "auto"  # an S3-compatible endpoint is addressed by path, as the registry does
    return boto3.client("s3", region_name=region, endpoint_url=settings.storage.endpoint or None,
                        config=Config(s3={"addressing_style": style}, retries={"max_attempts": 3}))


def _restore(argv: list[str]) -> int:
    parser = _parser("restore", "Restore a deleted REPO:TAG from the bucket's object versions as it was at --before.")
    parser.add_argument("image", type=_image_arg, metavar="REPO:TAG", help="e.g. team/app:1.2.3")
    parser.add_argument("--before", type=parse_time, required=True, metavar="TIME",
                        help="restore the image as it was at this time (ISO 8601; no offset: UTC), e.g. before a delete")
    parser.add_argument("--bucket", help="the bucket (default: the stack's bucketName output)")
    parser.add_argument("--region", help="the bucket's region (default: the stack's region output)")
    parser.add_argument("--yes", "-y", action="store_true", help="do not ask before restoring")
    args = parser.parse_args(argv)
    repo, tag = args.image
    cwd = project_dir()
    try:
        config, secret_keys = read_stack_file(args.stack, cwd)
        settings = load_settings(config, args.stack, secret_keys, aws_region=config.get("aws:region"))
    except SettingsError as exc:
        raise OpsError(str(exc), code=2) from None
    outputs: dict[str, Any] = {}
    if not args.bucket:
        check_ready(args.stack, cwd)
        outputs = _pulumi_json(["stack", "output", "--json", "--stack", args.stack, "--non-interactive"], cwd, "outputs") or {}
        if not outputs.get("bucketName"):
            raise OpsError(f"stack {args.stack!r} has no bucketName output; pass --bucket")
    bucket_name = args.bucket or outputs["bucketName"]
    region = args.region or outputs.get("region") or settings.storage.region
    import botocore.exceptions

    s3 = s3_client(settings, region)
    try:
        versioning = s3.get_bucket_versioning(Bucket=bucket_name).get("Status")
        if versioning not in ("Enabled", "Suspended"):
            raise OpsError(f"bucket {bucket_name} has no versioning (bucketVersioning: false): a deleted image cannot "
                           "be restored from it")
        layout = Layout(private_root_directory(settings))
        bucket = Bucket(s3, bucket_name)
        digest, steps, looked_at = plan(bucket, layout, repo, tag, args.before)
        sys.stdout.write(f"{repo}:{tag} was {digest} at {args.before:%Y-%m-%dT%H:%M:%SZ}\n")
        sys.stdout.write(format_versions(layout, looked_at))
        missing = [s for s in steps if s.source is None]
        if missing:
            raise OpsError("cannot restore: no version left of " + ", ".join(_short(layout, s.key) for s in missing)
                           + " (noncurrent versions expire after noncurrentVersionDays)")
        if not steps:
            sys.stdout.write(f"nothing to restore: {repo}:{tag} is in place\n")
            return 0
        for step in steps:
            sys.stdout.write(f"restore {_short(layout, step.key)} from version {step.source.version_id[:32]} "
                             f"({step.source.modified:%Y-%m-%dT%H:%M:%SZ}): {step.why}\n")
        confirm(f"Restore {len(steps)} object(s) in bucket {bucket_name}?", args.yes)
        for step in steps:
            bucket.restore(step.source)
    except botocore.exceptions.NoCredentialsError:
        raise OpsError("no AWS credentials: set AWS_PROFILE (or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY) for an identity "
                       "that may list object versions and put objects in the bucket") from None
    except botocore.exceptions.ClientError as exc:
        error = exc.response.get("Error", {})
        raise OpsError(f"S3 {exc.operation_name} on {bucket_name}: {error.get('Code')} {error.get('Message', '')}".rstrip()) from None
    sys.stdout.write(f"restored {len(steps)} object(s): {repo}:{tag} -> {digest} pulls again\n")
    return 0


def main(argv: Sequence[str]) -> int:
    return _run_main(_restore, argv)
