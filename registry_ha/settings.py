"""Stack configuration, read and validated in one place.

`load_settings` is pure: it takes the raw string values Pulumi hands a program
(`{"registry-ha:replicas": "3", ...}`) and returns frozen dataclasses, or raises
`SettingsError` with one line naming the key and what is allowed. The program,
the offline renderer, the local sandbox and the tests all go through it, so a
value that passes here is exactly what gets deployed.
"""
from __future__ import annotations

import difflib
import ipaddress
import json
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Optional

import pulumi

PROJECT = "registry-ha"
STACKS = ("staging", "production")

REGISTRY_PORT = 5000
DEBUG_PORT = 5001
REDIS_PORT = 6379

LB_PROVIDERS = ("aws", "gcp", "azure", "metallb", "none")
ANTI_AFFINITY_MODES = ("required", "preferred")
ENCRYPTION_MODES = ("sse-s3", "sse-kms")
LOG_LEVELS = ("error", "warn", "info", "debug")
SCHEMAS = ("v2", "v3")
# Labelling one of these `enforce: restricted` and putting a default-deny policy in it breaks the cluster.
RESERVED_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")


class SettingsError(pulumi.RunError):
    """Bad stack configuration. A RunError, so Pulumi prints the one line and no traceback."""


# --------------------------------------------------------------------------- dataclasses


@dataclass(frozen=True)
class Resources:
    cpu_request: str
    memory_request: str
    memory_limit: str


@dataclass(frozen=True)
class RegistrySettings:
    image: str
    schema: str  # "v2" (Distribution 2.8) or "v3" (Distribution 3.x): the config keys differ
    replicas: int
    anti_affinity: str  # "required" (hard, one pod per node) or "preferred"
    zone_spread: bool  # spread across topology.kubernetes.io/zone as well as nodes
    resources: Resources
    pre_stop_seconds: int
    log_level: str
    storage_redirect: bool  # False: blobs stream through the registry (clients need not reach S3)
    upload_purge_age: str
    service_name: str


@dataclass(frozen=True)
class StorageSettings:
    region: str
    bucket_name: Optional[str]  # None: Pulumi auto-names the bucket from bucket_prefix
    bucket_prefix: str
    encryption: str  # "sse-s3" or "sse-kms"
    kms_key_arn: Optional[str]  # sse-kms with no ARN: the program creates a key
    versioning: bool
    noncurrent_version_days: int
    abort_multipart_days: int
    force_destroy: bool
    endpoint: Optional[str]  # S3-compatible endpoint instead of AWS (path style)


@dataclass(frozen=True)
class RedisSettings:
    image: str
    max_memory: str
    resources: Resources
    timeout: str  # dial/read/write timeout the registry uses towards Redis
    registry_db: int
    mirror_db: int


@dataclass(frozen=True)
class MirrorSettings:
    enabled: bool
    remote_url: str
    replicas: int
    ttl: str
    service_name: str
    username: Optional[str]
    password: Optional[pulumi.Output]  # Pulumi secret; None when anonymous


@dataclass(frozen=True)
class ExposureSettings:
    hostname: str
    lb_provider: str
    lb_ip: Optional[str]
    lb_source_ranges: tuple[str, ...]
    metallb_pool: Optional[str]
    node_port: int
    mirror_node_port: Optional[int]
    node_address: str  # the seed's secondary address host, e.g. 37.60.241.150


@dataclass(frozen=True)
class NetworkSettings:
    client_cidrs: tuple[str, ...]  # who may reach :5000 besides pods (LB, nodes, VPN)
    monitoring_namespace: str
    service_monitor: bool


@dataclass(frozen=True)
class AccessSettings:
    """Opt-in hardening of the private registry (the Docker Hub cache stays open: nodes pull through it)."""

    auth_enabled: bool  # htpasswd basic auth; every listed user may push, pull and delete (no roles)
    auth_users: tuple[str, ...]  # one pulumi-random password each (empty when auth is off)
    tls_secret_name: Optional[str]  # an existing kubernetes.io/tls Secret; None: plain HTTP

    @property
    def tls(self) -> bool:
        return self.tls_secret_name is not None


@dataclass(frozen=True)
class Settings:
    stack: str
    namespace: str
    registry: RegistrySettings
    storage: StorageSettings
    redis: RedisSettings
    mirror: MirrorSettings
    exposure: ExposureSettings
    network: NetworkSettings
    access: AccessSettings = AccessSettings(False, (), None)

    @property
    def registry_address(self) -> str:
        return f"{self.exposure.hostname}:{REGISTRY_PORT}"

    @property
    def secondary_address(self) -> str:
        return f"{self.exposure.node_address}:{self.exposure.node_port}"


# --------------------------------------------------------------------------- schema of keys


def _stack_default(staging: Any, production: Any) -> Callable[[str], Any]:
    return lambda stack: production if stack == "production" else staging


@dataclass(frozen=True)
class Key:
    name: str
    kind: str  # str | int | bool | list
    default: Any  # a value, or a callable(stack) -> value
    help: str
    secret: bool = False

    def default_for(self, stack: str) -> Any:
        return self.default(stack) if callable(self.default) else self.default


KEYS: tuple[Key, ...] = (
    Key("namespace", "str", "registry", "Kubernetes namespace for every object."),
    Key("hostname", "str", "registry.neural-hive.local", "DNS name clients use; the address is <hostname>:5000."),
    Key("image", "str", "registry:3.1.1", "Distribution image for the private registry and the cache, pinned."),
    Key("configSchema", "str", None, "v2|v3; only needed when the image tag does not tell (a digest, a mirror)."),
    Key("replicas", "int", 3, "Private registry replicas."),
    Key("antiAffinity", "str", _stack_default("preferred", "required"), "required|preferred pod anti-affinity on kubernetes.io/hostname."),
    Key("zoneSpread", "bool", _stack_default(False, True), "Also spread replicas across topology.kubernetes.io/zone."),
    Key("registryCpuRequest", "str", _stack_default("100m", "250m"), "Registry container CPU request."),
    Key("registryMemoryRequest", "str", _stack_default("256Mi", "512Mi"), "Registry container memory request."),
    Key("registryMemoryLimit", "str", _stack_default("512Mi", "1Gi"), "Registry container memory limit."),
    Key("preStopSeconds", "int", 10, "Delay before the registry gets SIGTERM, so endpoints drain first."),
    Key("logLevel", "str", "info", "error|warn|info|debug."),
    Key("storageRedirect", "bool", False, "true: clients fetch blobs from S3 by pre-signed redirect (they must reach S3)."),
    Key("uploadPurgeAge", "str", "168h", "Abandoned uploads older than this are purged."),
    Key("serviceName", "str", "docker-registry", "Name of the LoadBalancer Service (the seed's `kubectl get svc docker-registry`)."),
    Key("bucketName", "str", None, "S3 bucket name; unset: auto-named from neural-hive-registry-<stack>-."),
    Key("encryption", "str", _stack_default("sse-s3", "sse-kms"), "sse-s3 (AES256) or sse-kms."),
    Key("kmsKeyArn", "str", None, "KMS key ARN for sse-kms; unset with sse-kms: the program creates a key with rotation."),
    Key("bucketVersioning", "bool", _stack_default(False, True), "Keep previous object versions (recovery from bad deletes)."),
    Key("noncurrentVersionDays", "int", 30, "Expire previous object versions after this many days."),
    Key("abortMultipartDays", "int", 3, "Abort incomplete multipart uploads after this many days."),
    Key("forceDestroy", "bool", _stack_default(True, False), "Allow `pulumi destroy` to delete a non-empty bucket."),
    Key("s3Endpoint", "str", None, "S3-compatible endpoint URL (MinIO, Ceph) instead of AWS."),
    Key("redisImage", "str", "redis:7.4.2-alpine", "Redis image, pinned."),
    Key("redisMaxMemory", "str", _stack_default("128mb", "256mb"), "Redis maxmemory; eviction is allkeys-lru."),
    Key("redisCpuRequest", "str", "50m", "Redis CPU request."),
    Key("redisMemoryRequest", "str", _stack_default("192Mi", "320Mi"), "Redis memory request."),
    Key("redisMemoryLimit", "str", _stack_default("256Mi", "384Mi"), "Redis memory limit (above maxmemory)."),
    Key("redisTimeout", "str", "100ms", "Registry dial/read/write timeout towards Redis: a hung Redis costs at most this."),
    Key("mirrorEnabled", "bool", True, "Deploy the Docker Hub pull-through cache."),
    Key("mirrorRemoteUrl", "str", "https://registry-1.docker.io", "Upstream of the pull-through cache."),
    Key("mirrorReplicas", "int", 1, "Cache replicas (its expiry state is one shared file: keep 1)."),
    Key("mirrorTtl", "str", "168h", "How long cached content is kept (v3 images; 2.8 is fixed at 168h)."),
    Key("mirrorServiceName", "str", "docker-registry-mirror", "Name of the cache Service."),
    Key("dockerHubUsername", "str", None, "Docker Hub user for the cache (raises the pull-rate limit)."),
    Key("dockerHubPassword", "str", None, "Docker Hub token; set with `pulumi config set --secret`.", secret=True),
    Key("loadBalancerProvider", "str", "metallb", "aws|gcp|azure|metallb|none: which internal-LB annotations to set."),
    Key("loadBalancerIP", "str", None, "Fixed internal IP for the LoadBalancer (metallb, or a reserved IP)."),
    Key("loadBalancerSourceRanges", "list", [], "CIDRs allowed through the LoadBalancer (empty: no restriction there)."),
    Key("metallbAddressPool", "str", "internal", "MetalLB pool the LoadBalancer IP comes from; it must hold internal addresses only."),
    Key("nodePort", "int", 30500, "NodePort of the registry: the secondary address <node>:30500."),
    Key("mirrorNodePort", "int", None, "Optional NodePort for the cache (unset: ClusterIP only)."),
    Key("nodeAddress", "str", "37.60.241.150", "Node IP in the secondary address (REGISTRY_SECONDARY)."),
    Key("clientCidrs", "list", ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"], "Non-pod sources allowed to reach :5000 (nodes, LB, VPN)."),
    Key("monitoringNamespace", "str", "monitoring", "Namespace whose pods may scrape :5001."),
    Key("serviceMonitor", "bool", False, "Create a Prometheus-operator ServiceMonitor (needs its CRD)."),
    Key("authEnabled", "bool", False, "Require htpasswd (basic) auth on the private registry; passwords from pulumi-random, exported as the secret output registryCredentials. Every user may push, pull and delete."),
    Key("authUsers", "list", ["ci"], "User names for authEnabled (a-z, 0-9, '.', '_', '-'); one generated password each."),
    Key("tlsSecretName", "str", None, "Existing kubernetes.io/tls Secret in the namespace (e.g. from cert-manager); set: the private registry serves HTTPS on :5000."),
)
KEYS_BY_NAME = {k.name: k for k in KEYS}

# --------------------------------------------------------------------------- validators

_DNS_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_HOST_LABEL = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_REGION = re.compile(r"^[a-z]{2}(-gov|-iso[a-z]*)?-[a-z]+-\d{1,2}$")
_QUANTITY_CPU = re.compile(r"^(\d+m|\d+(\.\d+)?)$")
_QUANTITY_MEM = re.compile(r"^\d+(Ki|Mi|Gi|Ti|K|M|G|T)?$")
_REDIS_MEM = re.compile(r"^\d+(b|kb|mb|gb)?$", re.IGNORECASE)
_DURATION = re.compile(r"^(\d+(ns|us|ms|s|m|h))+$")
_IMAGE = re.compile(
    r"^(?P<repo>[a-z0-9]+([._/-][a-z0-9]+)*(:\d+)?(/[a-z0-9]+([._-][a-z0-9]+)*)*)"
    r"(:(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}))?(@(?P<digest>sha256:[a-f0-9]{64}))?$"
)
_KMS_ARN = re.compile(r"^arn:aws[a-z-]*:kms:(?P<region>[a-z0-9-]+):\d{12}:(key|alias)/[A-Za-z0-9/_-]+$")
_AUTH_USER = re.compile(r"^[a-z0-9]([a-z0-9._-]{0,61}[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
MAX_AUTH_USERS = 20
_USERNAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@+$-]{0,254}$")  # no whitespace, no ':' (basic auth)
_MEM_UNITS = {"": 1, "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}
_REDIS_UNITS = {"": 1, "b": 1, "kb": 2**10, "mb": 2**20, "gb": 2**30}
_DURATION_UNITS = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}


def memory_bytes(quantity: str) -> int:
    """Bytes of a Kubernetes memory quantity that matched _QUANTITY_MEM."""
    number, unit = re.match(r"^(\d+)(\D*)$", quantity).groups()
    return int(number) * _MEM_UNITS[unit]


def redis_bytes(size: str) -> int:
    """Bytes of a Redis size that matched _REDIS_MEM (kb/mb/gb are powers of 1024 in redis.conf)."""
    number, unit = re.match(r"^(\d+)(\D*)$", size).groups()
    return int(number) * _REDIS_UNITS[unit.lower()]


def duration_seconds(duration: str) -> float:
    """Seconds of a Go duration that matched _DURATION."""
    return sum(int(n) * _DURATION_UNITS[u] for n, u in re.findall(r"(\d+)(ns|us|ms|s|m|h)", duration))


def _fail(key: str, allowed: str, value: Any) -> SettingsError:
    shown = value if len(repr(value)) <= 80 else repr(value)[:77] + "..."
    return SettingsError(f"{PROJECT}:{key}: {allowed} (got {shown!r})")


def is_hostname(value: str) -> bool:
    if not value or len(value) > 253 or value.endswith("."):
        return False
    labels = value.split(".")
    return all(_HOST_LABEL.match(label) for label in labels) and not labels[-1].isdigit()


def is_dns_label(value: str) -> bool:
    return bool(_DNS_LABEL.match(value or ""))


def is_region(value: str) -> bool:
    return bool(_REGION.match(value or ""))


def bucket_name_problem(name: str) -> Optional[str]:
    """What S3 rejects in a bucket name (general purpose buckets), or None."""
    if not _BUCKET.match(name):
        return "3-63 characters of a-z, 0-9, '.', '-', starting and ending with a letter or digit"
    if ".." in name or ".-" in name or "-." in name:
        return "no adjacent periods or period next to a hyphen"
    try:
        ipaddress.IPv4Address(name)
        return "not formatted as an IP address"
    except ValueError:
        pass
    for prefix in ("xn--", "sthree-", "amzn-s3-demo-"):
        if name.startswith(prefix):
            return f"must not start with {prefix!r}"
    for suffix in ("-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3"):
        if name.endswith(suffix):
            return f"must not end with {suffix!r}"
    return None


def image_schema(image: str) -> Optional[str]:
    """The Distribution config schema an image speaks, told from its tag, or None."""
    match = _IMAGE.match(image)
    if not match:
        return None
    tag = match.group("tag") or ""
    version = re.match(r"^v?(\d+)(\.(\d+))?", tag)
    if not version:
        return None
    major, minor = int(version.group(1)), int(version.group(3) or -1)
    if major == 3:
        return "v3"
    if major == 2 and minor >= 6:
        return "v2"
    return None


def image_is_pinned(image: str) -> bool:
    match = _IMAGE.match(image)
    if not match:
        return False
    return bool(match.group("digest")) or (bool(match.group("tag")) and match.group("tag") != "latest")


# --------------------------------------------------------------------------- raw value parsing


def _parse(key: Key, raw: Any) -> Any:
    """Pulumi config values arrive as strings (objects and lists as JSON text)."""
    if key.kind == "str":
        if not isinstance(raw, str):
            raise _fail(key.name, "a string", raw)
        return raw
    if key.kind == "int":
        if isinstance(raw, bool):
            raise _fail(key.name, "an integer", raw)
        if isinstance(raw, int):
            return raw
        if isinstance(raw, str) and re.fullmatch(r"-?\d+", raw.strip()):
            return int(raw)
        raise _fail(key.name, "an integer", raw)
    if key.kind == "bool":
        if isinstance(raw, bool):
            return raw
        if isinstance(raw, str) and raw.strip().lower() in ("true", "false"):
            return raw.strip().lower() == "true"
        raise _fail(key.name, "true or false", raw)
    if key.kind == "list":
        value = raw
        if isinstance(raw, str):
            try:
                value = json.loads(raw)
            except json.JSONDecodeError:
                raise _fail(key.name, "a list of strings (JSON or YAML list)", raw) from None
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise _fail(key.name, "a list of strings", raw)
        return tuple(value)
    raise AssertionError(key.kind)


def _cidr(key: str, value: str) -> str:
    try:
        return str(ipaddress.ip_network(value, strict=True))
    except ValueError:
        raise _fail(key, "CIDR blocks such as 10.0.0.0/8", value) from None


def load_settings(
    raw: Mapping[str, Any],
    stack: str,
    secret_keys: frozenset[str] | set[str] = frozenset(),
    aws_region: Optional[str] = None,
) -> Settings:
    """Validate raw stack config (keys with or without the `registry-ha:` prefix)."""
    if stack not in STACKS:
        raise SettingsError(f"stack {stack!r}: allowed stacks are {', '.join(STACKS)}")
    if not isinstance(raw, Mapping):
        raise SettingsError(f"{PROJECT}: config must be a map of key: value (got {type(raw).__name__})")

    values: dict[str, Any] = {}
    for full_key, value in raw.items():
        if not isinstance(full_key, str):
            raise SettingsError(f"{PROJECT}: config keys must be strings (got {full_key!r})")
        namespace, _, name = full_key.rpartition(":")
        if namespace not in ("", PROJECT):
            continue  # other namespaces (aws:, kubernetes:) belong to their providers
        key = KEYS_BY_NAME.get(name)
        if key is None:
            close = [k for k in KEYS_BY_NAME if k.lower() == name.lower()]
            close = close or difflib.get_close_matches(name, list(KEYS_BY_NAME), n=1, cutoff=0.8)
            hint = f"; did you mean {close[0]}?" if close else f"; see the README's config reference"
            raise SettingsError(f"{PROJECT}:{name}: unknown config key{hint}")
        if value is None:
            continue
        if key.secret and value != "" and full_key not in secret_keys and f"{PROJECT}:{name}" not in secret_keys:
            raise SettingsError(
                f"{PROJECT}:{name}: must be a secret; set it with `pulumi config set --secret {name}`"
            )
        values[name] = _parse(key, value)

    def get(name: str) -> Any:
        if name in values:
            return values[name]
        return KEYS_BY_NAME[name].default_for(stack)

    def require_choice(name: str, choices: tuple[str, ...]) -> str:
        value = get(name)
        if value not in choices:
            raise _fail(name, f"one of {', '.join(choices)}", value)
        return value

    def require_range(name: str, low: int, high: int) -> int:
        value = get(name)
        if not low <= value <= high:
            raise _fail(name, f"an integer from {low} to {high}", value)
        return value

    def require_match(name: str, pattern: re.Pattern, allowed: str, optional: bool = False) -> Optional[str]:
        value = get(name)
        if value is None and optional:
            return None
        if value is None or not pattern.match(value):
            raise _fail(name, allowed, value)
        return value

    def check_memory(request_key: str, limit_key: str) -> None:
        # The API server rejects a request above the limit, and a 0 limit would OOM-kill at once.
        request, limit = memory_bytes(get(request_key)), memory_bytes(get(limit_key))
        if limit == 0:
            raise _fail(limit_key, "a memory quantity above 0 such as 512Mi", get(limit_key))
        if request > limit:
            raise _fail(request_key, f"at most {limit_key} ({get(limit_key)})", get(request_key))

    def require_duration(name: str, allowed: str, minimum_seconds: float) -> str:
        value = require_match(name, _DURATION, allowed)
        if duration_seconds(value) < minimum_seconds:
            raise _fail(name, allowed, value)
        return value

    def optional_nonempty(name: str) -> Optional[str]:
        value = get(name)
        if value is not None and value.strip() == "":
            raise _fail(name, "a non-empty value, or leave it unset", value)
        return value

    namespace = get("namespace")
    if not is_dns_label(namespace):
        raise _fail("namespace", "a DNS label: lowercase letters, digits and '-', at most 63", namespace)
    if namespace in RESERVED_NAMESPACES or namespace.startswith("kube-"):
        raise _fail("namespace", "a namespace of its own, not default or kube-*", namespace)

    hostname = get("hostname")
    if not is_hostname(hostname):
        raise _fail("hostname", "a DNS hostname such as registry.neural-hive.local", hostname)

    image = get("image")
    if not _IMAGE.match(image):
        raise _fail("image", "an image reference such as registry:3.1.1", image)
    if not image_is_pinned(image):
        raise _fail("image", "an image pinned to a tag other than latest, or a digest", image)
    schema = get("configSchema")
    if schema is None:
        schema = image_schema(image)
        if schema is None:
            raise _fail(
                "image",
                "a registry:3.x or registry:2.8.x tag, or set configSchema to v2 or v3",
                image,
            )
    elif schema not in SCHEMAS:
        raise _fail("configSchema", "v2 or v3", schema)
    elif image_schema(image) not in (None, schema):
        raise _fail("configSchema", f"{image_schema(image)} for image {image}, or unset (the tag tells)", schema)

    for name in ("serviceName", "mirrorServiceName"):
        if not is_dns_label(get(name)):
            raise _fail(name, "a DNS label: lowercase letters, digits and '-', at most 63", get(name))
    if get("serviceName") == get("mirrorServiceName"):
        raise _fail("mirrorServiceName", "a name different from serviceName", get("mirrorServiceName"))

    registry_resources = Resources(
        cpu_request=require_match("registryCpuRequest", _QUANTITY_CPU, "a CPU quantity such as 250m or 1"),
        memory_request=require_match("registryMemoryRequest", _QUANTITY_MEM, "a memory quantity such as 512Mi"),
        memory_limit=require_match("registryMemoryLimit", _QUANTITY_MEM, "a memory quantity such as 1Gi"),
    )
    check_memory("registryMemoryRequest", "registryMemoryLimit")
    registry = RegistrySettings(
        image=image,
        schema=schema,
        replicas=require_range("replicas", 1, 50),
        anti_affinity=require_choice("antiAffinity", ANTI_AFFINITY_MODES),
        zone_spread=get("zoneSpread"),
        resources=registry_resources,
        pre_stop_seconds=require_range("preStopSeconds", 0, 120),
        log_level=require_choice("logLevel", LOG_LEVELS),
        storage_redirect=get("storageRedirect"),
        # Shorter than an upload can take would purge uploads still in progress.
        upload_purge_age=require_duration("uploadPurgeAge", "a duration of at least 1h such as 168h", 3600),
        service_name=get("serviceName"),
    )

    region = aws_region if aws_region is not None else "us-east-1"
    if not is_region(region):
        raise SettingsError(f"aws:region: an AWS region such as us-east-1 (got {region!r})")
    bucket_name = get("bucketName")
    if bucket_name is not None:
        problem = bucket_name_problem(bucket_name)
        if problem:
            raise _fail("bucketName", f"an S3 bucket name: {problem}", bucket_name)
    encryption = require_choice("encryption", ENCRYPTION_MODES)
    kms_key_arn = optional_nonempty("kmsKeyArn")
    if kms_key_arn is not None:
        if not _KMS_ARN.match(kms_key_arn):
            raise _fail("kmsKeyArn", "a KMS key ARN such as arn:aws:kms:us-east-1:123456789012:key/<id>", kms_key_arn)
        if encryption != "sse-kms":
            raise _fail("kmsKeyArn", "only with encryption: sse-kms", kms_key_arn)
        if _KMS_ARN.match(kms_key_arn).group("region") != region:
            raise _fail("kmsKeyArn", f"a key in the bucket's region {region} (S3 cannot use another region's key)", kms_key_arn)
    endpoint = optional_nonempty("s3Endpoint")
    if endpoint is not None and not re.match(r"^https?://[A-Za-z0-9.-]+(:\d+)?(/.*)?$", endpoint):
        raise _fail("s3Endpoint", "an http(s) URL such as https://minio.internal:9000", endpoint)
    storage = StorageSettings(
        region=region,
        bucket_name=bucket_name,
        bucket_prefix=f"neural-hive-registry-{stack}-",
        encryption=encryption,
        kms_key_arn=kms_key_arn,
        versioning=get("bucketVersioning"),
        noncurrent_version_days=require_range("noncurrentVersionDays", 1, 3650),
        abort_multipart_days=require_range("abortMultipartDays", 1, 365),
        force_destroy=get("forceDestroy"),
        endpoint=endpoint,
    )

    redis_image = get("redisImage")
    if not image_is_pinned(redis_image):
        raise _fail("redisImage", "an image pinned to a tag other than latest, or a digest", redis_image)
    max_memory = require_match("redisMaxMemory", _REDIS_MEM, "a Redis size such as 256mb")
    check_memory("redisMemoryRequest", "redisMemoryLimit")
    if not 0 < redis_bytes(max_memory) < memory_bytes(get("redisMemoryLimit")):
        # maxmemory 0 is unlimited; at or above the container limit Redis is OOM-killed before it evicts.
        raise _fail("redisMaxMemory", f"a Redis size above 0 and below redisMemoryLimit ({get('redisMemoryLimit')})", max_memory)
    redis = RedisSettings(
        image=redis_image,
        max_memory=max_memory,
        resources=Resources(
            cpu_request=require_match("redisCpuRequest", _QUANTITY_CPU, "a CPU quantity such as 50m"),
            memory_request=require_match("redisMemoryRequest", _QUANTITY_MEM, "a memory quantity such as 320Mi"),
            memory_limit=require_match("redisMemoryLimit", _QUANTITY_MEM, "a memory quantity such as 384Mi"),
        ),
        # 0 means no timeout: a hung Redis would stall every pull.
        timeout=require_duration("redisTimeout", "a Go duration above 0 such as 100ms", 0.001),
        registry_db=0,
        mirror_db=1,
    )

    remote_url = get("mirrorRemoteUrl")
    if not re.match(r"^https?://[A-Za-z0-9.-]+(:\d+)?/?$", remote_url):
        raise _fail("mirrorRemoteUrl", "a registry root URL such as https://registry-1.docker.io", remote_url)
    username = optional_nonempty("dockerHubUsername")
    if username is not None and not _USERNAME.match(username):
        raise _fail("dockerHubUsername", "a registry user name: no spaces, no ':'", username)
    password_raw = optional_nonempty("dockerHubPassword")
    if (username is None) != (password_raw is None):
        missing = "dockerHubPassword" if password_raw is None else "dockerHubUsername"
        raise _fail(missing, "set together with the other Docker Hub credential, or neither", None)
    mirror = MirrorSettings(
        enabled=get("mirrorEnabled"),
        remote_url=remote_url.rstrip("/"),
        replicas=require_range("mirrorReplicas", 1, 10),
        ttl=require_match("mirrorTtl", _DURATION, "a duration such as 168h"),
        service_name=get("mirrorServiceName"),
        username=username,
        password=pulumi.Output.secret(password_raw) if password_raw is not None else None,
    )

    lb_provider = require_choice("loadBalancerProvider", LB_PROVIDERS)
    lb_ip = optional_nonempty("loadBalancerIP")
    if lb_ip is not None:
        try:
            ip = ipaddress.ip_address(lb_ip)
        except ValueError:
            raise _fail("loadBalancerIP", "an IP address", lb_ip) from None
        if not ip.is_private:
            raise _fail("loadBalancerIP", "a private (internal) IP address", lb_ip)
        if lb_provider not in ("metallb", "gcp", "azure"):
            raise _fail("loadBalancerIP", "only with loadBalancerProvider metallb, gcp or azure", lb_ip)
    node_port = require_range("nodePort", 30000, 32767)
    mirror_node_port = get("mirrorNodePort")
    if mirror_node_port is not None:
        mirror_node_port = require_range("mirrorNodePort", 30000, 32767)
        if mirror_node_port == node_port:
            raise _fail("mirrorNodePort", f"a NodePort different from nodePort ({node_port})", mirror_node_port)
    node_address = get("nodeAddress")
    try:
        node_ip = ipaddress.ip_address(node_address)
        if node_ip.is_unspecified or node_ip.is_loopback or node_ip.is_multicast:
            raise _fail("nodeAddress", "the address of a node clients can reach (not 0.0.0.0, loopback or multicast)", node_address)
    except ValueError:
        if not is_hostname(node_address):
            raise _fail("nodeAddress", "an IP address or hostname of a node", node_address) from None
    metallb_pool = optional_nonempty("metallbAddressPool")
    if metallb_pool is not None and not is_dns_label(metallb_pool):
        raise _fail("metallbAddressPool", "a MetalLB pool name (DNS label)", metallb_pool)
    if "metallbAddressPool" in values and lb_provider != "metallb":
        raise _fail("metallbAddressPool", "only with loadBalancerProvider: metallb", metallb_pool)
    if get("loadBalancerSourceRanges") and lb_provider == "none":
        # No LoadBalancer, so nothing would enforce them: refuse rather than ignore.
        raise _fail("loadBalancerSourceRanges", "only with a loadBalancerProvider other than none", list(get("loadBalancerSourceRanges")))
    exposure = ExposureSettings(
        hostname=hostname,
        lb_provider=lb_provider,
        lb_ip=lb_ip,
        lb_source_ranges=tuple(_cidr("loadBalancerSourceRanges", c) for c in get("loadBalancerSourceRanges")),
        metallb_pool=metallb_pool,
        node_port=node_port,
        mirror_node_port=mirror_node_port,
        node_address=node_address,
    )

    monitoring_namespace = get("monitoringNamespace")
    if not is_dns_label(monitoring_namespace):
        raise _fail("monitoringNamespace", "a namespace name (DNS label)", monitoring_namespace)
    client_cidrs = tuple(_cidr("clientCidrs", c) for c in get("clientCidrs"))
    network = NetworkSettings(
        client_cidrs=client_cidrs,
        monitoring_namespace=monitoring_namespace,
        service_monitor=get("serviceMonitor"),
    )

    auth_enabled = get("authEnabled")
    auth_users = get("authUsers")
    if "authUsers" in values and not auth_enabled:
        # Users that would silently not exist: refuse rather than ignore.
        raise _fail("authUsers", "only with authEnabled: true", list(auth_users))
    if auth_enabled:
        if not auth_users:
            raise _fail("authUsers", "at least one user name when authEnabled is true", list(auth_users))
        if len(auth_users) > MAX_AUTH_USERS:
            raise _fail("authUsers", f"at most {MAX_AUTH_USERS} user names", list(auth_users))
        for user in auth_users:
            if not _AUTH_USER.match(user):
                raise _fail("authUsers", "user names of a-z, 0-9, '.', '_', '-', at most 63, starting and ending with a letter or digit", user)
        duplicates = sorted({u for u in auth_users if auth_users.count(u) > 1})
        if duplicates:
            raise _fail("authUsers", "distinct user names", duplicates[0])
    tls_secret_name = optional_nonempty("tlsSecretName")
    if tls_secret_name is not None:
        if len(tls_secret_name) > 253 or not _DNS_SUBDOMAIN.match(tls_secret_name):
            raise _fail("tlsSecretName", "a Secret name: lowercase letters, digits, '-' and '.', at most 253", tls_secret_name)
        # The program owns these Secrets; mounting one of them as the certificate cannot work.
        owned = {f"{get('serviceName')}-config", f"{get('mirrorServiceName')}-config", "registry-redis-config"}
        if tls_secret_name in owned:
            raise _fail("tlsSecretName", f"a kubernetes.io/tls Secret of its own, not one the program manages ({', '.join(sorted(owned))})", tls_secret_name)
    access = AccessSettings(
        auth_enabled=auth_enabled,
        auth_users=tuple(auth_users) if auth_enabled else (),
        tls_secret_name=tls_secret_name,
    )

    return Settings(
        stack=stack,
        namespace=namespace,
        registry=registry,
        storage=storage,
        redis=redis,
        mirror=mirror,
        exposure=exposure,
        network=network,
        access=access,
    )


def from_pulumi_config() -> Settings:
    """Read this stack's config from the Pulumi runtime (the only caller is __main__.py)."""
    from pulumi.runtime import config as runtime_config

    raw: dict[str, Any] = {}
    raw.update(runtime_config.get_config_env())
    raw.update(runtime_config.CONFIG.get())
    ours = {k: v for k, v in raw.items() if k.startswith(f"{PROJECT}:")}
    secret_keys = set(runtime_config.get_config_secret_keys_env()) | {
        k for k in ours if runtime_config.is_config_secret(k)
    }
    aws_region = raw.get("aws:region")
    return load_settings(ours, pulumi.get_stack(), secret_keys, aws_region=aws_region)


def config_reference_markdown() -> str:
    """The README's config reference table, generated from KEYS so it cannot drift."""

    def show(value: Any) -> str:
        if value is None:
            return "unset"
        if isinstance(value, bool):
            return "`true`" if value else "`false`"
        if isinstance(value, (list, tuple)):
            return "`" + json.dumps(list(value)) + "`" if value else "`[]`"
        return f"`{value}`"

    lines = ["| key | staging | production | meaning |", "|---|---|---|---|"]
    for key in KEYS:
        staging, production = show(key.default_for("staging")), show(key.default_for("production"))
        secret = " (secret)" if key.secret else ""
        lines.append(f"| `{key.name}`{secret} | {staging} | {production} | {key.help.replace('|', '/')} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(config_reference_markdown(), end="")
