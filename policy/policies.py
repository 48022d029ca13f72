"""The registry-ha guardrails as plain validator functions `(args, report_violation)`.

`policy/__main__.py` wraps them in a mandatory CrossGuard PolicyPack; the tests call them
directly (constructing a PolicyPack starts a gRPC server and never returns). `args.props` are
the engine's camelCase inputs (`spec.template.spec.containers`, `blockPublicAcls`, ...). During
`pulumi preview`, reading a value that is not known yet raises the SDK's UnknownValueError,
which the SDK reports as "can't run during preview"; `pulumi up` runs every check.
"""
from __future__ import annotations

import ipaddress
import json
import re
import sys
from pathlib import Path
from collections.abc import Mapping, Sequence
from typing import Any, Callable, Optional

_REPO_ROOT = Path(__file__).resolve().parent.parent
if str(_REPO_ROOT) not in sys.path:  # the pack runs from policy/; registry_ha.pss lives next door
    sys.path.insert(0, str(_REPO_ROOT))

from registry_ha import pss  # noqa: E402  (standard library only)

ReportViolation = Callable[..., None]

BUCKET = "aws:s3/bucket:Bucket"
BUCKET_V2 = "aws:s3/bucketV2:BucketV2"
BUCKET_TYPES = (BUCKET, BUCKET_V2)
SSE_CONFIG = "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration"
SSE_CONFIG_V2 = "aws:s3/bucketServerSideEncryptionConfigurationV2:BucketServerSideEncryptionConfigurationV2"
PUBLIC_ACCESS_BLOCK = "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock"
BUCKET_POLICY = "aws:s3/bucketPolicy:BucketPolicy"
USER_POLICY = "aws:iam/userPolicy:UserPolicy"
MANAGED_POLICY = "aws:iam/policy:Policy"
USER_POLICY_ATTACHMENT = "aws:iam/userPolicyAttachment:UserPolicyAttachment"
SERVICE = "kubernetes:core/v1:Service"
CONFIG_MAP = "kubernetes:core/v1:ConfigMap"
NAMESPACE = "kubernetes:core/v1:Namespace"
WORKLOAD_TYPES = {
    "kubernetes:core/v1:Pod": "Pod",
    "kubernetes:apps/v1:Deployment": "Deployment",
    "kubernetes:apps/v1:StatefulSet": "StatefulSet",
    "kubernetes:apps/v1:DaemonSet": "DaemonSet",
    "kubernetes:apps/v1:ReplicaSet": "ReplicaSet",
    "kubernetes:core/v1:ReplicationController": "ReplicationController",
    "kubernetes:batch/v1:Job": "Job",
    "kubernetes:batch/v1:CronJob": "CronJob",
}

DEBUG_PORT = 5001  # Distribution's debug server: pprof, /debug/vars, metrics
DEBUG_PORT_NAMES = ("debug",)
SSE_ALGORITHMS = ("AES256", "aws:kms", "aws:kms:dsse")
PUBLIC_ACCESS_FLAGS = ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets")

# Annotation -> accepted values that make a LoadBalancer internal, per provider.
INTERNAL_LB_ANNOTATIONS = {
    "service.beta.kubernetes.io/aws-load-balancer-internal": ("true", "0.0.0.0/0"),
    "service.beta.kubernetes.io/aws-load-balancer-scheme": ("internal",),
    "networking.gke.io/load-balancer-type": ("Internal",),
    "cloud.google.com/load-balancer-type": ("Internal",),
    "service.beta.kubernetes.io/azure-load-balancer-internal": ("true",),
    "service.beta.kubernetes.io/oci-load-balancer-internal": ("true",),
    "service.beta.kubernetes.io/openstack-internal-load-balancer": ("true",),
}
# MetalLB has no "internal" scheme: an explicit pool (which must hold internal addresses) or
# explicit private addresses are the only statements a policy can check.
METALLB_POOL_ANNOTATIONS = ("metallb.universe.tf/address-pool", "metallb.io/address-pool")
METALLB_IP_ANNOTATIONS = ("metallb.universe.tf/loadBalancerIPs", "metallb.io/loadBalancerIPs")

SECRET_KEY_NAME = re.compile(
    r"(pass(word|wd|phrase)?|secret|token|api[_-]?key|private[_-]?key|credential|access[_-]?key|auth)",
    re.IGNORECASE,
)
AWS_ACCESS_KEY_ID = re.compile(r"\b(AKIA|ASIA|ABIA|ACCA)[0-9A-Z]{16}\b")
# `secretkey: abc`, `password = abc`, `"token": "abc"` inside an embedded config file.
SECRET_ASSIGNMENT = re.compile(
    r"""(?im)^\s*["']?[\w.-]*(password|passwd|secret|token|secretkey|secret_access_key|apikey|api_key)["']?\s*[:=]\s*["']?([^\s"'#]+)"""
)
PRIVATE_KEY_BLOCK = re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----")

_IMAGE = re.compile(
    r"^(?P<repo>[a-z0-9]+([._/-][a-z0-9]+)*(:\d+)?(/[a-z0-9]+([._-][a-z0-9]+)*)*)"
    r"(:(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}))?(@(?P<digest>sha256:[a-f0-9]{64}))?$"
)


# --------------------------------------------------------------------------- helpers


def _get(obj: Any, *path: Any, default: Any = None) -> Any:
    node = obj
    for step in path:
        if isinstance(node, Mapping):
            if step not in node:
                return default
            node = node[step]
        elif isinstance(node, Sequence) and not isinstance(node, str):
            if not isinstance(step, int) or step >= len(node):
                return default
            node = node[step]
        else:
            return default
    return default if node is None else node


def _as_list(value: Any) -> list:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    return list(value)


def _document(policy: Any) -> Optional[dict]:
    """A policy document given as JSON text or as a map; None when it is neither."""
    if isinstance(policy, Mapping):
        return json.loads(json.dumps(_plain(policy)))
    if isinstance(policy, str):
        try:
            document = json.loads(policy)
        except json.JSONDecodeError:
            return None
        return document if isinstance(document, dict) else None
    return None


def _read(container: Any, key: Any) -> Any:
    """container[key]; a value unknown during preview comes back as the SDK's sentinel string."""
    try:
        return container[key]
    except Exception as error:  # pulumi_policy's UnknownValueError
        sentinel = getattr(error, "unknown_type_sentinel", None)
        if sentinel is None:
            raise
        return sentinel


def _plain(value: Any) -> Any:
    """Plain dicts and lists from the SDK's proxies (unknown values stay sentinel strings, never pass a check)."""
    if isinstance(value, Mapping):
        return {k: _plain(_read(value, k)) for k in value}
    if isinstance(value, Sequence) and not isinstance(value, str):
        return [_plain(_read(value, i)) for i in range(len(value))]
    return value


def _statements(document: Mapping) -> list[dict]:
    statements = document.get("Statement", [])
    return [statements] if isinstance(statements, dict) else list(statements)


def image_is_pinned(image: str) -> bool:
    match = _IMAGE.match(image or "")
    if not match:
        return False
    return bool(match.group("digest")) or (bool(match.group("tag")) and match.group("tag") != "latest")


# --------------------------------------------------------------------------- S3


def s3_bucket_encryption(args, report_violation: ReportViolation) -> None:
    """An encryption configuration names AES256 or aws:kms for every rule; inline config on the bucket too."""
    if args.resource_type in (SSE_CONFIG, SSE_CONFIG_V2):
        rules = _as_list(_get(args.props, "rules"))
        if not rules:
            report_violation("S3 server-side encryption configuration has no rules.")
        for rule in rules:
            algorithm = _get(rule, "applyServerSideEncryptionByDefault", "sseAlgorithm")
            if algorithm not in SSE_ALGORITHMS:
                report_violation(
                    f"S3 default encryption must use one of {', '.join(SSE_ALGORITHMS)} (got {algorithm!r})."
                )
    elif args.resource_type in BUCKET_TYPES:
        inline = _get(args.props, "serverSideEncryptionConfiguration")
        if inline:
            algorithm = _get(inline, "rule", "applyServerSideEncryptionByDefault", "sseAlgorithm")
            if algorithm not in SSE_ALGORITHMS:
                report_violation(f"S3 bucket inline encryption must use AES256 or aws:kms (got {algorithm!r}).")


def s3_public_access_blocked(args, report_violation: ReportViolation) -> None:
    """All four public-access blocks are true."""
    if args.resource_type != PUBLIC_ACCESS_BLOCK:
        return
    off = [flag for flag in PUBLIC_ACCESS_FLAGS if _get(args.props, flag) is not True]
    if off:
        report_violation(f"S3 public access block must set all four flags to true; not true: {', '.join(off)}.")


def is_tls_only_statement(statement: Mapping) -> bool:
    """Deny, every principal, every S3 action, when aws:SecureTransport is false."""
    if statement.get("Effect") != "Deny":
        return False
    principal = statement.get("Principal")
    if principal != "*" and _as_list(_get(principal, "AWS")) != ["*"]:
        return False
    if not any(action in ("s3:*", "*") for action in _as_list(statement.get("Action"))):
        return False
    condition = _get(statement, "Condition", "Bool", "aws:SecureTransport")
    return [str(v).lower() for v in _as_list(condition)] == ["false"]


def tls_only_covers(document: Mapping, bucket_arn: Optional[str] = None) -> bool:
    """Some TLS-deny statement covers the bucket and its objects (`arn` and `arn/*`)."""
    for statement in _statements(document):
        if not is_tls_only_statement(statement):
            continue
        resources = _as_list(statement.get("Resource"))
        has_bucket = any(r.startswith("arn:aws:s3:::") and "/" not in r for r in resources)
        has_objects = any(r.startswith("arn:aws:s3:::") and r.endswith("/*") for r in resources)
        if bucket_arn is not None:
            has_bucket = bucket_arn in resources
            has_objects = f"{bucket_arn}/*" in resources
        if has_bucket and has_objects:
            return True
    return False


def s3_tls_only_policy(args, report_violation: ReportViolation) -> None:
    """A bucket policy denies non-TLS requests to the bucket and its objects."""
    if args.resource_type != BUCKET_POLICY:
        return
    document = _document(_get(args.props, "policy"))
    if document is None:
        report_violation("S3 bucket policy is not a JSON policy document.")
        return
    if not tls_only_covers(document):
        report_violation(
            "S3 bucket policy must Deny s3:* to Principal * when aws:SecureTransport is false, "
            "on the bucket ARN and on <bucket ARN>/*."
        )


def _bucket_children(resources: list, bucket, types: tuple[str, ...]) -> list:
    """Resources of `types` whose `bucket` input comes from `bucket` (dependency, or same name/id)."""
    names = set()
    for key in ("bucket", "id"):
        try:
            value = _get(bucket.props, key)
        except Exception:  # unknown during preview
            value = None
        if isinstance(value, str) and value:
            names.add(value)
    found = []
    for resource in resources:
        if resource.resource_type not in types:
            continue
        deps = (resource.property_dependencies or {}).get("bucket") or []
        if any(dep is bucket or getattr(dep, "urn", None) == bucket.urn for dep in deps):
            found.append(resource)
            continue
        try:
            value = _get(resource.props, "bucket")
        except Exception:
            value = None
        if isinstance(value, str) and value in names:
            found.append(resource)
    return found


def s3_buckets_guarded(args, report_violation: ReportViolation) -> None:
    """Stack: every bucket has an encryption configuration, a public-access block and a TLS-only policy."""
    for bucket in args.resources:
        if bucket.resource_type not in BUCKET_TYPES:
            continue
        inline_sse = False
        try:
            inline_sse = bool(_get(bucket.props, "serverSideEncryptionConfiguration"))
        except Exception:
            pass
        missing = []
        if not inline_sse and not _bucket_children(args.resources, bucket, (SSE_CONFIG, SSE_CONFIG_V2)):
            missing.append("server-side encryption configuration")
        if not _bucket_children(args.resources, bucket, (PUBLIC_ACCESS_BLOCK,)):
            missing.append("public access block")
        policies = _bucket_children(args.resources, bucket, (BUCKET_POLICY,))
        tls = False
        for policy in policies:
            try:
                document = _document(_get(policy.props, "policy"))
            except Exception:  # the document embeds the bucket ARN: unknown during preview
                tls = True  # the resource-level policy checks it once it is known
                continue
            tls = tls or (document is not None and tls_only_covers(document))
        if not tls:
            missing.append("TLS-only bucket policy")
        if missing:
            report_violation(f"S3 bucket {bucket.name!r} lacks: {', '.join(missing)}.", bucket.urn)


# --------------------------------------------------------------------------- IAM


def _broad_resource(resource: str) -> bool:
    if resource == "*":
        return True
    parts = resource.split(":", 5)
    return len(parts) == 6 and parts[5].startswith("*")


def iam_least_privilege(args, report_violation: ReportViolation) -> None:
    """IAM policies for the registry user: no wildcard action, no `*` resource, no Not* in Allow."""
    if args.resource_type == USER_POLICY_ATTACHMENT:
        arn = _get(args.props, "policyArn")
        if isinstance(arn, str) and arn.startswith("arn:aws:iam::aws:policy/"):
            report_violation(f"IAM user policy attachment uses the AWS managed policy {arn}; attach a scoped policy.")
        return
    if args.resource_type not in (USER_POLICY, MANAGED_POLICY):
        return
    document = _document(_get(args.props, "policy"))
    if document is None:
        report_violation("IAM policy is not a JSON policy document.")
        return
    for index, statement in enumerate(_statements(document)):
        if statement.get("Effect") != "Allow":
            continue
        sid = statement.get("Sid") or f"#{index}"
        for field in ("NotAction", "NotResource"):
            if field in statement:
                report_violation(f"IAM statement {sid}: Allow with {field} grants everything else; list what is allowed.")
        wildcard = [a for a in _as_list(statement.get("Action")) if "*" in a or "?" in a]
        if wildcard:
            report_violation(f"IAM statement {sid}: wildcard action {', '.join(wildcard)}; name each action.")
        broad = [r for r in _as_list(statement.get("Resource")) if _broad_resource(r)]
        if broad:
            report_violation(f"IAM statement {sid}: resource {', '.join(broad)} is every resource; name the bucket/key ARN.")


# --------------------------------------------------------------------------- Kubernetes


def _lb_is_internal(annotations: Mapping) -> bool:
    for key, accepted in INTERNAL_LB_ANNOTATIONS.items():
        if str(annotations.get(key, "")) in accepted:
            return True
    if any(annotations.get(key) for key in METALLB_POOL_ANNOTATIONS):
        return True
    for key in METALLB_IP_ANNOTATIONS:
        value = annotations.get(key)
        if value:
            try:
                return all(ipaddress.ip_address(ip.strip()).is_private for ip in str(value).split(","))
            except ValueError:
                return False
    return False


def service_internal_lb(args, report_violation: ReportViolation) -> None:
    """A Service of type LoadBalancer carries its provider's internal annotation."""
    if args.resource_type != SERVICE or _get(args.props, "spec", "type") != "LoadBalancer":
        return
    annotations = _get(args.props, "metadata", "annotations", default={})
    if not _lb_is_internal(annotations):
        name = _get(args.props, "metadata", "name", default=args.name)
        report_violation(
            f"LoadBalancer Service {name!r} has no internal annotation (aws-load-balancer-internal/scheme internal, "
            "GKE/Azure Internal, or a MetalLB address-pool / private loadBalancerIPs): it could get a public address."
        )


def service_no_debug_port(args, report_violation: ReportViolation) -> None:
    """No LoadBalancer/NodePort Service (or one with externalIPs) exposes the debug port 5001."""
    if args.resource_type != SERVICE:
        return
    spec = _get(args.props, "spec", default={})
    exposed = _get(spec, "type", default="ClusterIP") in ("LoadBalancer", "NodePort") or bool(_get(spec, "externalIPs"))
    if not exposed:
        return  # a ClusterIP metrics Service, reachable only as NetworkPolicies allow
    for port in _as_list(_get(spec, "ports")):
        target = _get(port, "targetPort")
        if _get(port, "port") == DEBUG_PORT or target == DEBUG_PORT or target in DEBUG_PORT_NAMES:
            report_violation(
                f"Service {_get(args.props, 'metadata', 'name', default=args.name)!r} of type {spec.get('type')} "
                f"exposes the debug port ({_get(port, 'port')} -> {target}): pprof and /debug/vars must stay in the cluster."
            )


# The one workload allowed outside the restricted profile: the opt-in node configurator (a
# DaemonSet in a namespace of its own), which writes containerd's hosts.toml files as root through
# a hostPath, and may touch nothing else of the host.
NODE_CONFIGURATOR = "node-configurator"  # its app.kubernetes.io/component (and its namespace's)
NODE_CONFIGURATOR_HOST_PATH = "/etc/containerd/certs.d"


def _is_node_configurator(manifest: Mapping) -> bool:
    return _get(manifest, "metadata", "labels", "app.kubernetes.io/component") == NODE_CONFIGURATOR


def node_configurator_violations(manifest: Mapping) -> list[str]:
    """What the node configurator does beyond root and one hostPath of containerd's certs.d ([] if nothing)."""
    found = pss.workload_pod(manifest)
    if found is None:
        return []
    pod_spec, pod_metadata = found
    problems = []
    if manifest.get("kind") != "DaemonSet":
        problems.append(f"the node configurator is a DaemonSet (got {manifest.get('kind')})")
    volumes = []
    for volume in pod_spec.get("volumes") or []:
        host_path = volume.get("hostPath")
        if host_path is None:
            volumes.append(volume)
        elif _get(host_path, "path") != NODE_CONFIGURATOR_HOST_PATH:
            problems.append(f"volume {volume.get('name')!r}: hostPath only {NODE_CONFIGURATOR_HOST_PATH} (got {_get(host_path, 'path')!r})")
    # Root is what it may have: check everything else as restricted would.
    as_non_root = {"runAsNonRoot": True, "runAsUser": 65534}
    containers = {
        field: [{**c, "securityContext": {**(c.get("securityContext") or {}), **as_non_root}} for c in pod_spec.get(field) or []]
        for field in ("initContainers", "containers", "ephemeralContainers")
    }
    pod_sc = {**(pod_spec.get("securityContext") or {}), **as_non_root}
    checked = {**pod_spec, **containers, "volumes": volumes, "securityContext": pod_sc}
    return problems + pss.restricted_violations(checked, pod_metadata.get("annotations") or {})


def _workload_manifest(args) -> Optional[dict]:
    kind = WORKLOAD_TYPES.get(args.resource_type)
    if kind is None:
        return None
    return {**_plain(args.props), "kind": kind}


def workload_hardened(args, report_violation: ReportViolation) -> None:
    """Every container: non-root, read-only root fs, no privilege escalation, capabilities dropped, resources, pinned image."""
    manifest = _workload_manifest(args)
    if manifest is None:
        return
    found = pss.workload_pod(manifest)
    if found is None:
        return
    pod_spec, _ = found
    pod_sc = pod_spec.get("securityContext") or {}
    for where, container in pss.containers_of(pod_spec):
        sc = container.get("securityContext") or {}
        problems = []
        non_root = sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot"))
        if (non_root is not True or sc.get("runAsUser", pod_sc.get("runAsUser")) == 0) and not _is_node_configurator(manifest):
            problems.append("runAsNonRoot true and a non-zero runAsUser")
        if sc.get("readOnlyRootFilesystem") is not True:
            problems.append("readOnlyRootFilesystem true")
        if sc.get("allowPrivilegeEscalation") is not False:
            problems.append("allowPrivilegeEscalation false")
        if sc.get("privileged"):
            problems.append("privileged unset or false")
        if "ALL" not in ((sc.get("capabilities") or {}).get("drop") or []):
            problems.append("capabilities.drop [ALL]")
        requests = (container.get("resources") or {}).get("requests") or {}
        limits = (container.get("resources") or {}).get("limits") or {}
        if not requests.get("cpu") or not requests.get("memory") or not limits.get("memory"):
            problems.append("resources.requests.cpu/memory and resources.limits.memory")
        if not image_is_pinned(container.get("image", "")):
            problems.append(f"an image pinned to a tag other than latest or a digest (got {container.get('image')!r})")
        if problems:
            report_violation(f"{manifest['kind']} {args.name!r} {where} needs: {'; '.join(problems)}.")


def workload_pod_security_restricted(args, report_violation: ReportViolation) -> None:
    """Pod templates meet the restricted Pod Security Standard (registry_ha.pss)."""
    manifest = _workload_manifest(args)
    if manifest is None:
        return
    if _is_node_configurator(manifest):
        for problem in node_configurator_violations(manifest):
            report_violation(f"{manifest['kind']} {args.name!r} (node configurator: root and {NODE_CONFIGURATOR_HOST_PATH} only): {problem}.")
        return
    for problem in pss.manifest_violations(manifest):
        report_violation(f"{manifest['kind']} {args.name!r} breaks the restricted Pod Security Standard: {problem}.")


def namespace_enforces_restricted(args, report_violation: ReportViolation) -> None:
    """The namespace enforces the restricted Pod Security Standard."""
    if args.resource_type != NAMESPACE:
        return
    labels = _get(args.props, "metadata", "labels", default={})
    if labels.get("app.kubernetes.io/component") == NODE_CONFIGURATOR and labels.get("pod-security.kubernetes.io/enforce") == "privileged":
        return  # hostPath needs privileged; the workload policies confine what runs there
    if labels.get("pod-security.kubernetes.io/enforce") != "restricted":
        report_violation(
            f"Namespace {_get(args.props, 'metadata', 'name', default=args.name)!r} must carry the label "
            "pod-security.kubernetes.io/enforce: restricted."
        )


def configmap_secret_values(data: Mapping[str, Any]) -> list[str]:
    """What in a ConfigMap's data looks like a secret (key names, AWS keys, assignments, private keys)."""
    found = []
    for key in data:
        value = data[key]
        if SECRET_KEY_NAME.search(key):
            found.append(f"key {key!r} is named like a secret")
        if not isinstance(value, str):
            continue
        if AWS_ACCESS_KEY_ID.search(value):
            found.append(f"key {key!r} holds an AWS access key id")
        if PRIVATE_KEY_BLOCK.search(value):
            found.append(f"key {key!r} holds a private key")
        for match in SECRET_ASSIGNMENT.finditer(value):
            found.append(f"key {key!r} sets {match.group(1)!r}")
    return found


def configmap_no_secrets(args, report_violation: ReportViolation) -> None:
    """No secret-looking value in a ConfigMap: those belong in a Secret."""
    if args.resource_type != CONFIG_MAP:
        return
    data = {**_plain(_get(args.props, "data", default={})), **_plain(_get(args.props, "binaryData", default={}))}
    for problem in configmap_secret_values(data):
        report_violation(f"ConfigMap {_get(args.props, 'metadata', 'name', default=args.name)!r}: {problem}; use a Secret.")


RESOURCE_VALIDATORS: dict[str, tuple[str, Callable]] = {
    "s3-bucket-encryption": ("S3 default encryption is AES256 or aws:kms.", s3_bucket_encryption),
    "s3-public-access-blocked": ("S3 public access blocks: all four true.", s3_public_access_blocked),
    "s3-tls-only-policy": ("S3 bucket policies deny requests that do not use TLS.", s3_tls_only_policy),
    "iam-least-privilege": ("IAM policies: no wildcard action, no `*` resource, no AWS managed policies.", iam_least_privilege),
    "service-internal-load-balancer": ("LoadBalancer Services carry an internal annotation.", service_internal_lb),
    "service-no-debug-port": ("No exposed Service serves the registry debug port.", service_no_debug_port),
    "workload-hardened": (
        "Containers: non-root, read-only root fs, no privilege escalation, capabilities dropped, resources, pinned images.",
        workload_hardened,
    ),
    "workload-pod-security-restricted": (
        "Pod templates meet the restricted Pod Security Standard (the node configurator: root and containerd's certs.d beyond it).",
        workload_pod_security_restricted,
    ),
    "namespace-pod-security-restricted": (
        "Namespaces enforce the restricted Pod Security Standard (the node configurator's: privileged).",
        namespace_enforces_restricted,
    ),
    "configmap-no-secrets": ("No secret-looking value in a ConfigMap.", configmap_no_secrets),
}
STACK_VALIDATORS: dict[str, tuple[str, Callable]] = {
    "s3-buckets-guarded": (
        "Every S3 bucket has default encryption, a public access block and a TLS-only policy.",
        s3_buckets_guarded,
    ),
}
