"""Kubernetes objects as plain data (camelCase, exactly as the API server sees them).

Components pass these dicts to pulumi-kubernetes unchanged, so the offline render, the
policy tests and the schema validation look at exactly what the program deploys.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Optional

from registry_ha import auth
from registry_ha.registry_config import CONFIG_PATHS, METRICS_PATH, TLS_MOUNT, secret_files
from registry_ha.settings import DEBUG_PORT, REDIS_PORT, REGISTRY_PORT, CacheSettings, ExposureSettings, Settings
from registry_ha.validators import image_has_digest

PART_OF = "neural-hive-registry"
CHECKSUM_ANNOTATION = "checksum/config"
# Above 10000 (checkov CKV_K8S_40: no overlap with host users). The images do not care which UID runs
# them: registry:3 has no USER and reads only the mounted config (storage is S3); redis is started
# with `redis-server` directly (not the entrypoint that chowns and drops to uid 999) and writes only
# to its emptyDir; haproxy and docker_auth read their mounted config and write nothing.
REGISTRY_UID = 10001
REDIS_UID = 10002
REDIS_PASSWORD_FILE = "/etc/redis/password"

Role = Literal["private", "mirror"]
# Distribution 3.x exports traces to localhost:4318 by default and logs an error for each failed export.
REGISTRY_ENV = {"OTEL_TRACES_EXPORTER": "none"}


@dataclass(frozen=True)
class Names:
    """Object names per workload; the private registry's is `docker-registry` (`kubectl get svc docker-registry`)."""

    app: str  # app.kubernetes.io/name, Deployment and Service name
    config_secret: str
    metrics_service: str
    token_secret: str = ""  # the token server's config and signing key (private registry, authEnabled)

    @staticmethod
    def for_registry(settings: Settings, role: Role = "private", cache: Optional[CacheSettings] = None) -> "Names":
        app = settings.registry.service_name if cache is None else cache.service_name
        return Names(app=app, config_secret=f"{app}-config", metrics_service=f"{app}-metrics", token_secret=f"{app}-token")

    @staticmethod
    def for_redis() -> "Names":
        return Names(app="registry-redis", config_secret="registry-redis-config", metrics_service="")


def selector_labels(app: str, stack: str) -> dict:
    return {"app.kubernetes.io/name": app, "app.kubernetes.io/instance": f"registry-ha-{stack}"}


def labels(app: str, component: str, stack: str) -> dict:
    return {
        **selector_labels(app, stack),
        "app.kubernetes.io/component": component,
        "app.kubernetes.io/part-of": PART_OF,
        "app.kubernetes.io/managed-by": "pulumi",
    }


def metadata(name: str, namespace: str, app: str, component: str, stack: str, annotations: Optional[dict] = None) -> dict:
    meta = {"name": name, "namespace": namespace, "labels": labels(app, component, stack)}
    if annotations:
        meta["annotations"] = annotations
    return meta


def namespace_metadata(settings: Settings) -> dict:
    level = "restricted"
    return {
        "name": settings.namespace,
        "labels": {
            "app.kubernetes.io/part-of": PART_OF,
            "app.kubernetes.io/managed-by": "pulumi",
            "pod-security.kubernetes.io/enforce": level,
            "pod-security.kubernetes.io/enforce-version": "latest",
            "pod-security.kubernetes.io/audit": level,
            "pod-security.kubernetes.io/warn": level,
        },
    }


# --------------------------------------------------------------------------- security


def pod_security_context(uid: int) -> dict:
    return {
        "runAsNonRoot": True,
        "runAsUser": uid,
        "runAsGroup": uid,
        "fsGroup": uid,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def container_security_context(uid: int) -> dict:
    return {
        "runAsNonRoot": True,
        "runAsUser": uid,
        "runAsGroup": uid,
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "privileged": False,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def resources(cpu_request: str, memory_request: str, memory_limit: str) -> dict:
    # No CPU limit: throttling a registry mid-transfer hurts more than it protects.
    return {"requests": {"cpu": cpu_request, "memory": memory_request}, "limits": {"memory": memory_limit}}


# checkov's annotation, `checkov.io/skipN: <check>=<reason>`; checkov splits on '=', so a reason has none.
CHECKOV_NO_CPU_LIMIT = ("CKV_K8S_11", "no CPU limit on purpose: CFS throttling stalls transfers and probes; "
                        "CPU requests reserve the share")


def checkov_annotations(images: list[str], waivers: tuple[tuple[str, str], ...] = (CHECKOV_NO_CPU_LIMIT,)) -> dict:
    """Waivers for the checks this design fails on purpose, each with its reason. The digest checks are
    waived only while an image is pinned by tag: with name:tag@sha256:... they pass and no waiver is set."""
    skips = list(waivers)
    by_tag = sorted({image for image in images if not image_has_digest(image)})
    if by_tag:
        skips.append(("CKV_K8S_43", f"pinned by tag ({', '.join(by_tag)}); pin digests with the image keys as "
                                    "name:tag@sha256:<digest> (docs/security.md)"))
        skips.append(("CKV_K8S_15", "IfNotPresent: the stack pins each tag; a digest pin makes the pull policy moot"))
    if any(reason.count("=") for _, reason in skips):
        raise ValueError("a checkov skip reason must not contain '='")
    return {f"checkov.io/skip{i}": f"{check}={reason}" for i, (check, reason) in enumerate(skips, start=1)}


def registry_pod_images(settings: Settings, role: Role) -> list[str]:
    images = [settings.registry.image]
    if role == "private" and settings.access.auth_enabled:
        images += [settings.access.proxy_image, settings.access.token_server_image]
    return images


# --------------------------------------------------------------------------- exposure


def lb_annotations(exposure: ExposureSettings) -> dict:
    """Annotations that make the LoadBalancer internal for the configured provider."""
    provider = exposure.lb_provider
    annotations: dict = {}
    if provider == "aws":
        annotations["service.beta.kubernetes.io/aws-load-balancer-internal"] = "true"
        annotations["service.beta.kubernetes.io/aws-load-balancer-scheme"] = "internal"
    elif provider == "gcp":
        annotations["networking.gke.io/load-balancer-type"] = "Internal"
        annotations["cloud.google.com/load-balancer-type"] = "Internal"
    elif provider == "azure":
        annotations["service.beta.kubernetes.io/azure-load-balancer-internal"] = "true"
        if exposure.lb_ip:
            annotations["service.beta.kubernetes.io/azure-load-balancer-ipv4"] = exposure.lb_ip
    elif provider == "metallb":
        # MetalLB has no "internal" scheme: the pool decides; it must hold internal addresses.
        if exposure.metallb_pool:
            annotations["metallb.universe.tf/address-pool"] = exposure.metallb_pool
        if exposure.lb_ip:
            annotations["metallb.universe.tf/loadBalancerIPs"] = exposure.lb_ip
    return annotations


def service_is_load_balancer(exposure: ExposureSettings) -> bool:
    return exposure.lb_provider != "none"


def registry_service_spec(settings: Settings) -> dict:
    """The private registry's front door: internal LB on 5000 and NodePort 30500 (never the debug port)."""
    exposure = settings.exposure
    spec: dict = {
        "type": "LoadBalancer" if service_is_load_balancer(exposure) else "NodePort",
        "selector": selector_labels(settings.registry.service_name, settings.stack),
        "ports": [
            {
                "name": "http",
                "port": REGISTRY_PORT,
                "targetPort": "http",
                "protocol": "TCP",
                "nodePort": exposure.node_port,
            }
        ],
        # Cluster, not Local: <any node>:30500 must answer, the secondary address depends on it.
        "externalTrafficPolicy": "Cluster",
    }
    if exposure.lb_provider == "gcp" and exposure.lb_ip:
        spec["loadBalancerIP"] = exposure.lb_ip
    if exposure.lb_source_ranges and service_is_load_balancer(exposure):
        spec["loadBalancerSourceRanges"] = list(exposure.lb_source_ranges)
    return spec


def cache_service_spec(settings: Settings, cache: CacheSettings) -> dict:
    """A cache is ClusterIP only, never on a NodePort (an open proxy on a node's public address): pods
    use its DNS name, nodes' containerd its ClusterIP, which kube-proxy serves on every node."""
    spec: dict = {
        "type": "ClusterIP",
        "selector": selector_labels(cache.service_name, settings.stack),
        "ports": [{"name": "http", "port": REGISTRY_PORT, "targetPort": "http", "protocol": "TCP"}],
    }
    if cache.cluster_ip:
        spec["clusterIP"] = cache.cluster_ip
    return spec


def metrics_service_spec(app: str, stack: str) -> dict:
    return {
        "type": "ClusterIP",
        "selector": selector_labels(app, stack),
        "ports": [{"name": "metrics", "port": DEBUG_PORT, "targetPort": "debug", "protocol": "TCP"}],
    }


def service_monitor_spec(app: str, stack: str, namespace: str) -> dict:
    return {
        "selector": {"matchLabels": {**selector_labels(app, stack), "app.kubernetes.io/component": "metrics"}},
        "namespaceSelector": {"matchNames": [namespace]},
        "endpoints": [{"port": "metrics", "path": METRICS_PATH, "interval": "30s"}],
    }


# --------------------------------------------------------------------------- workloads


def _scheduling(settings: Settings, app: str, hard: bool) -> dict:
    selector = {"matchLabels": selector_labels(app, settings.stack)}
    host_term = {"labelSelector": selector, "topologyKey": "kubernetes.io/hostname"}
    if hard:
        anti_affinity = {"requiredDuringSchedulingIgnoredDuringExecution": [host_term]}
    else:
        anti_affinity = {
            "preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 100, "podAffinityTerm": host_term}]
        }
    spread = [
        {
            "maxSkew": 1,
            "topologyKey": "kubernetes.io/hostname",
            "whenUnsatisfiable": "DoNotSchedule" if hard else "ScheduleAnyway",
            "labelSelector": selector,
        }
    ]
    if settings.registry.zone_spread:
        # Soft: nodes without a zone label (bare metal) must still take pods.
        spread.append(
            {
                "maxSkew": 1,
                "topologyKey": "topology.kubernetes.io/zone",
                "whenUnsatisfiable": "ScheduleAnyway",
                "labelSelector": selector,
            }
        )
    return {"affinity": {"podAntiAffinity": anti_affinity}, "topologySpreadConstraints": spread}


def _drain_seconds(pre_stop: int) -> int:
    return max(pre_stop, 5)  # http.draintimeout


def registry_deployment_spec(settings: Settings, role: Role, checksum: str, cache: Optional[CacheSettings] = None) -> dict:
    """Deployment spec of a Distribution workload: the private registry or a cache (role mirror).

    With authEnabled (private registry) the pod has two more containers: the auth proxy on :5000 (it
    serves the token realm /auth and sends everything else to the registry on :5002, and ends TLS
    when tlsSecretName is set) and the token server (docker_auth) on :5003. The caches stay plain
    anonymous proxies: one container, no front."""
    names = Names.for_registry(settings, role, cache)
    config_path = CONFIG_PATHS[settings.registry.schema]
    config_dir = config_path.rsplit("/", 1)[0]
    pre_stop = settings.registry.pre_stop_seconds
    replicas = settings.registry.replicas if cache is None else cache.replicas
    component = "registry" if role == "private" else "mirror"
    tls_secret = settings.access.tls_secret_name if role == "private" else None
    token_auth = role == "private" and settings.access.auth_enabled
    registry_port = "registry" if token_auth else "http"
    registry_tls = bool(tls_secret) and not token_auth  # with auth, the proxy ends TLS
    container = {
        "name": "registry",
        "image": settings.registry.image,
        "imagePullPolicy": "IfNotPresent",
        "args": ["serve", config_path],
        "env": [{"name": name, "value": value} for name, value in REGISTRY_ENV.items()],
        "ports": [
            {"name": registry_port, "containerPort": auth.REGISTRY_BACKEND_PORT if token_auth else REGISTRY_PORT,
             "protocol": "TCP"},
            {"name": "debug", "containerPort": DEBUG_PORT, "protocol": "TCP"},
        ],
        # Readiness follows the storage health check: "/" answers 503 while S3 is failing.
        # With auth on, GET / still answers without credentials (Distribution's health handler).
        # With TLS the kubelet probes over HTTPS and does not verify the certificate.
        "readinessProbe": {
            "httpGet": {"path": "/", "port": registry_port, **({"scheme": "HTTPS"} if registry_tls else {})},
            "periodSeconds": 5,
            "timeoutSeconds": 3,
            "failureThreshold": 3,
        },
        # Liveness only asks whether the process accepts connections: an S3 outage must not
        # restart every replica at once.
        "livenessProbe": {
            "tcpSocket": {"port": registry_port},
            "initialDelaySeconds": 10,
            "periodSeconds": 10,
            "failureThreshold": 6,
        },
        # Keep serving while endpoints are removed everywhere, then drain (http.draintimeout).
        "lifecycle": _sleep_before_stop(pre_stop),
        "resources": resources(
            settings.registry.resources.cpu_request,
            settings.registry.resources.memory_request,
            settings.registry.resources.memory_limit,
        ),
        "securityContext": container_security_context(REGISTRY_UID),
        "volumeMounts": [
            {"name": "config", "mountPath": config_dir, "readOnly": True},
            {"name": "tmp", "mountPath": "/tmp"},
        ],
    }
    if not pre_stop:
        del container["lifecycle"]
    if registry_tls:
        container["volumeMounts"].append({"name": "tls", "mountPath": TLS_MOUNT, "readOnly": True})
    containers = [container]
    volumes = [
        {
            "name": "config",
            "secret": {
                "secretName": names.config_secret,
                "defaultMode": 0o440,
                # Each file with its own mode: the cache's credential helper must be executable.
                "items": [
                    {"key": key, "path": key, "mode": mode}
                    for key, mode in secret_files(settings, role, cache=cache).items()
                ],
            },
        },
        {"name": "tmp", "emptyDir": {"sizeLimit": "256Mi"}},
    ]
    if token_auth:
        containers += [auth_proxy_container(settings), token_server_container(settings)]
        volumes += [
            _secret_volume("auth-proxy", names.config_secret, {auth.PROXY_CONFIG_KEY: "haproxy.cfg"}),
            _secret_volume("token-server", names.token_secret,
                           {key: key for key in (auth.TOKEN_CONFIG_KEY, auth.TOKEN_KEY_KEY, auth.TOKEN_CERT_KEY)}),
        ]
    if tls_secret:
        # An existing kubernetes.io/tls Secret (cert-manager's, say): only its two keys, group-readable
        # by fsGroup. Read at start: a renewed certificate needs a rollout. haproxy takes the key from
        # <certificate>.key next to the certificate.
        paths = ({"tls.crt": auth.PROXY_TLS_PEM, "tls.key": f"{auth.PROXY_TLS_PEM}.key"} if token_auth
                 else {"tls.crt": "tls.crt", "tls.key": "tls.key"})
        volumes.append(_secret_volume("tls", tls_secret, paths))
    pod_spec: dict = {
        # A Service named docker-registry would otherwise inject DOCKER_REGISTRY_* and, for
        # names starting with "registry", REGISTRY_* variables that Distribution parses as config.
        "enableServiceLinks": False,
        "automountServiceAccountToken": False,
        "securityContext": pod_security_context(REGISTRY_UID),
        "terminationGracePeriodSeconds": pre_stop + _drain_seconds(pre_stop) + 10,
        "containers": containers,
        "volumes": volumes,
    }
    if role == "private":
        hard = settings.registry.anti_affinity == "required"
        pod_spec.update(_scheduling(settings, names.app, hard))
    return {
        "replicas": replicas,
        "revisionHistoryLimit": 5,
        "selector": {"matchLabels": selector_labels(names.app, settings.stack)},
        "strategy": {"type": "RollingUpdate", "rollingUpdate": rolling_update(settings, role)},
        "template": {
            "metadata": {
                "labels": labels(names.app, component, settings.stack),
                "annotations": {CHECKSUM_ANNOTATION: checksum},
            },
            "spec": pod_spec,
        },
    }


def rolling_update(settings: Settings, role: Role) -> dict:
    """How a Deployment replaces its pods. Surge by default: the new pod is Ready before an old one
    goes, so capacity never drops. With required anti-affinity a surge pod needs a node without a
    replica, which a cluster of exactly `replicas` nodes does not have: the rollout would hang with
    the new pod Pending. Then one old pod goes first and its replacement takes the freed node."""
    if role == "private" and settings.registry.anti_affinity == "required":
        return {"maxUnavailable": 1, "maxSurge": 0}
    return {"maxUnavailable": 0, "maxSurge": 1}


def _sleep_before_stop(seconds: int) -> dict:
    return {"preStop": {"exec": {"command": ["sleep", str(seconds)]}}} if seconds else {}


def _secret_volume(name: str, secret_name: str, paths: dict[str, str]) -> dict:
    return {
        "name": name,
        "secret": {
            "secretName": secret_name,
            "defaultMode": 0o440,
            "items": [{"key": key, "path": path} for key, path in paths.items()],
        },
    }


def auth_proxy_container(settings: Settings) -> dict:
    """haproxy on :5000: /auth to the token server, the rest to the registry (auth.proxy_config)."""
    pre_stop = settings.registry.pre_stop_seconds
    tls = settings.access.tls
    container = {
        "name": "auth-proxy",
        "image": settings.access.proxy_image,
        "imagePullPolicy": "IfNotPresent",
        "command": ["haproxy", "-db", "-f", f"{auth.PROXY_CONFIG_DIR}/haproxy.cfg"],
        "ports": [{"name": "http", "containerPort": REGISTRY_PORT, "protocol": "TCP"}],
        # Through the proxy to the registry's health check: the pod is ready when both are.
        "readinessProbe": {
            "httpGet": {"path": "/", "port": "http", **({"scheme": "HTTPS"} if tls else {})},
            "periodSeconds": 5,
            "timeoutSeconds": 3,
            "failureThreshold": 3,
        },
        "livenessProbe": {"tcpSocket": {"port": "http"}, "initialDelaySeconds": 5, "periodSeconds": 10},
        # Outlives the registry's drain: requests in flight keep their way in.
        "lifecycle": _sleep_before_stop(pre_stop + _drain_seconds(pre_stop)),
        "resources": resources("50m", "32Mi", "128Mi"),
        "securityContext": container_security_context(REGISTRY_UID),
        "volumeMounts": [{"name": "auth-proxy", "mountPath": auth.PROXY_CONFIG_DIR, "readOnly": True}],
    }
    if tls:
        container["volumeMounts"].append({"name": "tls", "mountPath": auth.PROXY_TLS_DIR, "readOnly": True})
    return container


def token_server_container(settings: Settings) -> dict:
    """docker_auth on :5003 (only the proxy sends it traffic: the NetworkPolicies admit :5000 and :5001)."""
    pre_stop = settings.registry.pre_stop_seconds
    return {
        "name": "token-server",
        "image": settings.access.token_server_image,
        "imagePullPolicy": "IfNotPresent",
        # --logtostderr: glog would otherwise write log files under /tmp, and the root is read-only.
        "args": ["--logtostderr", f"{auth.TOKEN_SERVER_CONFIG_DIR}/{auth.TOKEN_CONFIG_KEY}"],
        "ports": [{"name": "token", "containerPort": auth.TOKEN_SERVER_PORT, "protocol": "TCP"}],
        "readinessProbe": {"httpGet": {"path": "/", "port": "token"}, "periodSeconds": 10, "timeoutSeconds": 3},
        "livenessProbe": {"tcpSocket": {"port": "token"}, "initialDelaySeconds": 5, "periodSeconds": 10},
        **({"lifecycle": _sleep_before_stop(pre_stop)} if pre_stop else {}),
        # Each token request checks a bcrypt password (cost 10: about 0.1 s of one core).
        "resources": resources("50m", "32Mi", "128Mi"),
        "securityContext": container_security_context(REGISTRY_UID),
        "volumeMounts": [{"name": "token-server", "mountPath": auth.TOKEN_SERVER_CONFIG_DIR, "readOnly": True}],
    }


def pdb_spec(app: str, stack: str) -> dict:
    # One voluntary eviction at a time: node drains proceed, two replicas keep serving.
    return {"maxUnavailable": 1, "selector": {"matchLabels": selector_labels(app, stack)}}


def redis_conf(settings: Settings, password: str) -> str:
    """redis.conf for a cache: no persistence, LRU over all keys (the registry sets no TTLs)."""
    return "\n".join(
        [
            "bind * -::*",
            f"port {REDIS_PORT}",
            "protected-mode yes",
            f"requirepass {password}",
            f"maxmemory {settings.redis.max_memory}",
            "maxmemory-policy allkeys-lru",
            'save ""',
            "appendonly no",
            "dir /data",
            "",
        ]
    )


def redis_deployment_spec(settings: Settings, checksum: str) -> dict:
    names = Names.for_redis()
    container = {
        "name": "redis",
        "image": settings.redis.image,
        "imagePullPolicy": "IfNotPresent",
        "command": ["redis-server", "/etc/redis/redis.conf"],
        "ports": [{"name": "redis", "containerPort": REDIS_PORT, "protocol": "TCP"}],
        "readinessProbe": {
            # The password comes from the mounted file into the probe's own environment (redis-cli reads
            # REDISCLI_AUTH): not in the container's env, not on a command line.
            "exec": {"command": ["sh", "-c", f'REDISCLI_AUTH="$(cat {REDIS_PASSWORD_FILE})" redis-cli ping | grep -q PONG']},
            "periodSeconds": 5,
            "timeoutSeconds": 2,
        },
        "livenessProbe": {"tcpSocket": {"port": "redis"}, "initialDelaySeconds": 5, "periodSeconds": 10},
        "resources": resources(
            settings.redis.resources.cpu_request,
            settings.redis.resources.memory_request,
            settings.redis.resources.memory_limit,
        ),
        "securityContext": container_security_context(REDIS_UID),
        "volumeMounts": [
            {"name": "config", "mountPath": "/etc/redis", "readOnly": True},
            {"name": "data", "mountPath": "/data"},
        ],
    }
    return {
        "replicas": 1,
        "revisionHistoryLimit": 5,
        "selector": {"matchLabels": selector_labels(names.app, settings.stack)},
        "strategy": {"type": "Recreate"},
        "template": {
            "metadata": {
                "labels": labels(names.app, "cache", settings.stack),
                "annotations": {CHECKSUM_ANNOTATION: checksum},
            },
            "spec": {
                "enableServiceLinks": False,
                "automountServiceAccountToken": False,
                "securityContext": pod_security_context(REDIS_UID),
                "containers": [container],
                "volumes": [
                    {
                        "name": "config",
                        "secret": {
                            "secretName": names.config_secret,
                            "defaultMode": 0o440,
                            "items": [{"key": "redis.conf", "path": "redis.conf"},
                                      {"key": "password", "path": REDIS_PASSWORD_FILE.rsplit("/", 1)[1]}],
                        },
                    },
                    {"name": "data", "emptyDir": {"sizeLimit": "64Mi"}},
                ],
            },
        },
    }


def redis_service_spec(stack: str) -> dict:
    return {
        "type": "ClusterIP",
        "selector": selector_labels(Names.for_redis().app, stack),
        "ports": [{"name": "redis", "port": REDIS_PORT, "targetPort": "redis", "protocol": "TCP"}],
    }


def redis_address(settings: Settings) -> str:
    return f"{Names.for_redis().app}.{settings.namespace}.svc:{REDIS_PORT}"


# --------------------------------------------------------------------------- network policies


def network_policy_specs(settings: Settings) -> dict[str, dict]:
    """name -> NetworkPolicy spec. Default deny, then exactly the flows the design needs."""
    stack = settings.stack
    registry_apps = [settings.registry.service_name, *(cache.service_name for cache in settings.caches)]
    registry_pods = {
        "matchExpressions": [
            {"key": "app.kubernetes.io/name", "operator": "In", "values": registry_apps},
            {"key": "app.kubernetes.io/instance", "operator": "In", "values": [f"registry-ha-{stack}"]},
        ]
    }
    clients = [{"namespaceSelector": {}}] + [{"ipBlock": {"cidr": cidr}} for cidr in settings.network.client_cidrs]
    return {
        "default-deny-ingress": {"podSelector": {}, "policyTypes": ["Ingress"]},
        "registry-allow-clients": {
            "podSelector": registry_pods,
            "policyTypes": ["Ingress"],
            "ingress": [{"from": clients, "ports": [{"protocol": "TCP", "port": REGISTRY_PORT}]}],
        },
        "redis-allow-registries": {
            "podSelector": {"matchLabels": selector_labels(Names.for_redis().app, stack)},
            "policyTypes": ["Ingress"],
            "ingress": [
                {"from": [{"podSelector": registry_pods}], "ports": [{"protocol": "TCP", "port": REDIS_PORT}]}
            ],
        },
        "metrics-allow-monitoring": {
            "podSelector": registry_pods,
            "policyTypes": ["Ingress"],
            "ingress": [
                {
                    "from": [
                        {
                            "namespaceSelector": {
                                "matchLabels": {"kubernetes.io/metadata.name": settings.network.monitoring_namespace}
                            }
                        }
                    ],
                    "ports": [{"protocol": "TCP", "port": DEBUG_PORT}],
                }
            ],
        },
    }
