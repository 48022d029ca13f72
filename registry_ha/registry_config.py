"""The Distribution `config.yml`, built as data from settings, endpoints and credentials.

The program stores the result in a Kubernetes Secret; the local sandbox writes the
same document to disk with only addresses, endpoints and the schema overridden.
Keys differ between Distribution 2.8 ("v2") and 3.x ("v3").
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from urllib.parse import urlsplit
from typing import Literal, Optional

import yaml

from registry_ha.auth import BUNDLE_KEY, JWKS_KEY, REGISTRY_BACKEND_PORT, registry_token_auth
from registry_ha.settings import DEBUG_PORT, REGISTRY_PORT, CacheSettings, Settings

Role = Literal["private", "mirror"]

CONFIG_PATHS = {"v2": "/etc/docker/registry/config.yml", "v3": "/etc/distribution/config.yml"}
PRIVATE_ROOT_DIRECTORY = "/registry"  # each cache has its own: CacheSettings.root_directory
METRICS_PATH = "/metrics"
CONFIG_KEY = "config.yml"
CREDENTIAL_HELPER_KEY = "credential-helper"  # the cache's proxy.exec program (v3), next to config.yml
UPSTREAM_CREDENTIALS_KEY = "upstream-credentials.json"  # what the helper prints for the upstream's hosts
TLS_MOUNT = "/etc/registry-tls"  # the kubernetes.io/tls Secret (tls.crt, tls.key), mounted read-only
MINIMUM_TLS = "tls1.2"


@dataclass(frozen=True)
class Endpoints:
    """Where things are. The only part of the config the sandbox replaces."""

    s3_bucket: str
    s3_region: str
    redis_addr: str
    s3_endpoint: Optional[str] = None  # an S3-compatible server; AWS when None
    listen_addr: str = f":{REGISTRY_PORT}"
    debug_addr: str = f":{DEBUG_PORT}"
    proxy_remote_url: Optional[str] = None  # None: the cache's remote_url
    listen_net: str = "tcp"  # "unix": listen_addr is a socket path (the sandbox's replicas behind their proxy)
    tls_certificate: Optional[str] = None  # set (with tls_key): http.tls, the registry serves HTTPS
    tls_key: Optional[str] = None
    config_dir: Optional[str] = None  # where the Secret's other files sit (default: the image's config dir)


def pod_security_paths(settings: Settings, role: Role, schema: Optional[str] = None) -> dict:
    """In-pod values of Endpoints' listen/TLS fields, from the access settings (private registry only:
    the caches stay anonymous plain HTTP, nodes' containerd pulls through them).

    With auth the pod's auth proxy owns :5000 (it serves the token realm) and ends TLS; the registry
    listens behind it."""
    if role != "private":
        return {}
    if settings.access.auth_enabled:
        return {"listen_addr": f":{REGISTRY_BACKEND_PORT}"}
    if settings.access.tls:
        return {"tls_certificate": f"{TLS_MOUNT}/tls.crt", "tls_key": f"{TLS_MOUNT}/tls.key"}
    return {}


@dataclass(frozen=True)
class Credentials:
    http_secret: str
    redis_password: str
    s3_access_key: str
    s3_secret_key: str
    upstream_username: Optional[str] = None
    upstream_password: Optional[str] = None


def redis_section(settings: Settings, schema: str, endpoints: Endpoints, credentials: Credentials, db: int) -> dict:
    timeout = settings.redis.timeout
    common = {
        "password": credentials.redis_password,
        "db": db,
        # Without timeouts a hung Redis stalls every pull for 20 s or more.
        "dialtimeout": timeout,
        "readtimeout": timeout,
        "writetimeout": timeout,
    }
    if schema == "v3":
        return {
            "addrs": [endpoints.redis_addr],
            **common,
            # go-redis v9 retries each command 3 times with backoff: with Redis down a pull took 1.6 s
            # instead of 0.03 s. A cache miss falls back to storage, so a failed lookup is cheap: no retries.
            "maxretries": -1,
            # go-redis waits readtimeout + 1 s for a free connection by default; a cache that is slow
            # to hand one out is a cache miss too.
            "pooltimeout": timeout,
            "poolsize": 64,
            "maxidleconns": 16,
            "connmaxidletime": "300s",
        }
    return {
        "addr": endpoints.redis_addr,
        **common,
        "pool": {"maxidle": 16, "maxactive": 64, "idletimeout": "300s"},
    }


def root_directory(role: Role, cache: Optional[CacheSettings]) -> str:
    return PRIVATE_ROOT_DIRECTORY if role == "private" else cache.root_directory


def s3_section(settings: Settings, schema: str, root: str, endpoints: Endpoints, credentials: Credentials) -> dict:
    s3: dict = {
        "region": endpoints.s3_region,
        "bucket": endpoints.s3_bucket,
        "accesskey": credentials.s3_access_key,
        "secretkey": credentials.s3_secret_key,
        "encrypt": True,
        "secure": True,
        "v4auth": True,
        "rootdirectory": root,
        # The bucket disables ACLs (BucketOwnerEnforced); that accepts only this canned ACL.
        "objectacl": "bucket-owner-full-control",
    }
    if settings.storage.encryption == "sse-kms":
        # The bucket's default encryption (the stack's KMS key, bucket key on) encrypts every object,
        # and its policy refuses any other key. The registry sends no SSE headers of its own: 3.1.1
        # re-creates a multipart upload without its `keyid` when a PATCH follows a chunk under 5 MiB,
        # so objects would land under the AWS-managed key instead of the stack's.
        s3["encrypt"] = False
    endpoint = endpoints.s3_endpoint or settings.storage.endpoint
    if endpoint:
        s3["regionendpoint"] = endpoint
        s3["secure"] = endpoint.startswith("https://")
        if schema == "v3":
            # v3 no longer implies path-style addressing from regionendpoint (distribution#4528).
            s3["forcepathstyle"] = True
    return s3


def build_registry_config(
    settings: Settings,
    role: Role,
    endpoints: Endpoints,
    credentials: Credentials,
    schema: Optional[str] = None,
    cache: Optional[CacheSettings] = None,
) -> dict:
    """Return the Distribution configuration document for the private registry or a cache (role
    mirror, `cache` says which)."""
    schema = schema or settings.registry.schema
    if schema not in CONFIG_PATHS:
        raise ValueError(f"schema must be v2 or v3, not {schema!r}")
    if role not in ("private", "mirror"):
        raise ValueError(f"role must be private or mirror, not {role!r}")
    if (role == "mirror") != (cache is not None):
        raise ValueError("a cache's config needs its CacheSettings (and only a cache's)")

    storage: dict = {
        "s3": s3_section(settings, schema, root_directory(role, cache), endpoints, credentials),
        # Needed for garbage collection of the private registry and for the cache's expiry.
        "delete": {"enabled": True},
        "redirect": {"disable": not settings.registry.storage_redirect},
        "cache": {"blobdescriptor": "redis"},
        "maintenance": {
            "uploadpurging": {
                "enabled": role == "private",
                "age": settings.registry.upload_purge_age,
                "interval": "24h",
                "dryrun": False,
            }
        },
    }
    if role == "private" and settings.registry.read_only:
        # Pushes and deletes answer 405 while `registry garbage-collect` runs (deploy-registry-ha.sh gc).
        # Never on a cache: a read-only cache could not store what it fetches.
        storage["maintenance"]["readonly"] = {"enabled": True}
    config: dict = {
        "version": 0.1,
        "log": {
            "level": settings.registry.log_level,
            "formatter": "json",
            "fields": {"service": f"registry-{role}", "environment": settings.stack},
        },
        "storage": storage,
        "http": {
            **({"net": endpoints.listen_net} if endpoints.listen_net != "tcp" else {}),
            "addr": endpoints.listen_addr,
            # One secret for every replica: upload state signed by one replica must verify on the next.
            "secret": credentials.http_secret,
            "draintimeout": f"{max(settings.registry.pre_stop_seconds, 5)}s",
            "headers": {"X-Content-Type-Options": ["nosniff"]},
            "debug": {
                "addr": endpoints.debug_addr,
                "prometheus": {"enabled": True, "path": METRICS_PATH},
            },
        },
        "redis": redis_section(
            settings,
            schema,
            endpoints,
            credentials,
            settings.redis.registry_db if cache is None else cache.redis_db,
        ),
        "health": {"storagedriver": {"enabled": True, "interval": "10s", "threshold": 3}},
    }
    if (endpoints.tls_certificate is None) != (endpoints.tls_key is None):
        raise ValueError("tls_certificate and tls_key go together")
    if endpoints.tls_certificate:
        # The readiness probe and the LB health checks speak HTTPS too (they do not verify).
        config["http"]["tls"] = {
            "certificate": endpoints.tls_certificate,
            "key": endpoints.tls_key,
            "minimumtls": MINIMUM_TLS,
        }
    if role == "private" and settings.access.auth_enabled:
        if schema != "v3":
            raise ValueError("token auth needs the 3.x schema (2.8 announces an https realm on any scheme)")
        # Every API call needs a token with the right scope; GET / (the health check) stays open.
        config["auth"] = registry_token_auth(settings, _config_dir(schema, endpoints))
    if cache is not None:
        proxy: dict = {"remoteurl": endpoints.proxy_remote_url or cache.remote_url}
        if schema == "v3":
            # proxy.username/password make 3.x GET <remoteurl>/v2/ while starting and panic when the
            # upstream is unreachable: a Docker Hub or egress outage would crash-loop the cache and lose
            # what it holds exactly when it matters. proxy.exec asks a credential helper per request
            # instead, so the cache starts, serves what it has cached, and uses the upstream once back.
            proxy["exec"] = {"command": f"{_config_dir(schema, endpoints)}/{CREDENTIAL_HELPER_KEY}"}
            proxy["ttl"] = cache.ttl
        elif credentials.upstream_username:
            # 2.8 has no proxy.exec: its cache needs the upstream reachable to start (documented).
            proxy["username"] = credentials.upstream_username
            proxy["password"] = credentials.upstream_password or ""
        config["proxy"] = proxy
    return config


def _config_dir(schema: str, endpoints: Endpoints) -> str:
    return endpoints.config_dir or CONFIG_PATHS[schema].rsplit("/", 1)[0]


def secret_files(
    settings: Settings, role: Role, schema: Optional[str] = None, cache: Optional[CacheSettings] = None
) -> dict[str, int]:
    """Files of a workload's config Secret -> file mode (the helper must be executable)."""
    schema = schema or settings.registry.schema
    files = {CONFIG_KEY: 0o440}
    if role == "private" and settings.access.auth_enabled:
        files[BUNDLE_KEY] = 0o440  # the signing certificates, and the same keys as a JWKS
        files[JWKS_KEY] = 0o440
    if cache is not None and schema == "v3":
        files[CREDENTIAL_HELPER_KEY] = 0o550
        if cache.username:
            files[UPSTREAM_CREDENTIALS_KEY] = 0o440
    return files


def credential_hosts(remote_url: str) -> tuple[str, str]:
    """(the upstream's host, the domain whose hosts may receive its credentials).

    The token realm usually sits on a sibling host (registry-1.docker.io -> auth.docker.io): the
    helper answers for the upstream's own host and hosts under its last two labels, and with empty
    credentials for anything else, as 3.1.1's own realm check does for proxy.username/password."""
    host = urlsplit(remote_url).hostname or ""
    labels = host.split(".")
    is_ip = host.replace(".", "").isdigit() or ":" in host
    return host, host if is_ip or len(labels) < 2 else ".".join(labels[-2:])


def credential_helper_script(cache: CacheSettings, schema: str, endpoints: Endpoints) -> str:
    """The cache's proxy.exec program: docker-credential-helpers' `get` (server host on stdin, JSON out)."""
    remote = endpoints.proxy_remote_url or cache.remote_url
    host, domain = credential_hosts(remote)
    credentials_file = f"{_config_dir(schema, endpoints)}/{UPSTREAM_CREDENTIALS_KEY}"
    anonymous = json.dumps({"Username": "", "Secret": ""})
    lines = [
        "#!/bin/sh",
        "# Credential helper of the pull-through cache (Distribution proxy.exec). Anonymous unless",
        f"# {UPSTREAM_CREDENTIALS_KEY} exists; credentials only for {host} and hosts under {domain}.",
        '[ "$1" = get ] || { echo "usage: $0 get" >&2; exit 1; }',
        'read -r server || true',
        'server="${server#*://}"; server="${server%%/*}"; server="${server%%:*}"',
        'case "$server" in',
        f'  {host}|{domain}|*.{domain})',
        f'    if [ -r {credentials_file} ]; then cat {credentials_file}; echo; exit 0; fi ;;',
        "esac",
        f"echo '{anonymous}'",
        "",
    ]
    return "\n".join(lines)


def upstream_credentials_json(username: str, password: str) -> str:
    return json.dumps({"Username": username, "Secret": password})


def dump_config(config: dict) -> str:
    return yaml.safe_dump(config, sort_keys=False, default_flow_style=False)


def config_checksum(text: str) -> str:
    """Stored as a pod-template annotation: any change to config.yml rolls the pods."""
    return hashlib.sha256(text.encode()).hexdigest()
