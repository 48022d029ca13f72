"""Stack configuration, read and validated in one place.

`load_settings` is pure: it takes the raw values Pulumi hands a program
(`{"registry-ha:replicas": "3", ...}`, strings) and returns frozen dataclasses, or raises
`SettingsError` with one line naming the key and what is allowed. The program, the
offline renderer, the local sandbox and the tests all go through it, so a value that
passes here is exactly what gets deployed. The keys, their defaults and their checks
are the table in `registry_ha.config_keys`.
"""
from __future__ import annotations

import difflib
import json
import re
from dataclasses import dataclass
from typing import Any, Mapping, Optional

import pulumi

from registry_ha.config_keys import (  # noqa: F401  (re-exported: the rest of the project imports them from here)
    DEBUG_PORT,
    KEYS,
    KEYS_BY_NAME,
    NODE_CONFIGURATOR_ALIASES,
    REDIS_PORT,
    REGISTRY_PORT,
    REMOVED_KEYS,
    RULES,
    Key,
    cache_entries,
)
from registry_ha.validators import (  # noqa: F401
    STACK_NAME_RULE,
    bucket_name_problem,
    duration_seconds,
    image_schema,
    is_dns_label,
    is_hostname,
    is_region,
    is_stack_name,
    memory_bytes,
    redis_bytes,
)

PROJECT = "registry-ha"


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
    read_only: bool = False  # maintenance: storage.maintenance.readonly on every private replica (gc)
    gc_schedule: Optional[str] = None  # cron schedule of the garbage-collect --dry-run report


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
    retain: bool = True  # bucket and KMS key: protect + retainOnDelete, `pulumi destroy` keeps them


@dataclass(frozen=True)
class RedisSettings:
    image: str
    max_memory: str
    resources: Resources
    timeout: str  # dial/read/write timeout the registry uses towards Redis
    registry_db: int  # the caches' dbs are in CacheSettings


@dataclass(frozen=True)
class CacheSettings:
    """One pull-through cache (a `mirrors` entry): its own Deployment, Service, Secret, S3 prefix, Redis db."""

    name: str
    host: str  # the upstream's name in image references: docker.io, ghcr.io, ...
    remote_url: str
    replicas: int
    ttl: str
    service_name: str
    redis_db: int
    cluster_ip: Optional[str]  # pinned ClusterIP: node files known before deploying; None: allocated
    username: Optional[str] = None
    password: Optional[pulumi.Output] = None  # Pulumi secret; None when anonymous

    @property
    def component_name(self) -> str:
        """Pulumi name of the cache's component (the Docker Hub cache's is dockerhub-cache)."""
        return f"{self.name}-cache"

    @property
    def root_directory(self) -> str:
        return f"/{self.name}-cache"


@dataclass(frozen=True)
class NodeSettings:
    """What nodes get: containerd hosts.toml files, optionally written by a DaemonSet."""

    configurator: str  # off | on | remove
    configurator_image: str
    ca_certificate: Optional[str]  # PEM nodes trust for the private registry's HTTPS (tlsCaCertificate)


@dataclass(frozen=True)
class ExposureSettings:
    hostname: str
    lb_provider: str
    lb_ip: Optional[str]
    lb_source_ranges: tuple[str, ...]
    metallb_pool: Optional[str]
    node_port: int
    node_address: str  # the secondary address's host, e.g. 37.60.241.150


@dataclass(frozen=True)
class NetworkSettings:
    client_cidrs: tuple[str, ...]  # who may reach :5000 besides pods (LB, nodes, VPN)
    monitoring_namespace: str
    service_monitor: bool


@dataclass(frozen=True)
class AuthUser:
    name: str
    role: str  # pull | push | admin (config_keys.AUTH_ROLES)


@dataclass(frozen=True)
class AccessSettings:
    """Who may do what on the private registry, and TLS. The pull-through caches stay anonymous and
    read-only (a proxy refuses pushes); the NetworkPolicies keep them inside the cluster."""

    auth_enabled: bool  # token auth with roles (docker_auth in each registry pod); False: open
    users: tuple[AuthUser, ...] = ()  # one pulumi-random password each (empty when auth is off)
    node_user: Optional[str] = None  # the pull identity nodes use
    pull_secret_namespaces: tuple[str, ...] = ()
    signing_keys: tuple[str, ...] = ()  # the first signs, all are trusted
    token_server_image: str = KEYS_BY_NAME["tokenServerImage"].default
    proxy_image: str = KEYS_BY_NAME["authProxyImage"].default
    tls_secret_name: Optional[str] = None  # an existing kubernetes.io/tls Secret; None: plain HTTP

    @property
    def auth_users(self) -> tuple[str, ...]:
        return tuple(user.name for user in self.users)

    def role_of(self, name: str) -> Optional[str]:
        return next((user.role for user in self.users if user.name == name), None)

    @property
    def tls(self) -> bool:
        return self.tls_secret_name is not None


@dataclass(frozen=True)
class MonitoringSettings:
    """The opt-in PrometheusRule and Grafana dashboard, and the alerts' thresholds (docs/monitoring.md)."""

    prometheus_rule: bool = False
    grafana_dashboard: bool = False
    runbook_url: str = "docs/monitoring.md"
    error_percent: int = 5  # 5xx share of responses
    manifest_p99_s: float = 1.0
    cache_manifest_p99_s: float = 2.5
    storage_p99_s: float = 2.5
    redis_errors: int = 5  # failed lookups per pod in 5m
    upstream_error_percent: int = 10
    restarts: int = 3  # per pod in 30m

    @property
    def enabled(self) -> bool:
        return self.prometheus_rule or self.grafana_dashboard


@dataclass(frozen=True)
class Settings:
    stack: str
    namespace: str
    registry: RegistrySettings
    storage: StorageSettings
    redis: RedisSettings
    caches: tuple[CacheSettings, ...]
    exposure: ExposureSettings
    network: NetworkSettings
    access: AccessSettings = AccessSettings(False)
    monitoring: MonitoringSettings = MonitoringSettings()
    nodes: NodeSettings = NodeSettings("off", "busybox:1.37.0", None)

    @property
    def registry_address(self) -> str:
        return f"{self.exposure.hostname}:{REGISTRY_PORT}"

    @property
    def secondary_address(self) -> str:
        return f"{self.exposure.node_address}:{self.exposure.node_port}"

    def cache(self, name: str) -> CacheSettings:
        return next(c for c in self.caches if c.name == name)


# --------------------------------------------------------------------------- reading raw values


def _fail(key: str, allowed: str, value: Any) -> SettingsError:
    shown = value if len(repr(value)) <= 80 else repr(value)[:77] + "..."
    return SettingsError(f"{PROJECT}:{key}: {allowed} (got {shown!r})")


def _json(key: Key, raw: Any, allowed: str) -> Any:
    if not isinstance(raw, str):
        return raw
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        raise _fail(key.name, allowed, "(a secret)" if key.secret else raw) from None


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
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise _fail(key.name, "a list of strings", raw)
        return tuple(value)
    if key.kind == "objects":
        value = _json(key, raw, "a list of objects (JSON or YAML)")
        if not isinstance(value, list):
            raise _fail(key.name, "a list of objects (JSON or YAML)", raw)
        return tuple(value)
    if key.kind == "map":
        allowed = 'a map of name to string (JSON or YAML), such as {"dockerhub": "..."}'
        value = _json(key, raw, allowed)
        if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
            raise _fail(key.name, allowed, "(a secret)" if key.secret else raw)
        return dict(value)
    raise AssertionError(key.kind)


def _own_values(raw: Mapping[str, Any], secret_keys) -> dict[str, Any]:
    """The `registry-ha:` keys of raw config, typed; unknown keys and plaintext secrets refused."""
    if not isinstance(raw, Mapping):
        raise SettingsError(f"{PROJECT}: config must be a map of key: value (got {type(raw).__name__})")
    values: dict[str, Any] = {}
    for full_key, value in raw.items():
        if not isinstance(full_key, str):
            raise SettingsError(f"{PROJECT}: config keys must be strings (got {full_key!r})")
        namespace, _, name = full_key.rpartition(":")
        if namespace not in ("", PROJECT):
            continue  # other namespaces (aws:, kubernetes:) belong to their providers
        if name in REMOVED_KEYS:
            raise SettingsError(f"{PROJECT}:{name}: {REMOVED_KEYS[name]}")
        key = KEYS_BY_NAME.get(name)
        if key is None:
            close = [k for k in KEYS_BY_NAME if k.lower() == name.lower()]
            close = close or difflib.get_close_matches(name, list(KEYS_BY_NAME), n=1, cutoff=0.8)
            hint = f"; did you mean {close[0]}?" if close else "; see docs/configuration.md"
            raise SettingsError(f"{PROJECT}:{name}: unknown config key{hint}")
        if value is None:
            continue
        if key.secret and value != "" and full_key not in secret_keys and f"{PROJECT}:{name}" not in secret_keys:
            raise SettingsError(f"{PROJECT}:{name}: must be a secret; set it with `pulumi config set --secret {name}`")
        values[name] = _parse(key, value)
    return values


def resolve_values(
    raw: Mapping[str, Any],
    stack: str,
    secret_keys: frozenset[str] | set[str] = frozenset(),
    aws_region: Optional[str] = None,
) -> tuple[dict[str, Any], set[str]]:
    """(every key's value with defaults filled in and checked, the names the stack set)."""
    if not is_stack_name(stack):
        raise SettingsError(f"stack {stack!r}: a stack name of {STACK_NAME_RULE}")
    given = _own_values(raw, secret_keys)
    values = {key.name: given.get(key.name, key.default) for key in KEYS}
    for key in KEYS:
        value = values[key.name]
        if key.check is not None and value is not None:
            problem = key.check(value)
            if problem:
                allowed, shown, *where = problem if isinstance(problem, tuple) else (problem, value)
                raise _fail(key.name + "".join(where), allowed, list(shown) if isinstance(shown, tuple) else shown)
    region = aws_region if aws_region is not None else "us-east-1"
    if not is_region(region):
        raise SettingsError(f"aws:region: an AWS region such as us-east-1 (got {region!r})")
    values["aws:region"] = region
    for rule in RULES:
        problem = rule(values, set(given))
        if problem:
            raise _fail(*problem)
    return values, set(given)


def load_settings(
    raw: Mapping[str, Any],
    stack: str,
    secret_keys: frozenset[str] | set[str] = frozenset(),
    aws_region: Optional[str] = None,
) -> Settings:
    """Validate raw stack config (keys with or without the `registry-ha:` prefix)."""
    values, _ = resolve_values(raw, stack, secret_keys, aws_region)
    return build_settings(values, stack)


def build_settings(c: Mapping[str, Any], stack: str) -> Settings:
    """Settings from checked values (resolve_values): no validation left here, only shaping."""
    registry = RegistrySettings(
        image=c["image"],
        schema=c["configSchema"] or image_schema(c["image"]),
        replicas=c["replicas"],
        anti_affinity=c["antiAffinity"],
        zone_spread=c["zoneSpread"],
        resources=Resources(c["registryCpuRequest"], c["registryMemoryRequest"], c["registryMemoryLimit"]),
        pre_stop_seconds=c["preStopSeconds"],
        log_level=c["logLevel"],
        storage_redirect=c["storageRedirect"],
        upload_purge_age=c["uploadPurgeAge"],
        service_name=c["serviceName"],
        read_only=c["readOnly"],
        gc_schedule=c["gcSchedule"],
    )
    storage = StorageSettings(
        region=c["aws:region"],
        bucket_name=c["bucketName"],
        bucket_prefix=f"neural-hive-registry-{stack}-",
        encryption=c["encryption"],
        kms_key_arn=c["kmsKeyArn"],
        versioning=c["bucketVersioning"],
        noncurrent_version_days=c["noncurrentVersionDays"],
        abort_multipart_days=c["abortMultipartDays"],
        force_destroy=c["forceDestroy"],
        endpoint=c["s3Endpoint"],
        retain=c["retainBucket"],
    )
    redis = RedisSettings(
        image=c["redisImage"],
        max_memory=c["redisMaxMemory"],
        resources=Resources(c["redisCpuRequest"], c["redisMemoryRequest"], c["redisMemoryLimit"]),
        timeout=c["redisTimeout"],
        registry_db=0,
    )
    passwords = c["mirrorPasswords"] or {}
    caches = tuple(
        CacheSettings(
            name=entry["name"],
            host=entry["host"],
            remote_url=entry["remoteUrl"],
            replicas=entry.get("replicas", c["mirrorReplicas"]),
            ttl=entry.get("ttl", c["mirrorTtl"]),
            service_name=entry["serviceName"],
            redis_db=entry["redisDb"],
            cluster_ip=entry.get("clusterIP"),
            username=entry.get("username"),
            password=pulumi.Output.secret(passwords[entry["name"]]) if "username" in entry else None,
        )
        for entry in cache_entries(c["mirrors"])
    )
    exposure = ExposureSettings(
        hostname=c["hostname"],
        lb_provider=c["loadBalancerProvider"],
        lb_ip=c["loadBalancerIP"],
        lb_source_ranges=tuple(c["loadBalancerSourceRanges"]),
        metallb_pool=c["metallbAddressPool"],
        node_port=c["nodePort"],
        node_address=c["nodeAddress"],
    )
    network = NetworkSettings(
        client_cidrs=tuple(c["clientCidrs"]),
        monitoring_namespace=c["monitoringNamespace"],
        service_monitor=c["serviceMonitor"],
    )
    auth = c["authEnabled"]
    access = AccessSettings(
        auth_enabled=auth,
        users=tuple(AuthUser(*entry.split(":", 1)) for entry in c["authUsers"]) if auth else (),
        node_user=c["nodeUser"] if auth else None,
        pull_secret_namespaces=tuple(c["pullSecretNamespaces"]) if auth else (),
        signing_keys=tuple(c["tokenSigningKeys"]) if auth else (),
        token_server_image=c["tokenServerImage"],
        proxy_image=c["authProxyImage"],
        tls_secret_name=c["tlsSecretName"],
    )
    monitoring = MonitoringSettings(
        prometheus_rule=c["prometheusRule"],
        grafana_dashboard=c["grafanaDashboard"],
        runbook_url=c["runbookUrl"],
        error_percent=c["alert5xxPercent"],
        manifest_p99_s=duration_seconds(c["alertManifestP99"]),
        cache_manifest_p99_s=duration_seconds(c["alertCacheManifestP99"]),
        storage_p99_s=duration_seconds(c["alertStorageP99"]),
        redis_errors=c["alertRedisErrors"],
        upstream_error_percent=c["alertUpstreamErrorPercent"],
        restarts=c["alertRestarts"],
    )
    nodes = NodeSettings(
        configurator=NODE_CONFIGURATOR_ALIASES.get(c["nodeConfigurator"], c["nodeConfigurator"]),
        configurator_image=c["nodeConfiguratorImage"],
        ca_certificate=c["tlsCaCertificate"].strip() + "\n" if c["tlsCaCertificate"] else None,
    )
    return Settings(
        stack=stack,
        namespace=c["namespace"],
        registry=registry,
        storage=storage,
        redis=redis,
        caches=caches,
        exposure=exposure,
        network=network,
        access=access,
        monitoring=monitoring,
        nodes=nodes,
    )


def from_pulumi_config() -> Settings:
    """Read this stack's config from the Pulumi runtime (the only caller is __main__.py)."""
    from pulumi.runtime import config as runtime_config

    from registry_ha.stacks import unknown_provider_keys

    raw: dict[str, Any] = {}
    raw.update(runtime_config.get_config_env())
    raw.update(runtime_config.CONFIG.get())
    ours = {k: v for k, v in raw.items() if k.startswith(f"{PROJECT}:")}
    secret_keys = set(runtime_config.get_config_secret_keys_env()) | {
        k for k in ours if runtime_config.is_config_secret(k)
    }
    for warning in unknown_provider_keys(raw):
        pulumi.log.warn(warning)
    return load_settings(ours, pulumi.get_stack(), secret_keys, aws_region=raw.get("aws:region"))
