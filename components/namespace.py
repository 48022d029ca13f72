"""The namespace, labelled to enforce the restricted Pod Security Standard."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import pulumi
import pulumi_kubernetes as k8s

from registry_ha.k8s import namespace_metadata
from registry_ha.settings import Settings


@dataclass
class RegistryNamespaceArgs:
    settings: Settings


class RegistryNamespace(pulumi.ComponentResource):
    name: pulumi.Output[str]

    def __init__(self, name: str, args: RegistryNamespaceArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("registry-ha:namespace:RegistryNamespace", name, None, opts)
        self.namespace = k8s.core.v1.Namespace(
            f"{name}-namespace",
            metadata=namespace_metadata(args.settings),
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.name = self.namespace.metadata.apply(lambda m: m["name"])
        self.register_outputs({"name": self.name})
