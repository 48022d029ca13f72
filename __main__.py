"""registry-ha: a highly available private registry for the Neural Hive Mind cluster.

    clients ──> internal LB registry.neural-hive.local:5000 ─┐      ┌─> S3 bucket (SSE, TLS-only)
            └─> <node>:30500 (NodePort) ─────────────────────┼─> docker-registry x3 ─┤
                 (authEnabled: /auth -> token server in each  │      └─> Redis (blob descriptors, db 0)
                  pod; push/pull/delete by role)              │
    nodes ───> <cache ClusterIP>:5000, one cache per upstream ┘  each cache: own S3 prefix, own Redis db
               (docker.io, ghcr.io, ...) ──> the upstream
    node configurator (opt-in DaemonSet) ──> /etc/containerd/certs.d/<registry>/hosts.toml on every node
    Prometheus ──> :5001/metrics (ServiceMonitor) ──> alerts (PrometheusRule), Grafana dashboard (ConfigMap)
"""
import pulumi

from components.auth import TokenAuth, TokenAuthArgs
from components.monitoring import Monitoring, MonitoringArgs
from components.namespace import RegistryNamespace, RegistryNamespaceArgs
from components.network import NetworkPolicies, NetworkPoliciesArgs
from components.nodes import NodeConfigurator, NodeConfiguratorArgs
from components.redis import RedisCache, RedisCacheArgs
from components.registry import Registry, RegistryArgs
from components.storage import RegistryStorage, RegistryStorageArgs
from registry_ha.containerd import cluster_endpoints, node_files, url_host
from registry_ha.settings import REGISTRY_PORT, from_pulumi_config

settings = from_pulumi_config()

namespace = RegistryNamespace("namespace", RegistryNamespaceArgs(settings=settings))
storage = RegistryStorage("storage", RegistryStorageArgs(settings=settings.storage, stack=settings.stack))
redis = RedisCache("redis", RedisCacheArgs(settings=settings, namespace=namespace.name))
token_auth = (
    TokenAuth("auth", TokenAuthArgs(settings=settings, namespace=namespace.name))
    if settings.access.auth_enabled
    else None
)


def registry_args(role: str, cache=None) -> RegistryArgs:
    return RegistryArgs(
        settings=settings,
        role=role,
        namespace=namespace.name,
        bucket_name=storage.bucket_name,
        access_key_id=storage.access_key_id,
        secret_access_key=storage.secret_access_key,
        redis_address=redis.address,
        redis_password=redis.password,
        cache=cache,
        token_auth=token_auth if role == "private" else None,
    )


registry = Registry("private", registry_args("private"))
# One component per upstream, named after its cache (dockerhub-cache, ghcr-cache, ...): adding or
# removing a cache leaves the others' resources as they are.
caches = {cache.name: Registry(cache.component_name, registry_args("mirror", cache)) for cache in settings.caches}
network = NetworkPolicies("network", NetworkPoliciesArgs(settings=settings, namespace=namespace.name))
if settings.monitoring.enabled:
    Monitoring("monitoring", MonitoringArgs(settings=settings, namespace=namespace.name))

cache_ips = pulumi.Output.all(*[c.cluster_ip for c in caches.values()]).apply(lambda ips: dict(zip(caches, ips)))
# With authEnabled the private registry's hosts.toml carry the pull-only node identity (files 0600, a
# secret Output); containerd 2.1+ sends it to the token realm, older nodes need pullSecretNamespaces.
node_authorization = token_auth.node_authorization if token_auth is not None else None
files = pulumi.Output.all(cache_ips, node_authorization).apply(
    lambda v: node_files(settings, cluster_endpoints(settings, v[0]), authorization=v[1])
)
if settings.nodes.configurator != "off":
    NodeConfigurator("node-configurator", NodeConfiguratorArgs(settings=settings, files=files))

pulumi.export("registryAddress", settings.registry_address)
pulumi.export("secondaryAddress", settings.secondary_address)
pulumi.export("loadBalancerAddress", registry.load_balancer_address)
pulumi.export(
    "hostsLine",
    registry.load_balancer_address.apply(
        lambda address: f"{address} {settings.exposure.hostname}" if address else None
    ),
)
# upstream host -> the address nodes (containerd) use for its cache: <ClusterIP>:5000
pulumi.export(
    "mirrorAddress",
    cache_ips.apply(lambda ips: {settings.cache(name).host: f"{url_host(ip)}:{REGISTRY_PORT}" for name, ip in ips.items() if ip}),
)
pulumi.export("bucketName", storage.bucket_name)
pulumi.export("region", settings.storage.region)
pulumi.export("iamUserName", storage.user_name)
pulumi.export("namespace", namespace.name)
if token_auth is not None:
    # {user: password}, a secret output (`pulumi stack output --show-secrets registryCredentials`).
    pulumi.export("registryCredentials", token_auth.credentials)
