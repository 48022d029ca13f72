"""NetworkPolicies: deny all ingress in the namespace, then allow exactly the design's flows."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import pulumi
import pulumi_kubernetes as k8s

from registry_ha.k8s import metadata, network_policy_specs
from registry_ha.settings import Settings


@dataclass
class NetworkPoliciesArgs:
    settings: Settings
    namespace: pulumi.Input[str]


class NetworkPolicies(pulumi.ComponentResource):
    def __init__(self, name: str, args: NetworkPoliciesArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("registry-ha:network:NetworkPolicies", name, None, opts)
        settings = args.settings
        self.policies = {}
        for policy_name, spec in network_policy_specs(settings).items():
            self.policies[policy_name] = k8s.networking.v1.NetworkPolicy(
                f"{name}-{policy_name}",
                metadata=pulumi.Output.from_input(args.namespace).apply(
                    lambda ns, n=policy_name: metadata(n, ns, "registry-ha", "network", settings.stack)
                ),
                spec=spec,
                opts=pulumi.ResourceOptions(parent=self),
            )
        self.register_outputs({"policies": sorted(self.policies)})
