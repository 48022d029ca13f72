"""The Monitoring component under Pulumi mocks (preview=False): the PrometheusRule and the Grafana
dashboard ConfigMap it declares, their opt-in, and the runbook anchors the alerts link to."""
from __future__ import annotations

import json
import re

import pulumi
import pytest

from components.monitoring import Monitoring, MonitoringArgs
from registry_ha import monitoring
from registry_ha.docs import REPO_ROOT
from registry_ha.mock_engine import load_stack_config, run_program
from tests.mocking import registered, settings_for, use_mocks

ALERTS = [
    "RegistryReplicasDown", "RegistryAllReplicasDown", "RegistryDeploymentReplicasNotReady", "RegistryPodRestarting",
    "RegistryHigh5xxRatio", "RegistryHighManifestLatencyP99",
    "RegistryStorageUnhealthy", "RegistryStorageStalled", "RegistryStorageSlowP99",
    "RegistryRedisCacheErrors",
    "RegistryCacheDown", "RegistryCacheHighManifestLatencyP99", "RegistryCacheUpstreamFailing",
]
# what the issue asks the dashboard to show, one panel each at least
PANELS = [
    "Request rate per replica", "5xx error ratio per replica", "Manifest latency p50 / p90 / p99",
    "Bytes served (blob GET) per replica", "Storage action p99 by action", "Redis cache hit ratio",
    "Cache: bytes from upstream / to clients", "Replicas ready",
]
ON = {"serviceMonitor": "true", "prometheusRule": "true", "grafanaDashboard": "true"}


@pytest.fixture
def monitor():
    return use_mocks("staging")


def rules_by_name(spec: dict) -> dict[str, dict]:
    return {rule["alert"]: rule for group in spec["groups"] for rule in group["rules"]}


@pulumi.runtime.test
def test_prometheus_rule_holds_every_alert_with_severity_summary_description_and_runbook(monitor):
    component = Monitoring("monitoring", MonitoringArgs(settings=settings_for(**ON), namespace="registry"))

    def check(args):
        (rule,) = args
        assert (rule["apiVersion"], rule["kind"]) == ("monitoring.coreos.com/v1", "PrometheusRule")
        assert (rule["metadata"]["name"], rule["metadata"]["namespace"]) == ("docker-registry-alerts", "registry")
        assert rule["metadata"]["labels"]["app.kubernetes.io/instance"] == "registry-ha-staging"
        by_name = rules_by_name(rule["spec"])
        assert list(by_name) == ALERTS
        for name, r in by_name.items():
            assert r["labels"]["severity"] in ("warning", "critical"), name
            assert r["annotations"]["summary"] and "\nCheck first: " in r["annotations"]["description"], name
            assert r["annotations"]["runbook_url"] == f"docs/monitoring.md#{name.lower()}"
        replicas = by_name["RegistryReplicasDown"]
        assert replicas["expr"] == '(count(up{job="docker-registry-metrics",namespace="registry"} == 1) or vector(0)) < 3'
        assert (replicas["for"], replicas["labels"]) == ("5m", {"severity": "warning", "namespace": "registry", "deployment": "docker-registry"})
        assert by_name["RegistryAllReplicasDown"]["labels"]["severity"] == "critical"
        assert "for" not in by_name["RegistryPodRestarting"]  # a count of restarts already spans 30m
        # the defaults the docs justify
        assert ") > 0.05\n" in by_name["RegistryHigh5xxRatio"]["expr"] and by_name["RegistryHigh5xxRatio"]["for"] == "10m"
        assert by_name["RegistryHighManifestLatencyP99"]["expr"].endswith(") > 1")
        assert by_name["RegistryCacheHighManifestLatencyP99"]["expr"].endswith(") > 2.5")
        assert by_name["RegistryStorageSlowP99"]["expr"].endswith(") > 2.5")
        assert by_name["RegistryRedisCacheErrors"]["expr"].endswith("[5m])) > 5")
        assert ") > 0.1\n" in by_name["RegistryCacheUpstreamFailing"]["expr"]
        assert by_name["RegistryPodRestarting"]["expr"].count(">= 3") == 2
        # 3.1.1's names only: 2.8's cache counter is gone
        assert "registry_storage_cache_total" not in json.dumps(rule)
        assert 'registry_storage_cache_errors_total{job=~"docker-registry-metrics|docker-registry-mirror-metrics"' in by_name["RegistryRedisCacheErrors"]["expr"]

    return registered(monitor, component.prometheus_rule).apply(check)


@pulumi.runtime.test
def test_thresholds_and_replicas_come_from_settings(monitor):
    settings = settings_for(**ON, replicas="5", alert5xxPercent="12", alertManifestP99="2500ms", alertStorageP99="5s",
                            alertRedisErrors="50", alertUpstreamErrorPercent="25", alertRestarts="4",
                            runbookUrl="https://git.example.com/registry-ha/blob/main/docs/monitoring.md",
                            serviceName="registry", namespace="registry-prod")
    component = Monitoring("monitoring", MonitoringArgs(settings=settings, namespace="registry-prod"))

    def check(args):
        (rule,) = args
        by_name = rules_by_name(rule["spec"])
        assert by_name["RegistryReplicasDown"]["expr"] == '(count(up{job="registry-metrics",namespace="registry-prod"} == 1) or vector(0)) < 5'
        assert ") > 0.12\n" in by_name["RegistryHigh5xxRatio"]["expr"]
        assert by_name["RegistryHighManifestLatencyP99"]["expr"].endswith(") > 2.5")
        assert by_name["RegistryStorageSlowP99"]["expr"].endswith(") > 5")
        assert by_name["RegistryRedisCacheErrors"]["expr"].endswith(") > 50")
        assert ") > 0.25\n" in by_name["RegistryCacheUpstreamFailing"]["expr"]
        assert by_name["RegistryPodRestarting"]["expr"].count(">= 4") == 2
        assert by_name["RegistryStorageStalled"]["annotations"]["runbook_url"] == (
            "https://git.example.com/registry-ha/blob/main/docs/monitoring.md#registrystoragestalled")

    return registered(monitor, component.prometheus_rule).apply(check)


@pulumi.runtime.test
def test_dashboard_configmap_for_the_grafana_sidecar(monitor):
    component = Monitoring("monitoring", MonitoringArgs(settings=settings_for(**ON), namespace="registry"))
    assert component.prometheus_rule is not None

    def check(args):
        (configmap,) = args
        assert configmap["kind"] == "ConfigMap"
        assert (configmap["metadata"]["name"], configmap["metadata"]["namespace"]) == ("registry-ha-staging", "monitoring")
        assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
        (key,) = configmap["data"]
        board = json.loads(configmap["data"][key])
        assert key == "registry-ha-staging.json" and board["uid"] == "registry-ha-staging"
        titles = [p["title"] for p in board["panels"] if p["type"] != "row"]
        assert set(PANELS) <= set(titles)
        constants = {v["name"]: v["query"] for v in board["templating"]["list"] if v["type"] == "constant"}
        assert constants == {"job_private": "docker-registry-metrics", "job_cache": "docker-registry-mirror-metrics"}
        queries = monitoring.dashboard_queries(board)
        assert len(queries) >= 20
        for title, ref, expr in queries:
            assert "registry_storage_cache_total" not in expr, title
            # every rate over Grafana's $__rate_interval (the only fixed window: restarts over 1h)
            windows = re.findall(r"\[([^\]]+)\]", expr)
            assert all(w == "$__rate_interval" for w in windows) or windows == ["1h"], (title, windows)
        hit_ratio = next(expr for title, _, expr in queries if title == "Redis cache hit ratio")
        assert "registry_storage_cache_hits_total" in hit_ratio and "registry_storage_cache_requests_total" in hit_ratio

    return registered(monitor, component.dashboard).apply(check)


@pulumi.runtime.test
def test_one_setting_each(monitor):
    only_dashboard = Monitoring("dashboard-only", MonitoringArgs(
        settings=settings_for(serviceMonitor="true", grafanaDashboard="true"), namespace="registry"))
    only_rule = Monitoring("rule-only", MonitoringArgs(
        settings=settings_for(serviceMonitor="true", prometheusRule="true"), namespace="registry"))
    assert only_dashboard.prometheus_rule is None and only_dashboard.dashboard is not None
    assert only_rule.dashboard is None and only_rule.prometheus_rule is not None

    def check(args):
        dashboard, rule = args
        assert dashboard["kind"] == "ConfigMap" and rule["kind"] == "PrometheusRule"

    return registered(monitor, only_dashboard.dashboard, only_rule.prometheus_rule).apply(check)


def test_without_the_cache_there_is_no_cache_alert_nor_panel():
    settings = settings_for(**ON, mirrors="[]")
    names = [a.name for a in monitoring.alerts(settings)]
    assert names == [a for a in ALERTS if not a.startswith("RegistryCache")]
    board = monitoring.dashboard(settings)
    assert not any("job_cache" in expr or "registry_proxy_" in expr for _, _, expr in monitoring.dashboard_queries(board))
    assert "job_cache" not in [v["name"] for v in board["templating"]["list"]]
    assert 'job=~"docker-registry-metrics",' in rules_by_name({"groups": monitoring.rule_groups(settings)})["RegistryRedisCacheErrors"]["expr"]


# --------------------------------------------------------------------------- off unless asked for


@pytest.mark.parametrize("extra", [{}, {"registry-ha:serviceMonitor": "true"}], ids=["default", "serviceMonitor-only"])
def test_nothing_is_created_when_monitoring_is_off(extra):
    config, secret_keys = load_stack_config("staging")
    run = run_program("staging", {**config, **extra}, secret_keys)
    assert [r for r in run.resources if r.type == "registry-ha:monitoring:Monitoring"] == []
    kinds = {m["kind"] for m in run.manifests()}
    assert "PrometheusRule" not in kinds and "ConfigMap" not in kinds
    assert ("ServiceMonitor" in kinds) == bool(extra)


def test_production_turns_monitoring_on():
    run = run_program("production")
    (component,) = [r for r in run.resources if r.type == "registry-ha:monitoring:Monitoring"]
    children = sorted((r.type, r.name) for r in run.resources if r.parent == component.urn)
    assert children == [
        ("kubernetes:core/v1:ConfigMap", "monitoring-dashboard"),
        ("kubernetes:monitoring.coreos.com/v1:PrometheusRule", "monitoring-rule"),
    ]


# --------------------------------------------------------------------------- runbook anchors


def test_every_alert_links_to_an_anchor_in_the_runbook():
    text = (REPO_ROOT / monitoring.RUNBOOK_DOC).read_text()
    anchors = set(re.findall(r'<a id="([a-z0-9-]+)"></a>', text))
    settings = settings_for("production")
    for alert in monitoring.alerts(settings):
        rule = alert.rule(settings.monitoring.runbook_url)
        url, _, anchor = rule["annotations"]["runbook_url"].partition("#")
        assert url == settings.monitoring.runbook_url == monitoring.RUNBOOK_DOC
        assert anchor in anchors, f"{alert.name}: no <a id=\"{anchor}\"> in {monitoring.RUNBOOK_DOC}"
    assert len(anchors) == len(ALERTS)


def test_the_figures_the_monitoring_doc_quotes():
    from registry_ha.k8s import service_monitor_spec
    from registry_ha.registry_config import Credentials, Endpoints, build_registry_config
    from registry_ha.sandbox import prometheus
    from registry_ha.sandbox.core import DEFAULT_PORT_BASE
    from registry_ha.sandbox.ports import Ports

    text = " ".join((REPO_ROOT / monitoring.RUNBOOK_DOC).read_text().split())
    settings = settings_for("production")
    assert monitoring.SANDBOX.divisor == 30 and "divided by 30" in text
    assert prometheus.SCRAPE_INTERVAL == "1s" and "every second instead of every 30 seconds" in text
    assert service_monitor_spec("docker-registry", "production", "registry")["endpoints"][0]["interval"] == "30s"
    assert "interval (30 s)" in text
    config = build_registry_config(settings, "private", Endpoints(s3_bucket="b", s3_region="us-east-1", redis_addr="r:6379"),
                                   Credentials("h", "r", "a", "s"))
    assert config["health"]["storagedriver"]["interval"] == "10s" and "still runs every 10 s" in text
    assert config["health"]["storagedriver"]["threshold"] == 3 and "(every 10s) has failed 3 times in a row" in text
    port = Ports(lb=5000, base=DEFAULT_PORT_BASE).prometheus
    assert port - DEFAULT_PORT_BASE == 91 and "<port-base>+91" in text and f"127.0.0.1:{port}" in text
    by_name = {a.name: a for a in monitoring.alerts(settings)}
    assert ">= 5\n" in by_name["RegistryCacheUpstreamFailing"].expr and "at least 5 failed answers" in text
    assert by_name["RegistryHigh5xxRatio"].expr.endswith("> 0.05") and "above 0.05 requests/s" in text


# --------------------------------------------------------------------------- the sandbox's Prometheus (no servers)


def test_sandbox_prometheus_plan_scrape_config_and_state(tmp_path):
    from registry_ha.sandbox import prometheus
    from registry_ha.sandbox.core import Sandbox

    sb = Sandbox(tmp_path / "sb", lb_port=45000, port_base=40000, with_prometheus=True)
    assert list(sb.components)[-1] == "prometheus"  # started last, stopped first
    assert sb.components["prometheus"].address == "127.0.0.1:40091"
    config = prometheus.scrape_config(sb)
    assert config["global"] == {"scrape_interval": "1s", "scrape_timeout": "900ms", "evaluation_interval": "1s"}
    jobs = {job["job_name"]: job["static_configs"] for job in config["scrape_configs"]}
    assert sorted(jobs) == ["docker-registry-metrics", "docker-registry-mirror-metrics"]
    assert [(c["targets"], c["labels"]["pod"]) for c in jobs["docker-registry-metrics"]] == [
        ([sb.debug_address(n)], n) for n in ("registry-1", "registry-2", "registry-3")]
    assert jobs["docker-registry-mirror-metrics"][0]["labels"] == {
        "namespace": "registry", "service": "docker-registry-mirror-metrics", "endpoint": "metrics",
        "container": "registry", "pod": "dockerhub-cache"}
    argv = prometheus.argv(sb, "prometheus", {})
    assert "--web.listen-address=127.0.0.1:40091" in argv
    assert f"--storage.tsdb.path={sb.state_dir / 'prometheus'}" in argv

    sb.state_dir.mkdir()
    sb.save()
    again = Sandbox.from_state(sb.state_dir)
    assert again.with_prometheus and again.components["prometheus"].address == "127.0.0.1:40091"
    plain = Sandbox(tmp_path / "plain", lb_port=45000, port_base=40000)
    assert "prometheus" not in plain.components
    plain.enable_prometheus()
    assert plain.components["prometheus"].ports == [40091]


def test_each_cache_is_watched_on_its_own():
    settings = settings_for(**ON, mirrors='[{"name": "dockerhub", "host": "docker.io", "serviceName": "docker-registry-mirror"},'
                                          ' {"name": "ghcr", "host": "ghcr.io", "replicas": 2}]')
    down = next(a for a in monitoring.alerts(settings) if a.name == "RegistryCacheDown")
    # one series per cache, carrying its job, compared with its own replica count
    assert down.expr.count("label_replace(") == 2
    assert 'up{job="docker-registry-mirror-metrics",namespace="registry"} == 1) or vector(0)) < 1' in down.expr
    assert 'up{job="ghcr-cache-metrics",namespace="registry"} == 1) or vector(0)) < 2' in down.expr
    upstream = next(a for a in monitoring.alerts(settings) if a.name == "RegistryCacheUpstreamFailing")
    assert 'job=~"docker-registry-mirror-metrics|ghcr-cache-metrics"' in upstream.expr and "sum by (namespace, job)" in upstream.expr
