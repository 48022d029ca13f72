"""registry-ha: a highly available private registry for the Neural Hive Mind cluster.

    clients ──> internal LB registry.neural-hive.local:5000 ─┐      ┌─> S3 bucket (SSE, TLS-only)
            └─> <node>:30500 (NodePort) ─────────────────────┼─> docker-registry x3 ─┤
                 (authEnabled: /auth -> token server in each  │      └─> Redis (blob descriptors, db 0)
                  pod; push/pull/delete by role)              │
    nodes ───> docker-registry-mirror:5000 ──> Docker Hub    ─┘  cache: own S3 prefix, Redis db 1
"""
import pulumi

from components.auth import TokenAuth, TokenAuthArgs
from components.namespace import RegistryNamespace, RegistryNamespaceArgs
from components.network import NetworkPolicies, NetworkPoliciesArgs
from components.redis import RedisCache, RedisCacheArgs
from components.registry import Registry, RegistryArgs
from components.storage import RegistryStorage, RegistryStorageArgs
from registry_ha.settings import from_pulumi_config

settings = from_pulumi_config()

namespace = RegistryNamespace("namespace", RegistryNamespaceArgs(settings=settings))
storage = RegistryStorage("storage", RegistryStorageArgs(settings=settings.storage, stack=settings.stack))
redis = RedisCache("redis", RedisCacheArgs(settings=settings, namespace=namespace.name))
token_auth = (
    TokenAuth("auth", TokenAuthArgs(settings=settings, namespace=namespace.name))
    if settings.access.auth_enabled
    else None
)


def registry_args(role: str) -> RegistryArgs:
    return RegistryArgs(
        settings=settings,
        role=role,
        namespace=namespace.name,
        bucket_name=storage.bucket_name,
        access_key_id=storage.access_key_id,
        secret_access_key=storage.secret_access_key,
        redis_address=redis.address,
        redis_password=redis.password,
        token_auth=token_auth if role == "private" else None,
    )


registry = Registry("private", registry_args("private"))
mirror = Registry("dockerhub-cache", registry_args("mirror")) if settings.mirror.enabled else None
network = NetworkPolicies("network", NetworkPoliciesArgs(settings=settings, namespace=namespace.name))

pulumi.export("registryAddress", settings.registry_address)
pulumi.export("secondaryAddress", settings.secondary_address)
pulumi.export("loadBalancerAddress", registry.load_balancer_address)
pulumi.export(
    "hostsLine",
    registry.load_balancer_address.apply(
        lambda address: f"{address} {settings.exposure.hostname}" if address else None
    ),
)
pulumi.export("mirrorAddress", (mirror.node_address or mirror.cluster_address) if mirror else None)
pulumi.export("bucketName", storage.bucket_name)
pulumi.export("region", settings.storage.region)
pulumi.export("iamUserName", storage.user_name)
pulumi.export("namespace", namespace.name)
if token_auth is not None:
    # {user: password}, a secret output (`pulumi stack output --show-secrets registryCredentials`).
    pulumi.export("registryCredentials", token_auth.credentials)
