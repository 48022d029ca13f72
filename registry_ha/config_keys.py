"""Every stack config key of the program, with its type, default, help and validation.

Adding a key is one `Key(...)` entry (and, when its value depends on another key, one
rule in RULES). Defaults never depend on the stack's name: every difference between
stacks is written in that stack's `Pulumi.<stack>.yaml`.
"""
from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Optional

from registry_ha import validators as v

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
MAX_AUTH_USERS = 20
AUTH_ROLES = ("pull", "push", "admin")  # pull: pull; push: pull and push; admin: everything, delete included
MAX_SIGNING_KEYS = 3
# redis.conf keeps Redis's default of 16 databases: db 0 is the private registry's, one each for the caches.
REDIS_DATABASES = 16
MAX_CACHES = REDIS_DATABASES - 1
NODE_CONFIGURATOR_MODES = ("off", "on", "remove")
DOCKER_HUB = "docker.io"
DOCKER_HUB_REMOTE = "https://registry-1.docker.io"
# Today's Docker Hub cache, object names unchanged (Service docker-registry-mirror, S3 /dockerhub-cache, db 1).
DEFAULT_MIRRORS = ({"name": "dockerhub", "host": DOCKER_HUB, "serviceName": "docker-registry-mirror"},)
MIRROR_FIELDS = ("name", "host", "remoteUrl", "ttl", "replicas", "username", "redisDb", "serviceName", "clusterIP")
MAX_CACHE_NAME = 20  # it names the objects: <name>-cache, <name>-cache-metrics, ...
MAX_SERVICE_NAME = 55  # <serviceName>-metrics and -config must stay DNS labels (63)

# Keys that existed before the `mirrors` list: a stack that still sets one is told what replaced it.
REMOVED_KEYS = {
    "mirrorEnabled": "removed: the caches are the `mirrors` list (`[]` for none); see docs/caches-and-nodes.md",
    "mirrorRemoteUrl": "removed: set `remoteUrl` in the cache's `mirrors` entry",
    "mirrorServiceName": "removed: set `serviceName` in the cache's `mirrors` entry",
    "mirrorNodePort": "removed: caches are ClusterIP only (never on a NodePort); nodes reach them through kube-proxy, "
    "see docs/caches-and-nodes.md",
    "dockerHubUsername": "removed: set `username` in the docker.io entry of `mirrors`",
    "dockerHubPassword": "removed: put the password in the secret `mirrorPasswords` "
    "(`pulumi config set --secret mirrorPasswords '{\"dockerhub\": \"...\"}'`)",
}

# A check takes the value and returns None when it is fine, else what is allowed, or (what is
# allowed, the part of the value to show) for a list with one bad item, or (what is allowed, the
# part to show, where in the value: "[1].host") for a list of objects.
Check = Callable[[Any], Optional[str | tuple]]


@dataclass(frozen=True)
class Key:
    name: str
    kind: str  # str | int | bool | list (of strings) | objects (list of maps) | map (of strings)
    default: Any
    help: str
    check: Optional[Check] = None  # not called for an unset optional key (value None)
    secret: bool = False


# --------------------------------------------------------------------------- checks


def one_of(*choices: str) -> Check:
    return lambda value: None if value in choices else f"one of {', '.join(choices)}"


def between(low: int, high: int) -> Check:
    return lambda value: None if low <= value <= high else f"an integer from {low} to {high}"


def matches(pattern, allowed: str) -> Check:
    return lambda value: None if pattern.match(value) else allowed


def duration_at_least(seconds: float, allowed: str) -> Check:
    return lambda value: None if v.DURATION.match(value) and v.duration_seconds(value) >= seconds else allowed


def non_empty(check: Optional[Check] = None) -> Check:
    """An optional string key: unset is fine, an empty string is a mistake."""

    def run(value: str) -> Optional[str]:
        if value.strip() == "":
            return "a non-empty value, or leave it unset"
        return check(value) if check else None

    return run


def dns_label(what: str = "a DNS label: lowercase letters, digits and '-', at most 63") -> Check:
    return lambda value: None if v.is_dns_label(value) else what


def cidr_list(value: tuple[str, ...]):
    bad = [c for c in value if not v.is_cidr(c)]
    return ("CIDR blocks such as 10.0.0.0/8", bad[0]) if bad else None


def cpu(example: str) -> Check:
    return matches(v.QUANTITY_CPU, f"a CPU quantity such as {example}")


def memory(example: str) -> Check:
    return matches(v.QUANTITY_MEM, f"a memory quantity such as {example}")


def namespace_name(value: str) -> Optional[str]:
    if not v.is_dns_label(value):
        return "a DNS label: lowercase letters, digits and '-', at most 63"
    if value in RESERVED_NAMESPACES or value.startswith("kube-"):
        return "a namespace of its own, not default or kube-*"
    return None


def hostname(value: str) -> Optional[str]:
    return None if v.is_hostname(value) else "a DNS hostname such as registry.neural-hive.local"


def pinned_image(example: str) -> Check:
    def run(value: str) -> Optional[str]:
        if not v.IMAGE.match(value):
            return f"an image reference such as {example}"
        if not v.image_is_pinned(value):
            return "an image pinned to a tag other than latest, or a digest"
        return None

    return run


def cron_schedule(value: str) -> Optional[str]:
    if v.is_cron_schedule(value):
        return None
    return "a cron schedule of 5 fields such as '0 3 * * 0', or @daily/@weekly (no TZ= prefix)"


def bucket_name(value: str) -> Optional[str]:
    problem = v.bucket_name_problem(value)
    return f"an S3 bucket name: {problem}" if problem else None


def kms_arn(value: str) -> Optional[str]:
    return None if v.KMS_ARN.match(value) else "a KMS key ARN (not an alias) such as arn:aws:kms:us-east-1:123456789012:key/<id>"


def private_ip(value: str) -> Optional[str]:
    try:
        ip = ipaddress.ip_address(value)
    except ValueError:
        return "an IP address"
    return None if ip.is_private else "a private (internal) IP address"


def node_address(value: str) -> Optional[str]:
    try:
        ip = ipaddress.ip_address(value)
    except ValueError:
        return None if v.is_hostname(value) else "an IP address or hostname of a node"
    if ip.is_unspecified or ip.is_loopback or ip.is_multicast:
        return "the address of a node clients can reach (not 0.0.0.0, loopback or multicast)"
    return None


def auth_users(value: tuple[str, ...]):
    if len(value) > MAX_AUTH_USERS:
        return f"at most {MAX_AUTH_USERS} users", list(value)
    for entry in value:
        name, sep, role = entry.partition(":")
        if not sep or role not in AUTH_ROLES:
            return f"name:role entries with role {', '.join(AUTH_ROLES)}, such as ci:push", entry
        if not v.AUTH_USER.match(name):
            return "user names of a-z, 0-9, '.', '_', '-', at most 63, starting and ending with a letter or digit", entry
    names = [entry.partition(":")[0] for entry in value]
    repeated = sorted({name for name in names if names.count(name) > 1})
    return ("distinct user names", repeated[0]) if repeated else None


def signing_keys(value: tuple[str, ...]):
    if not 1 <= len(value) <= MAX_SIGNING_KEYS:
        return f"1 to {MAX_SIGNING_KEYS} key names (the first signs; during a rotation, two)", list(value)
    bad = [name for name in value if not v.is_dns_label(name) or len(name) > 20]
    if bad:
        return "key names of a-z, 0-9 and '-', at most 20", bad[0]
    repeated = sorted({name for name in value if value.count(name) > 1})
    return ("distinct key names", repeated[0]) if repeated else None


def namespace_list(value: tuple[str, ...]):
    bad = [name for name in value if not v.is_dns_label(name)]
    if bad:
        return "namespace names (DNS labels)", bad[0]
    repeated = sorted({name for name in value if value.count(name) > 1})
    return ("distinct namespaces", repeated[0]) if repeated else None
def runbook_url(value: str) -> Optional[str]:
    if v.HTTP_URL.match(value) or re.fullmatch(r"[A-Za-z0-9._/-]+\.md", value):
        return None if "#" not in value else "a URL or path without a #fragment (the alert name is appended)"
    return "an http(s) URL or a repository path such as docs/monitoring.md"


def latency_threshold(value: str) -> Optional[str]:
    # Prometheus compares seconds; Go durations have no fractions, so 2.5 s is written 2500ms.
    if v.DURATION.match(value) and 0.05 <= v.duration_seconds(value) <= 60:
        return None
    return "a duration from 50ms to 60s such as 1s or 2500ms"


def secret_name(value: str) -> Optional[str]:
    if len(value) > 253 or not v.DNS_SUBDOMAIN.match(value):
        return "a Secret name: lowercase letters, digits, '-' and '.', at most 253"
    return None


def pem_certificate(value: str) -> Optional[str]:
    text = value.strip()
    if text.startswith("-----BEGIN CERTIFICATE-----") and text.endswith("-----END CERTIFICATE-----"):
        return None
    return "PEM certificates (-----BEGIN CERTIFICATE----- ... -----END CERTIFICATE-----)"


# YAML 1.1 readers turn an unquoted `on`/`off` into a boolean: take those spellings too.
NODE_CONFIGURATOR_ALIASES = {"true": "on", "false": "off"}


def node_configurator_mode(value: str) -> Optional[str]:
    if value in NODE_CONFIGURATOR_MODES or value in NODE_CONFIGURATOR_ALIASES:
        return None
    return f"one of {', '.join(NODE_CONFIGURATOR_MODES)}"


def registry_host(value: str) -> bool:
    """A registry's name as it appears in image references: host or host:port, lowercase."""
    host, _, port = value.partition(":") if value.count(":") == 1 else (value, "", "")
    if port and not (port.isdigit() and 0 < int(port) < 65536):
        return False
    if value != value.lower():
        return False
    try:
        ipaddress.IPv4Address(host)
        return True
    except ValueError:
        # Without a dot or a port, a name is a Docker Hub path (`team/app` = docker.io/team/app).
        return v.is_hostname(host) and ("." in host or bool(port) or host == "localhost")


def cluster_ip(value: str) -> Optional[str]:
    try:
        ip = ipaddress.ip_address(value)
    except ValueError:
        return "an IP address in the cluster's Service CIDR such as 10.43.0.50"
    if ip.is_unspecified or ip.is_loopback or ip.is_multicast or ip.is_link_local:
        return "an IP address in the cluster's Service CIDR such as 10.43.0.50"
    return None


def _integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


# field -> check of one mirrors entry's field (None: fine, else what is allowed)
_MIRROR_FIELD_CHECKS: dict[str, Check] = {
    "name": lambda x: None if isinstance(x, str) and v.is_dns_label(x) and len(x) <= MAX_CACHE_NAME
    else f"a short name: lowercase letters, digits and '-', at most {MAX_CACHE_NAME} (it names the cache's objects)",
    "host": lambda x: None if isinstance(x, str) and registry_host(x)
    else "a registry host as it appears in image references, such as docker.io, ghcr.io or quay.io",
    "remoteUrl": lambda x: None if isinstance(x, str) and v.REGISTRY_ROOT_URL.match(x)
    else "a registry root URL such as https://registry-1.docker.io",
    "ttl": lambda x: None if isinstance(x, str) and v.DURATION.match(x) else "a duration such as 168h",
    "replicas": lambda x: None if _integer(x) and 1 <= x <= 10 else "an integer from 1 to 10",
    "username": lambda x: None if isinstance(x, str) and v.USERNAME.match(x) else "a registry user name: no spaces, no ':'",
    "redisDb": lambda x: None if _integer(x) and 1 <= x <= MAX_CACHES
    else f"an integer from 1 to {MAX_CACHES} (db 0 is the private registry's)",
    "serviceName": lambda x: None if isinstance(x, str) and v.is_dns_label(x) and len(x) <= MAX_SERVICE_NAME
    else f"a DNS label of at most {MAX_SERVICE_NAME} characters",
    "clusterIP": lambda x: cluster_ip(x) if isinstance(x, str) else "an IP address in the cluster's Service CIDR such as 10.43.0.50",
}


def cache_entries(entries) -> list[dict]:
    """Checked `mirrors` entries with every default filled in except ttl/replicas (other keys' values).

    Redis dbs: a pinned `redisDb` is kept; the others get the lowest free db in list order. So
    appending a cache never moves another's db; removing or reordering one moves the unpinned
    caches after it (pin `redisDb` to keep them where they are)."""
    pinned = {e["redisDb"] for e in entries if "redisDb" in e}
    free = (db for db in range(1, REDIS_DATABASES) if db not in pinned)
    resolved = []
    for entry in entries:
        host = entry["host"]
        resolved.append(
            {
                **entry,
                "remoteUrl": entry.get("remoteUrl", DOCKER_HUB_REMOTE if host == DOCKER_HUB else f"https://{host}").rstrip("/"),
                "serviceName": entry.get("serviceName", f"{entry['name']}-cache"),
                "redisDb": entry["redisDb"] if "redisDb" in entry else next(free),
            }
        )
    return resolved


def mirror_entries(value) -> Optional[tuple]:
    if len(value) > MAX_CACHES:
        return f"at most {MAX_CACHES} caches (Redis has {REDIS_DATABASES} dbs; db 0 is the private registry's)", f"{len(value)} entries", ""
    for i, entry in enumerate(value):
        if not isinstance(entry, dict):
            return "an object with at least name and host", entry, f"[{i}]"
        for field in entry:
            if field not in MIRROR_FIELDS:
                return f"unknown field; the fields are {', '.join(MIRROR_FIELDS)}", entry[field], f"[{i}].{field}"
        for field in ("name", "host"):
            if field not in entry:
                return f"required: {_MIRROR_FIELD_CHECKS[field](None)}", None, f"[{i}].{field}"
        for field, check in _MIRROR_FIELD_CHECKS.items():
            if field in entry:
                problem = check(entry[field])
                if problem:
                    return problem, entry[field], f"[{i}].{field}"
    resolved = cache_entries(value)
    for field, what in (("name", "names"), ("host", "hosts"), ("serviceName", "service names"),
                        ("redisDb", "Redis dbs"), ("clusterIP", "cluster IPs")):
        seen: dict = {}
        for i, entry in enumerate(resolved):
            if field not in entry:
                continue
            if entry[field] in seen:
                first = seen[entry[field]]
                return f"distinct {what} (mirrors[{first}] has it too)", entry[field], f"[{i}].{field}"
            seen[entry[field]] = i
    return None


def mirror_passwords(value: dict) -> Optional[tuple]:
    # Never show a password: only the names.
    for name, password in value.items():
        if not isinstance(password, str) or not password.strip():
            return "a non-empty password or token for each cache name", name
    return None


# --------------------------------------------------------------------------- the keys

KEYS: tuple[Key, ...] = (
    Key("namespace", "str", "registry", "Kubernetes namespace for every object.", namespace_name),
    Key("hostname", "str", "registry.neural-hive.local", "DNS name clients use; the address is <hostname>:5000.", hostname),
    Key("image", "str", "registry:3.1.1", "Distribution image for the private registry and the caches, pinned.", pinned_image("registry:3.1.1")),
    Key("configSchema", "str", None, "v2|v3; only needed when the image tag does not tell (a digest, a mirror).", one_of(*SCHEMAS)),
    Key("replicas", "int", 3, "Private registry replicas.", between(1, 50)),
    Key("antiAffinity", "str", "preferred", "required|preferred pod anti-affinity on kubernetes.io/hostname.", one_of(*ANTI_AFFINITY_MODES)),
    Key("zoneSpread", "bool", False, "Also spread replicas across topology.kubernetes.io/zone."),
    Key("registryCpuRequest", "str", "100m", "Registry container CPU request.", cpu("250m or 1")),
    Key("registryMemoryRequest", "str", "256Mi", "Registry container memory request.", memory("512Mi")),
    Key("registryMemoryLimit", "str", "512Mi", "Registry container memory limit.", memory("1Gi")),
    Key("preStopSeconds", "int", 10, "Delay before the registry gets SIGTERM, so endpoints drain first.", between(0, 120)),
    Key("logLevel", "str", "info", "error|warn|info|debug.", one_of(*LOG_LEVELS)),
    Key("storageRedirect", "bool", False, "true: clients fetch blobs from S3 by pre-signed redirect (they must reach S3)."),
    # Shorter than an upload can take would purge uploads still in progress.
    Key("readOnly", "bool", False, "Maintenance mode: every private registry replica refuses pushes and deletes (405); `deploy-registry-ha.sh gc` sets and clears it. The caches are never read-only."),
    Key("gcSchedule", "str", None, "Cron schedule (e.g. `0 3 * * 0`) of a CronJob that runs `registry garbage-collect --dry-run`: a report of what `gc` would delete, never a deletion. Unset: no CronJob.", non_empty(cron_schedule)),
    Key("uploadPurgeAge", "str", "168h", "Abandoned uploads older than this are purged.", duration_at_least(3600, "a duration of at least 1h such as 168h")),
    Key("serviceName", "str", "docker-registry", "Name of the LoadBalancer Service (`kubectl get svc docker-registry`).", dns_label()),
    Key("bucketName", "str", None, "S3 bucket name; unset: auto-named from neural-hive-registry-<stack>-.", bucket_name),
    Key("encryption", "str", "sse-s3", "sse-s3 (AES256) or sse-kms.", one_of(*ENCRYPTION_MODES)),
    Key("kmsKeyArn", "str", None, "KMS key ARN for sse-kms; unset with sse-kms: the program creates a key with rotation.", non_empty(kms_arn)),
    Key("bucketVersioning", "bool", False, "Keep previous object versions (recovery from bad deletes)."),
    Key("noncurrentVersionDays", "int", 30, "Expire previous object versions after this many days.", between(1, 3650)),
    Key("abortMultipartDays", "int", 3, "Abort incomplete multipart uploads after this many days.", between(1, 365)),
    Key("forceDestroy", "bool", False, "Allow `pulumi destroy` to delete a non-empty bucket (only with retainBucket: false)."),
    Key("retainBucket", "bool", True, "Protect the bucket and its KMS key (protect + retainOnDelete): `pulumi destroy` keeps them, with every image."),
    Key("s3Endpoint", "str", None, "S3-compatible endpoint URL (MinIO, Ceph) instead of AWS.", non_empty(matches(v.HTTP_URL, "an http(s) URL such as https://minio.internal:9000"))),
    Key("redisImage", "str", "redis:7.4.2-alpine", "Redis image, pinned.", pinned_image("redis:7.4.2-alpine")),
    Key("redisMaxMemory", "str", "128mb", "Redis maxmemory; eviction is allkeys-lru.", matches(v.REDIS_MEM, "a Redis size such as 256mb")),
    Key("redisCpuRequest", "str", "50m", "Redis CPU request.", cpu("50m")),
    Key("redisMemoryRequest", "str", "192Mi", "Redis memory request.", memory("320Mi")),
    Key("redisMemoryLimit", "str", "256Mi", "Redis memory limit (above maxmemory).", memory("384Mi")),
    # 0 means no timeout: a hung Redis would stall every pull.
    # A blob request makes up to 7 Redis lookups: a Redis that accepts and never answers costs about
    # 7 x this per blob (measured: 100ms -> 3.2 s per pull, 50ms -> 1.7 s); a false timeout costs a cache miss.
    Key("redisTimeout", "str", "50ms", "Registry dial/read/write/pool timeout towards Redis: a hung Redis costs about 7x this per blob request.", duration_at_least(0.001, "a Go duration above 0 such as 50ms")),
    Key("mirrors", "objects", DEFAULT_MIRRORS, "Pull-through caches, one per upstream: [{name, host, remoteUrl?, ttl?, replicas?, username?, redisDb?, serviceName?, clusterIP?}] (docs/caches-and-nodes.md); [] for none.", mirror_entries),
    Key("mirrorPasswords", "map", None, "Upstream passwords of caches with a username: {\"<name>\": \"<password or token>\"}; set with `pulumi config set --secret`.", mirror_passwords, secret=True),
    Key("mirrorReplicas", "int", 1, "Replicas of each cache unless its entry says (its expiry state is one shared file: keep 1).", between(1, 10)),
    Key("mirrorTtl", "str", "168h", "How long a cache keeps content unless its entry says (v3 images; 2.8 is fixed at 168h).", matches(v.DURATION, "a duration such as 168h")),
    Key("loadBalancerProvider", "str", "metallb", "aws|gcp|azure|metallb|none: which internal-LB annotations to set.", one_of(*LB_PROVIDERS)),
    Key("loadBalancerIP", "str", None, "Fixed internal IP for the LoadBalancer (metallb, or a reserved IP).", non_empty(private_ip)),
    Key("loadBalancerSourceRanges", "list", (), "CIDRs allowed through the LoadBalancer (empty: no restriction there).", cidr_list),
    Key("metallbAddressPool", "str", "internal", "MetalLB pool the LoadBalancer IP comes from; it must hold internal addresses only.", non_empty(dns_label("a MetalLB pool name (DNS label)"))),
    Key("nodePort", "int", 30500, "NodePort of the registry: the secondary address <node>:30500.", between(30000, 32767)),
    Key("nodeAddress", "str", "37.60.241.150", "Node IP in the secondary address (REGISTRY_SECONDARY).", node_address),
    Key("clientCidrs", "list", ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"), "Non-pod sources allowed to reach :5000 (nodes, LB, VPN).", cidr_list),
    Key("monitoringNamespace", "str", "monitoring", "Namespace whose pods may scrape :5001.", dns_label("a namespace name (DNS label)")),
    Key("serviceMonitor", "bool", False, "Create a Prometheus-operator ServiceMonitor (needs its CRD)."),
    Key("prometheusRule", "bool", False, "Create a PrometheusRule with the registry's alerts (needs serviceMonitor and the prometheus-operator CRDs); see docs/monitoring.md."),
    Key("grafanaDashboard", "bool", False, "Create the Grafana dashboard as a ConfigMap labelled grafana_dashboard: \"1\" in monitoringNamespace (needs serviceMonitor)."),
    Key("runbookUrl", "str", "docs/monitoring.md", "Where operators read docs/monitoring.md; each alert's runbook_url is <runbookUrl>#<alert name in lower case>.", runbook_url),
    Key("alert5xxPercent", "int", 5, "RegistryHigh5xxRatio: percent of a registry's responses that are 5xx, sustained 10m.", between(1, 100)),
    Key("alertManifestP99", "str", "1s", "RegistryHighManifestLatencyP99: p99 of the private registry's manifest requests, sustained 15m.", latency_threshold),
    Key("alertCacheManifestP99", "str", "2500ms", "RegistryCacheHighManifestLatencyP99: p99 of the cache's manifest requests (a miss includes the upstream), sustained 15m.", latency_threshold),
    Key("alertStorageP99", "str", "2500ms", "RegistryStorageSlowP99: p99 of S3 calls (GetContent, PutContent, Stat, Delete), sustained 15m.", latency_threshold),
    Key("alertRedisErrors", "int", 5, "RegistryRedisCacheErrors: failed Redis lookups on one pod within 5m, sustained 5m.", between(0, 1000000)),
    Key("alertUpstreamErrorPercent", "int", 10, "RegistryCacheUpstreamFailing: percent of the cache's manifest/blob responses that are 404/5xx while nothing comes from upstream (15m window, sustained 10m).", between(1, 100)),
    Key("alertRestarts", "int", 3, "RegistryPodRestarting: restarts of one pod within 30m.", between(1, 100)),
    Key("authEnabled", "bool", True, "Token authentication with roles on the private registry (a docker_auth token server in each registry pod): authUsers may pull, push or delete by role; anonymous clients get nothing."),
    Key("authUsers", "list", ("admin:admin", "ci:push", "node:pull", "reader:pull"), "name:role per identity (pull, push = pull+push, admin = everything incl. delete); one pulumi-random password each, in the secret output registryCredentials.", auth_users),
    Key("nodeUser", "str", "node", "The pull identity nodes use: containerd registry auth and the pullSecretNamespaces Secrets.", matches(v.AUTH_USER, "a user name from authUsers")),
    Key("pullSecretNamespaces", "list", (), "Namespaces that get a kubernetes.io/dockerconfigjson Secret registry-pull holding nodeUser's credential.", namespace_list),
    Key("tokenSigningKeys", "list", ("k1",), "Names of the token signing keys (RSA, pulumi-tls): the first signs, every one is trusted. Rotate: add one, move it first, drop the old.", signing_keys),
    Key("tokenServerImage", "str", "cesanta/docker_auth:1.14.0", "Token server image (cesanta/docker_auth), pinned; name:tag@sha256:... pins the digest.", pinned_image("cesanta/docker_auth:1.14.0")),
    Key("authProxyImage", "str", "haproxy:2.6.17-alpine", "Proxy in each registry pod that serves the token realm /auth next to the registry, pinned.", pinned_image("haproxy:2.6.17-alpine")),
    Key("tlsSecretName", "str", None, "Existing kubernetes.io/tls Secret in the namespace (e.g. from cert-manager); set: the private registry serves HTTPS on :5000.", non_empty(secret_name)),
    Key("tlsCaCertificate", "str", None, "PEM of the CA that signed tlsSecretName's certificate: nodes' hosts.toml trust it (ca.crt). Unset: nodes must trust the certificate already.", non_empty(pem_certificate)),
    Key("nodeConfigurator", "str", "off", "on: a DaemonSet writes the containerd hosts.toml files onto every node; remove: it deletes what it wrote (then set off); off: nothing.", node_configurator_mode),
    Key("nodeConfiguratorImage", "str", "busybox:1.37.0", "Image that runs the node configurator's script (POSIX sh), pinned.", pinned_image("busybox:1.37.0")),
)
KEYS_BY_NAME = {k.name: k for k in KEYS}


# --------------------------------------------------------------------------- rules across keys

# A rule looks at the resolved values (`values`, defaults filled in) and the names the stack set
# (`given`); it returns (key, what is allowed, the value shown) for the first problem, or None.
Problem = tuple[str, str, Any]
Rule = Callable[[Mapping[str, Any], set], Optional[Problem]]


def _schema_matches_image(values, given) -> Optional[Problem]:
    image, schema = values["image"], values["configSchema"]
    told = v.image_schema(image)
    if schema is None and told is None:
        return "image", "a registry:3.x or registry:2.8.x tag, or set configSchema to v2 or v3", image
    if schema is not None and told not in (None, schema):
        return "configSchema", f"{told} for image {image}, or unset (the tag tells)", schema
    return None


def _caches_apart_from_the_registry(values, given) -> Optional[Problem]:
    registry_names = {values["serviceName"], "registry-redis"}
    registry_hosts = {f"{values['hostname']}:{REGISTRY_PORT}", f"{values['nodeAddress']}:{values['nodePort']}"}
    for i, entry in enumerate(cache_entries(values["mirrors"])):
        if entry["serviceName"] in registry_names:
            return f"mirrors[{i}].serviceName", f"a name other than {', '.join(sorted(registry_names))}", entry["serviceName"]
        if entry["host"] in registry_hosts:
            return f"mirrors[{i}].host", "an upstream, not the private registry's own address", entry["host"]
    return None


def _memory_within_limit(request_key: str, limit_key: str) -> Rule:
    # The API server rejects a request above the limit, and a 0 limit would OOM-kill at once.
    def rule(values, given) -> Optional[Problem]:
        request, limit = v.memory_bytes(values[request_key]), v.memory_bytes(values[limit_key])
        if limit == 0:
            return limit_key, "a memory quantity above 0 such as 512Mi", values[limit_key]
        if request > limit:
            return request_key, f"at most {limit_key} ({values[limit_key]})", values[request_key]
        return None

    return rule


def _redis_maxmemory_below_limit(values, given) -> Optional[Problem]:
    # maxmemory 0 is unlimited; at or above the container limit Redis is OOM-killed before it evicts.
    if not 0 < v.redis_bytes(values["redisMaxMemory"]) < v.memory_bytes(values["redisMemoryLimit"]):
        limit = values["redisMemoryLimit"]
        return "redisMaxMemory", f"a Redis size above 0 and below redisMemoryLimit ({limit})", values["redisMaxMemory"]
    return None


def _kms_key_fits(values, given) -> Optional[Problem]:
    arn = values["kmsKeyArn"]
    if arn is None:
        return None
    if values["encryption"] != "sse-kms":
        return "kmsKeyArn", "only with encryption: sse-kms", arn
    region = values["aws:region"]
    if v.KMS_ARN.match(arn).group("region") != region:
        return "kmsKeyArn", f"a key in the bucket's region {region} (S3 cannot use another region's key)", arn
    return None


def _cache_credentials_together(values, given) -> Optional[Problem]:
    passwords = values["mirrorPasswords"] or {}
    with_user = {e["name"]: i for i, e in enumerate(values["mirrors"]) if "username" in e}
    for name, i in with_user.items():
        if name not in passwords:
            return "mirrorPasswords", f"a password for {name!r}: mirrors[{i}] sets a username", sorted(passwords)
    for name in passwords:
        if name not in with_user:
            return "mirrorPasswords", "passwords only for caches whose mirrors entry sets a username", name
    return None


def _load_balancer_ip_provider(values, given) -> Optional[Problem]:
    if values["loadBalancerIP"] is not None and values["loadBalancerProvider"] not in ("metallb", "gcp", "azure"):
        return "loadBalancerIP", "only with loadBalancerProvider metallb, gcp or azure", values["loadBalancerIP"]
    return None


def _metallb_pool_only_with_metallb(values, given) -> Optional[Problem]:
    if "metallbAddressPool" in given and values["loadBalancerProvider"] != "metallb":
        return "metallbAddressPool", "only with loadBalancerProvider: metallb", values["metallbAddressPool"]
    return None


def _source_ranges_need_a_load_balancer(values, given) -> Optional[Problem]:
    # No LoadBalancer, so nothing would enforce them: refuse rather than ignore.
    if values["loadBalancerSourceRanges"] and values["loadBalancerProvider"] == "none":
        ranges = list(values["loadBalancerSourceRanges"])
        return "loadBalancerSourceRanges", "only with a loadBalancerProvider other than none", ranges
    return None


AUTH_ONLY_KEYS = ("authUsers", "nodeUser", "pullSecretNamespaces", "tokenSigningKeys", "tokenServerImage", "authProxyImage")


def _auth_keys_need_auth(values, given) -> Optional[Problem]:
    if not values["authEnabled"]:
        for key in AUTH_ONLY_KEYS:
            if key in given:
                # Users or Secrets that would silently not exist: refuse rather than ignore.
                value = values[key]
                return key, "only with authEnabled: true", list(value) if isinstance(value, tuple) else value
        return None
    users = dict(entry.partition(":")[::2] for entry in values["authUsers"])
    if not users:
        return "authUsers", "at least one name:role entry when authEnabled is true", []
    node = values["nodeUser"]
    if users.get(node) != "pull":
        pull = sorted(name for name, role in users.items() if role == "pull")
        allowed = f"a user of role pull in authUsers ({', '.join(pull)})" if pull else "a user of role pull in authUsers (there is none)"
        return "nodeUser", allowed, node
    return None


def _auth_needs_v3(values, given) -> Optional[Problem]:
    # 2.8's token auth announces https://<host>/auth/token whatever the scheme, and verifies keys differently.
    if values["authEnabled"] and (values["configSchema"] or v.image_schema(values["image"])) == "v2":
        return "authEnabled", "false with a Distribution 2.8 image (token auth needs 3.x)", True
    return None


def _tls_secret_not_owned(values, given) -> Optional[Problem]:
    # The program owns these Secrets; mounting one of them as the certificate cannot work.
    name = values["tlsSecretName"]
    caches = cache_entries(values["mirrors"])
    owned = {f"{values['serviceName']}-config", f"{values['serviceName']}-token", "registry-redis-config",
             *(f"{e['serviceName']}-config" for e in caches)}
    if name in owned:
        return "tlsSecretName", f"a kubernetes.io/tls Secret of its own, not one the program manages ({', '.join(sorted(owned))})", name
    return None


def _monitoring_needs_service_monitor(values, given) -> Optional[Problem]:
    # The alerts and the dashboard read what the ServiceMonitor scrapes; without it they would be silent.
    for key in ("prometheusRule", "grafanaDashboard"):
        if values[key] and not values["serviceMonitor"]:
            return key, "true only with serviceMonitor: true (it reads what the ServiceMonitor scrapes)", values[key]
    return None


ALERT_KEYS = ("runbookUrl", "alert5xxPercent", "alertManifestP99", "alertCacheManifestP99", "alertStorageP99",
              "alertRedisErrors", "alertUpstreamErrorPercent", "alertRestarts")


def _alert_settings_need_the_rule(values, given) -> Optional[Problem]:
    # Thresholds that would silently apply to nothing: refuse rather than ignore.
    if not values["prometheusRule"]:
        for key in ALERT_KEYS:
            if key in given:
                return key, "only with prometheusRule: true", values[key]
    return None


def _tls_ca_needs_tls(values, given) -> Optional[Problem]:
    if values["tlsCaCertificate"] is not None and values["tlsSecretName"] is None:
        return "tlsCaCertificate", "only with tlsSecretName (the registry serves HTTPS)", "(a certificate)"
    return None


def _force_destroy_needs_an_unretained_bucket(values, given) -> Optional[Problem]:
    # A retained bucket is never deleted by destroy, so emptying it first would only lose the images.
    if values["forceDestroy"] and values["retainBucket"]:
        return "forceDestroy", "true only with retainBucket: false (a retained bucket is never emptied)", True
    return None


RULES: tuple[Rule, ...] = (
    _schema_matches_image,
    _caches_apart_from_the_registry,
    _memory_within_limit("registryMemoryRequest", "registryMemoryLimit"),
    _memory_within_limit("redisMemoryRequest", "redisMemoryLimit"),
    _redis_maxmemory_below_limit,
    _kms_key_fits,
    _cache_credentials_together,
    _load_balancer_ip_provider,
    _metallb_pool_only_with_metallb,
    _source_ranges_need_a_load_balancer,
    _auth_keys_need_auth,
    _auth_needs_v3,
    _tls_secret_not_owned,
    _monitoring_needs_service_monitor,
    _alert_settings_need_the_rule,
    _tls_ca_needs_tls,
    _force_destroy_needs_an_unretained_bucket,
)
