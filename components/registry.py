"""A CNCF Distribution workload: the private registry, or one pull-through cache per upstream.

They are separate instances of this component: a registry in proxy mode refuses every push
(405 UNSUPPORTED), and Distribution proxies exactly one upstream per process. Each gets its own
S3 rootdirectory and its own Redis db: a cache sharing the private registry's db was seen
answering 200 with 0-byte blobs it never stored.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Optional

import pulumi
import pulumi_kubernetes as k8s
import pulumi_random as random

from registry_ha.gc_job import COMPONENT as GC_COMPONENT
from registry_ha.gc_job import gc_app, gc_report_cronjob_spec, report_name
from registry_ha import auth
from registry_ha.k8s import (
    Names,
    Role,
    checkov_annotations,
    lb_annotations,
    metadata,
    metrics_service_spec,
    cache_service_spec,
    pdb_spec,
    registry_deployment_spec,
    registry_pod_images,
    registry_service_spec,
    service_monitor_spec,
)
from registry_ha.registry_config import (
    CONFIG_KEY,
    CREDENTIAL_HELPER_KEY,
    UPSTREAM_CREDENTIALS_KEY,
    Credentials,
    Endpoints,
    build_registry_config,
    config_checksum,
    credential_helper_script,
    dump_config,
    pod_security_paths,
    secret_files,
    upstream_credentials_json,
)
from registry_ha.settings import REGISTRY_PORT, CacheSettings, Settings

if TYPE_CHECKING:
    from components.auth import TokenAuth


@dataclass
class RegistryArgs:
    settings: Settings
    role: Role
    namespace: pulumi.Input[str]
    bucket_name: pulumi.Input[str]
    access_key_id: pulumi.Input[str]
    secret_access_key: pulumi.Input[str]
    redis_address: str
    redis_password: pulumi.Input[str]
    cache: Optional[CacheSettings] = None  # role mirror: which cache
    token_auth: Optional["TokenAuth"] = None  # the private registry with authEnabled


class Registry(pulumi.ComponentResource):
    service_name: str
    cluster_address: str
    cluster_ip: pulumi.Output[str]  # what nodes dial (kube-proxy serves it on every node)
    load_balancer_address: pulumi.Output[Optional[str]]

    def __init__(self, name: str, args: RegistryArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("registry-ha:registry:Registry", name, None, opts)
        settings, role, cache = args.settings, args.role, args.cache
        if (role == "mirror") != (cache is not None):
            raise ValueError("a cache (role mirror) needs its CacheSettings, and only a cache")
        names = Names.for_registry(settings, role, cache)
        component = "registry" if role == "private" else "mirror"
        child = pulumi.ResourceOptions(parent=self)

        def meta(object_name: str, object_component: str = component, annotations: Optional[dict] = None):
            return pulumi.Output.from_input(args.namespace).apply(
                lambda ns: metadata(object_name, ns, names.app, object_component, settings.stack, annotations)
            )

        # One secret for all replicas, stable across updates (a per-pod or per-render secret
        # breaks uploads whose requests land on different replicas: BLOB_UPLOAD_INVALID).
        self.http_secret = random.RandomPassword(f"{name}-http-secret", length=48, special=False, opts=child)

        token_auth = args.token_auth if role == "private" else None
        if (token_auth is not None) != (role == "private" and settings.access.auth_enabled):
            raise ValueError("the private registry takes token_auth exactly when authEnabled is set")
        paths = pod_security_paths(settings, role)

        upstream_password = cache.password if cache else None
        upstream_username = cache.username if cache else None
        endpoints = Endpoints(
            s3_bucket="", s3_region=settings.storage.region, redis_addr=args.redis_address, **paths
        )
        config_text = pulumi.Output.all(
            self.http_secret.result,
            args.redis_password,
            args.bucket_name,
            args.access_key_id,
            args.secret_access_key,
            upstream_password,
        ).apply(
            lambda v: dump_config(
                build_registry_config(
                    settings,
                    role,
                    dataclasses.replace(endpoints, s3_bucket=v[2]),
                    Credentials(
                        http_secret=v[0],
                        redis_password=v[1],
                        s3_access_key=v[3],
                        s3_secret_key=v[4],
                        upstream_username=upstream_username,
                        upstream_password=v[5],
                    ),
                    cache=cache,
                )
            )
        )
        # config.yml holds the S3 keys, the http secret and the Redis password: a Secret, never a ConfigMap.
        # The other files sit next to it: the token signing certificates (authEnabled), the cache's
        # credential helper and the upstream credentials it prints; and the auth proxy's haproxy.cfg.
        files = secret_files(settings, role, cache=cache)
        secret_data = {CONFIG_KEY: pulumi.Output.secret(config_text)}
        if token_auth is not None:
            secret_data[auth.BUNDLE_KEY] = token_auth.certificate_bundle
            secret_data[auth.JWKS_KEY] = token_auth.jwks
            secret_data[auth.PROXY_CONFIG_KEY] = auth.proxy_config([auth.pod_proxy_site(settings)])
        if CREDENTIAL_HELPER_KEY in files:
            secret_data[CREDENTIAL_HELPER_KEY] = credential_helper_script(cache, settings.registry.schema, endpoints)
        if UPSTREAM_CREDENTIALS_KEY in files:
            secret_data[UPSTREAM_CREDENTIALS_KEY] = pulumi.Output.secret(
                pulumi.Output.from_input(upstream_password).apply(
                    lambda password: upstream_credentials_json(upstream_username, password)
                )
            )
        self.config_secret = k8s.core.v1.Secret(
            f"{name}-config",
            metadata=meta(names.config_secret),
            type="Opaque",
            string_data=secret_data,
            opts=child,
        )
        # The digest of a document holding 48+ random characters reveals nothing; unsecret it so
        # that `pulumi preview` shows when the pods are about to roll. A change to the token server's
        # Secret (users, passwords, the signing key) rolls them too.
        rolled_by = [secret_data[key] for key in sorted(secret_data)]
        if token_auth is not None:
            rolled_by.append(token_auth.checksum)
        checksum_input = pulumi.Output.all(*rolled_by).apply(lambda texts: "\n---\n".join(texts))
        self.checksum = pulumi.Output.unsecret(checksum_input.apply(config_checksum))
        depends_on = [self.config_secret] + ([token_auth.token_secret] if token_auth is not None else [])
        self.deployment = k8s.apps.v1.Deployment(
            f"{name}-deployment",
            metadata=meta(names.app, annotations=checkov_annotations(registry_pod_images(settings, role))),
            spec=self.checksum.apply(lambda c: registry_deployment_spec(settings, role, c, cache)),
            opts=pulumi.ResourceOptions(parent=self, depends_on=depends_on),
        )

        if role == "private":
            self.pdb = k8s.policy.v1.PodDisruptionBudget(
                f"{name}-pdb",
                metadata=meta(names.app),
                spec=pdb_spec(names.app, settings.stack),
                opts=child,
            )
            service_spec = registry_service_spec(settings)
            service_annotations = lb_annotations(settings.exposure)
            if settings.registry.gc_schedule:
                # A report only (--dry-run): see registry_ha/gc_job.py for why the schedule never sweeps.
                self.gc_report = k8s.batch.v1.CronJob(
                    f"{name}-gc-report",
                    metadata=pulumi.Output.from_input(args.namespace).apply(
                        lambda ns: metadata(report_name(settings), ns, gc_app(settings), GC_COMPONENT, settings.stack)
                    ),
                    spec=gc_report_cronjob_spec(settings),
                    opts=pulumi.ResourceOptions(parent=self, depends_on=[self.config_secret]),
                )
        else:
            service_spec = cache_service_spec(settings, cache)
            service_annotations = {}
        self.service = k8s.core.v1.Service(
            f"{name}-service",
            metadata=meta(names.app, annotations=service_annotations or None),
            spec=service_spec,
            opts=child,
        )
        # The debug port serves pprof and /debug/vars besides /metrics: cluster-internal only.
        self.metrics_service = k8s.core.v1.Service(
            f"{name}-metrics",
            metadata=meta(names.metrics_service, "metrics"),
            spec=metrics_service_spec(names.app, settings.stack),
            opts=child,
        )
        if settings.network.service_monitor:
            self.service_monitor = k8s.apiextensions.CustomResource(
                f"{name}-service-monitor",
                api_version="monitoring.coreos.com/v1",
                kind="ServiceMonitor",
                metadata=meta(names.app, "metrics"),
                spec=pulumi.Output.from_input(args.namespace).apply(
                    lambda ns: service_monitor_spec(names.app, settings.stack, ns)
                ),
                opts=child,
            )

        self.service_name = names.app
        self.cluster_address = f"{names.app}.{settings.namespace}.svc.cluster.local:{REGISTRY_PORT}"
        # Nodes' containerd cannot resolve cluster DNS names: it dials the ClusterIP (pinned in the
        # mirrors entry, else the one the cluster allocated).
        self.cluster_ip = pulumi.Output.from_input(cache.cluster_ip) if cache and cache.cluster_ip else self.service.spec.apply(
            lambda spec: (spec or {}).get("cluster_ip")
        )
        self.load_balancer_address = self.service.status.apply(_ingress_address)
        self.register_outputs(
            {
                "service_name": self.service_name,
                "cluster_address": self.cluster_address,
                "cluster_ip": self.cluster_ip,
                "load_balancer_address": self.load_balancer_address,
                "checksum": self.checksum,
            }
        )


def _ingress_address(status) -> Optional[str]:
    ingress = ((status or {}).get("load_balancer") or {}).get("ingress") or []
    if not ingress:
        return None
    return ingress[0].get("ip") or ingress[0].get("hostname")
