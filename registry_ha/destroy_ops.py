"""`deploy-registry-ha.sh destroy <stack> [--yes]`: `pulumi destroy`, saying first what stays.

With `retainBucket: true` (the default, production's value) the bucket and the KMS key the stack
created are protected and retained on delete: `pulumi destroy --exclude-protected` removes everything
else and leaves them, with every image, in AWS and in the stack's state; a later `deploy` of the
same stack brings the registry back on them. The bucket's guards (public-access block, encryption,
versioning, lifecycle, TLS-only policy) are retained on delete too: Pulumi forgets them, AWS keeps
them, so the bucket left behind stays private, encrypted and versioned. With `retainBucket: false`
(staging) the bucket goes too, emptied first when `forceDestroy: true`.
"""
from __future__ import annotations

import sys
from typing import Sequence

from registry_ha.pulumi_ops import (
    OpsError,
    _parser,
    _pulumi,
    _pulumi_json,
    _run_main,
    check_ready,
    confirm,
    project_dir,
)
from registry_ha.settings import PROJECT, Settings, SettingsError, load_settings
from registry_ha.stacks import read_stack_file

STORAGE_COMPONENT = "registry-ha:storage:RegistryStorage"


def storage_urn(stack: str, resource_type: str, name: str) -> str:
    return f"urn:pulumi:{stack}::{PROJECT}::{STORAGE_COMPONENT}${resource_type}::{name}"


def kept_resources(settings: Settings, stack: str) -> list[str]:
    """URNs of what `destroy` leaves in the stack (protected): the bucket and the key the stack created."""
    if not settings.storage.retain:
        return []
    urns = [storage_urn(stack, "aws:s3/bucket:Bucket", "storage-bucket")]
    if settings.storage.encryption == "sse-kms" and not settings.storage.kms_key_arn:
        urns.append(storage_urn(stack, "aws:kms/key:Key", "storage-key"))
    return urns


def what_stays(settings: Settings, stack: str, outputs: dict) -> str:
    bucket = outputs.get("bucketName") or "(the stack's bucket)"
    region = outputs.get("region") or settings.storage.region
    namespace = outputs.get("namespace") or settings.namespace
    storage = settings.storage
    goes = (f"  goes:  every Kubernetes object in namespace {namespace} (registry, caches, Redis: a cache only), "
            f"the IAM user {outputs.get('iamUserName') or '(registry user)'} and its access key\n")
    if not storage.retain:
        emptied = ("emptied first (forceDestroy: true): every image is deleted" if storage.force_destroy
                   else "only if it is empty (forceDestroy: false): a bucket with images makes destroy fail")
        return f"destroy {stack}:\n{goes}  goes:  bucket {bucket} ({region}), {emptied}\n"
    key = ""
    if storage.encryption == "sse-kms":
        key = (", its KMS key (protected)" if not storage.kms_key_arn
               else f"; the KMS key {storage.kms_key_arn} is yours, not the stack's")
    versions = f"versioned, old versions kept {storage.noncurrent_version_days} days" if storage.versioning else "not versioned"
    return (
        f"destroy {stack}:\n{goes}"
        f"  stays: bucket {bucket} ({region}) with every image ({versions}){key}, in the stack's state, protected\n"
        "  stays: the bucket's public-access block, encryption, versioning, lifecycle and TLS-only policy "
        "(in AWS; Pulumi forgets them)\n"
    )


def how_to_delete_the_bucket(settings: Settings, stack: str, outputs: dict) -> str:
    bucket = outputs.get("bucketName") or "<bucket>"
    urns = kept_resources(settings, stack)
    targets = " ".join(f"--target '{urn}'" for urn in urns)
    lines = [
        f"The bucket {bucket} and every image in it are kept. `./scripts/deploy-registry-ha.sh deploy {stack}` "
        "brings the registry back on them.",
        "To delete them for good (irreversible), let Pulumi empty and delete them:",
        f"  pulumi config set {PROJECT}:retainBucket false --stack {stack}",
        f"  pulumi config set {PROJECT}:forceDestroy true --stack {stack}",
        f"  pulumi up --stack {stack} --yes {targets}",
        f"  pulumi destroy --stack {stack} --yes",
        "or by hand: empty the bucket of every object version and delete marker (the S3 console's Empty), "
        f"`aws s3api delete-bucket --bucket {bucket}`"
        + (", `aws kms schedule-key-deletion --key-id <key> --pending-window-in-days 30` for the key whose "
           f"description is 'registry-ha {stack}: encryption of registry blobs at rest'" if len(urns) > 1 else "")
        + ", then drop them from the state: "
        + " ".join(f"pulumi state delete --stack {stack} --force '{urn}';" for urn in urns).rstrip(";"),
    ]
    return "\n".join(lines) + "\n"


def _destroy(argv: list[str]) -> int:
    parser = _parser("destroy", "pulumi destroy, keeping the bucket and its KMS key when retainBucket is true.")
    parser.add_argument("--yes", "-y", action="store_true", help="do not ask before pulumi destroy")
    args = parser.parse_args(argv)
    cwd = project_dir()
    check_ready(args.stack, cwd)
    try:
        config, secret_keys = read_stack_file(args.stack, cwd)
        settings = load_settings(config, args.stack, secret_keys, aws_region=config.get("aws:region"))
    except SettingsError as exc:
        raise OpsError(str(exc), code=2) from None
    outputs = _pulumi_json(["stack", "output", "--json", "--stack", args.stack, "--non-interactive"], cwd, "outputs") or {}
    sys.stderr.write(what_stays(settings, args.stack, outputs))
    common = ["--stack", args.stack, "--non-interactive", "--exclude-protected"]
    preview = _pulumi(["destroy", "--preview-only", *common], cwd)
    if preview.returncode != 0:
        raise OpsError(f"pulumi destroy --preview-only failed for stack {args.stack!r} (exit {preview.returncode}); "
                       "nothing was changed")
    confirm(f"Destroy stack {args.stack!r} as shown above?", args.yes)
    proc = _pulumi(["destroy", "--yes", *common], cwd)
    if proc.returncode != 0:
        raise OpsError(f"pulumi destroy failed for stack {args.stack!r} (exit {proc.returncode}); see the output above")
    if settings.storage.retain:
        sys.stdout.write(how_to_delete_the_bucket(settings, args.stack, outputs))
    else:
        sys.stdout.write(f"stack {args.stack} destroyed, its bucket included\n")
    return 0


def destroy_main(argv: Sequence[str]) -> int:
    return _run_main(_destroy, argv)
