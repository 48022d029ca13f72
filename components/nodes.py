"""nodeConfigurator: a DaemonSet that writes the containerd hosts.toml files onto every node.

Its own namespace (Pod Security `privileged`: the hostPath rules out baseline and restricted), the
script in a ConfigMap, the files in a Secret (a file may carry the nodes' registry credentials).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import pulumi
import pulumi_kubernetes as k8s

from registry_ha.containerd import NodeFiles
from registry_ha.k8s import metadata
from registry_ha.nodes import (
    APP,
    COMPONENT,
    FILES_SECRET,
    SCRIPT_CONFIGMAP,
    SCRIPT_KEY,
    daemonset_annotations,
    daemonset_spec,
    files_secret_data,
    namespace_metadata,
    script,
)
from registry_ha.settings import Settings


@dataclass
class NodeConfiguratorArgs:
    settings: Settings
    files: pulumi.Input[NodeFiles]  # depends on the caches' ClusterIPs


class NodeConfigurator(pulumi.ComponentResource):
    def __init__(self, name: str, args: NodeConfiguratorArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("registry-ha:nodes:NodeConfigurator", name, None, opts)
        settings = args.settings
        child = pulumi.ResourceOptions(parent=self)
        files = pulumi.Output.from_input(args.files)

        self.namespace = k8s.core.v1.Namespace(f"{name}-namespace", metadata=namespace_metadata(), opts=child)
        namespace = self.namespace.metadata.apply(lambda m: m["name"])

        def meta(object_name: str, annotations: Optional[dict] = None):
            return namespace.apply(lambda ns: metadata(object_name, ns, APP, COMPONENT, settings.stack, annotations))

        self.script = k8s.core.v1.ConfigMap(
            f"{name}-script", metadata=meta(SCRIPT_CONFIGMAP), data={SCRIPT_KEY: script()}, opts=child
        )
        depends_on: list[pulumi.Resource] = [self.script]
        self.files = None
        if settings.nodes.configurator == "on":
            self.files = k8s.core.v1.Secret(
                f"{name}-files",
                metadata=meta(FILES_SECRET),
                type="Opaque",
                string_data=pulumi.Output.secret(files.apply(files_secret_data)),
                opts=child,
            )
            depends_on.append(self.files)
        # The files are a secret when they carry the node identity's header; the spec and the paths hold
        # only their paths and modes (the content is in the Secret above), so they stay readable in a preview.
        self.daemonset = k8s.apps.v1.DaemonSet(
            f"{name}-daemonset",
            metadata=meta(APP, daemonset_annotations(settings)),
            spec=pulumi.Output.unsecret(files.apply(lambda f: daemonset_spec(settings, f))),
            opts=pulumi.ResourceOptions(parent=self, depends_on=depends_on),
        )
        self.paths = pulumi.Output.unsecret(files.apply(lambda f: [node_file.path for node_file in f.files]))
        self.register_outputs({"namespace": namespace, "paths": self.paths})
