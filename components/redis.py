"""Redis as the registries' shared blob-descriptor cache: a cache only, no persistence."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import pulumi
import pulumi_kubernetes as k8s
import pulumi_random as random

from registry_ha.k8s import (
    Names,
    checkov_annotations,
    metadata,
    redis_address,
    redis_conf,
    redis_deployment_spec,
    redis_service_spec,
)
from registry_ha.registry_config import config_checksum
from registry_ha.settings import Settings


@dataclass
class RedisCacheArgs:
    settings: Settings
    namespace: pulumi.Input[str]


class RedisCache(pulumi.ComponentResource):
    address: str
    password: pulumi.Output[str]

    def __init__(self, name: str, args: RedisCacheArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("registry-ha:redis:RedisCache", name, None, opts)
        settings = args.settings
        names = Names.for_redis()
        child = pulumi.ResourceOptions(parent=self)

        self.random_password = random.RandomPassword(f"{name}-password", length=40, special=False, opts=child)
        self.password = pulumi.Output.secret(self.random_password.result)
        conf = self.password.apply(lambda pw: redis_conf(settings, pw))

        def meta(object_name: str, annotations: Optional[dict] = None) -> pulumi.Output:
            return pulumi.Output.from_input(args.namespace).apply(
                lambda ns: metadata(object_name, ns, names.app, "cache", settings.stack, annotations)
            )

        self.secret = k8s.core.v1.Secret(
            f"{name}-config",
            metadata=meta(names.config_secret),
            type="Opaque",
            string_data={"redis.conf": conf, "password": self.password},
            opts=child,
        )
        checksum = pulumi.Output.unsecret(conf.apply(config_checksum))
        self.deployment = k8s.apps.v1.Deployment(
            f"{name}-deployment",
            metadata=meta(names.app, checkov_annotations([settings.redis.image])),
            spec=checksum.apply(lambda c: redis_deployment_spec(settings, c)),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.secret]),
        )
        self.service = k8s.core.v1.Service(
            f"{name}-service",
            metadata=meta(names.app),
            spec=redis_service_spec(settings.stack),
            opts=child,
        )
        self.address = redis_address(settings)
        self.register_outputs({"address": self.address})
