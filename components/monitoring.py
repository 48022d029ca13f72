"""What kube-prometheus-stack needs to watch the registry: its alerts and its dashboard.

Both are opt-in (prometheusRule, grafanaDashboard) on top of the ServiceMonitor, whose labels
(`job` = the metrics Service's name, `namespace`, `pod`) the rules select on. The PrometheusRule
lives next to the workloads; the dashboard ConfigMap goes to the monitoring namespace, where
the Grafana sidecar collects ConfigMaps labelled grafana_dashboard: "1".
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import pulumi
import pulumi_kubernetes as k8s

from registry_ha.k8s import labels, metadata
from registry_ha.monitoring import (
    DASHBOARD_LABEL,
    dashboard_configmap_data,
    dashboard_name,
    prometheus_rule_name,
    prometheus_rule_spec,
)
from registry_ha.settings import Settings


@dataclass
class MonitoringArgs:
    settings: Settings
    namespace: pulumi.Input[str]


class Monitoring(pulumi.ComponentResource):
    prometheus_rule: Optional[k8s.apiextensions.CustomResource]
    dashboard: Optional[k8s.core.v1.ConfigMap]

    def __init__(self, name: str, args: MonitoringArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("registry-ha:monitoring:Monitoring", name, None, opts)
        settings = args.settings
        app = settings.registry.service_name
        child = pulumi.ResourceOptions(parent=self)

        self.prometheus_rule = None
        if settings.monitoring.prometheus_rule:
            self.prometheus_rule = k8s.apiextensions.CustomResource(
                f"{name}-rule",
                api_version="monitoring.coreos.com/v1",
                kind="PrometheusRule",
                metadata=pulumi.Output.from_input(args.namespace).apply(
                    lambda ns: metadata(prometheus_rule_name(settings), ns, app, "monitoring", settings.stack)
                ),
                spec=prometheus_rule_spec(settings),
                opts=child,
            )

        self.dashboard = None
        if settings.monitoring.grafana_dashboard:
            self.dashboard = k8s.core.v1.ConfigMap(
                f"{name}-dashboard",
                metadata={
                    "name": dashboard_name(settings),
                    "namespace": settings.network.monitoring_namespace,
                    "labels": {**labels(app, "monitoring", settings.stack), **DASHBOARD_LABEL},
                },
                data=dashboard_configmap_data(settings),
                opts=child,
            )

        self.register_outputs(
            {
                "prometheus_rule": self.prometheus_rule.metadata["name"] if self.prometheus_rule else None,
                "dashboard": dashboard_name(settings) if self.dashboard else None,
            }
        )
