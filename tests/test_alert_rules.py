"""The rendered alert rules under promtool (Debian's prometheus package): `promtool check rules`, and
`promtool test rules` with synthetic series in which each alert fires when it should (exact labels
and annotations, templates rendered) and stays silent when it should not.

The rules are production's PrometheusRule groups (cluster timing: 30 s scrapes, the `for:` values
the docs quote); the series are 1-minute samples of the metric names Distribution 3.1.1 exports.
"""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml

from conftest import require_binary
from registry_ha import monitoring
from tests.mocking import settings_for

SETTINGS = settings_for("production")
ALERTS = {a.name: a for a in monitoring.alerts(SETTINGS)}
NS = "registry"
PRIVATE = f'job="docker-registry-metrics",namespace="{NS}"'
CACHE = f'job="docker-registry-mirror-metrics",namespace="{NS}"'


@pytest.fixture(scope="module")
def promtool() -> str:
    return require_binary("promtool")


def expect(name: str, labels: dict, summary: str) -> dict:
    """One expected firing alert: its labels plus the rule's, the annotations as Prometheus renders them."""
    alert = ALERTS[name]
    description = re.sub(r"\{\{ \$labels\.(\w+) \}\}", lambda m: labels[m.group(1)], alert.description)
    return {
        "exp_labels": {**labels, "severity": alert.severity, **dict(alert.labels)},
        "exp_annotations": {
            "summary": summary,
            "description": description,
            "runbook_url": f"{SETTINGS.monitoring.runbook_url}#{alert.anchor}",
        },
    }


def check(alertname: str, at: str, *firing: dict) -> dict:
    return {"eval_time": at, "alertname": alertname, "exp_alerts": list(firing)}


def series(name: str, values: str) -> dict:
    return {"series": name, "values": values}


def histogram(metric: str, selector: str, buckets: dict[str, str]) -> list[dict]:
    return [series(f'{metric}_bucket{{{selector},le="{le}"}}', values) for le, values in buckets.items()]


SUMMARY_REPLICAS = "Only {} of 3 docker-registry replicas are up"

CASES = {
    "replicas: one of three down for 6m fires, a 4m blip does not; the cache up is silent": (
        [
            series(f'up{{{PRIVATE},pod="r1"}}', "1x30"),
            series(f'up{{{PRIVATE},pod="r2"}}', "1x30"),
            series(f'up{{{PRIVATE},pod="r3"}}', "1x5 0x3 1x5 0x15"),
            series(f'up{{{CACHE},pod="m1"}}', "1x30"),
        ],
        [
            check("RegistryReplicasDown", "9m"),
            check("RegistryReplicasDown", "20m"),
            check("RegistryReplicasDown", "22m", expect("RegistryReplicasDown", {}, SUMMARY_REPLICAS.format(2))),
            check("RegistryAllReplicasDown", "22m"),
            check("RegistryCacheDown", "22m"),
        ],
    ),
    "replicas: every target gone (no up series at all) fires, thanks to `or vector(0)`": (
        [
            series(f'up{{{PRIVATE},pod="r1"}}', "0x3"),
            series(f'up{{{CACHE},pod="m1"}}', "0x20"),
        ],
        [
            check("RegistryAllReplicasDown", "15m", expect("RegistryAllReplicasDown", {}, "No docker-registry replica is up: pushes and pulls fail")),
            check("RegistryReplicasDown", "15m", expect("RegistryReplicasDown", {}, SUMMARY_REPLICAS.format(0))),
            check("RegistryCacheDown", "15m", expect("RegistryCacheDown", {"job": "docker-registry-mirror-metrics"}, "The pull-through cache docker-registry-mirror-metrics is down")),
        ],
    ),
    "kube-state-metrics: ready < spec for 5m fires; equal is silent": (
        [
            series(f'kube_deployment_spec_replicas{{namespace="{NS}",deployment="docker-registry"}}', "3x20"),
            series(f'kube_deployment_status_replicas_ready{{namespace="{NS}",deployment="docker-registry"}}', "3x5 2x15"),
            series(f'kube_deployment_spec_replicas{{namespace="{NS}",deployment="registry-redis"}}', "1x20"),
            series(f'kube_deployment_status_replicas_ready{{namespace="{NS}",deployment="registry-redis"}}', "1x20"),
        ],
        [
            check("RegistryDeploymentReplicasNotReady", "8m"),
            check("RegistryDeploymentReplicasNotReady", "12m", expect(
                "RegistryDeploymentReplicasNotReady", {"namespace": NS, "deployment": "docker-registry"},
                "docker-registry: 2 ready replicas, fewer than configured")),
        ],
    ),
    "restarts: 3 new process start times in 30m fire, 2 do not, old ones age out": (
        [
            series(f'process_start_time_seconds{{{PRIVATE},pod="r1"}}', "1000x10 1600x5 1900x5 2200x10"),
            series(f'process_start_time_seconds{{{PRIVATE},pod="r2"}}', "1000x10 1600x5 1900x15"),
        ],
        [
            check("RegistryPodRestarting", "18m"),
            check("RegistryPodRestarting", "25m", expect("RegistryPodRestarting", {"namespace": NS, "pod": "r1"}, "r1 restarted 3 times in 30m")),
            check("RegistryPodRestarting", "55m"),
        ],
    ),
    "restarts: kube-state-metrics' counter (3 fire, 2 do not); a pod seen by both fires once": (
        [
            series(f'kube_pod_container_status_restarts_total{{namespace="{NS}",pod="r1",container="registry"}}', "0x10 1 2 3 3x17"),
            series(f'kube_pod_container_status_restarts_total{{namespace="{NS}",pod="r2",container="registry"}}', "0x10 1 2 2x18"),
            series(f'process_start_time_seconds{{{PRIVATE},pod="r1"}}', "1000x10 1060 1120 1180 1180x17"),
        ],
        [
            check("RegistryPodRestarting", "20m", expect("RegistryPodRestarting", {"namespace": NS, "pod": "r1"}, "r1 restarted 3 times in 30m")),
        ],
    ),
    "5xx: 10% for 10m fires; 1% on the cache does not": (
        [
            series(f'registry_http_requests_total{{{PRIVATE},pod="r1",handler="blob",method="get",code="200"}}', "0+540x30"),
            series(f'registry_http_requests_total{{{PRIVATE},pod="r1",handler="blob",method="get",code="500"}}', "0+60x30"),
            series(f'registry_http_requests_total{{{CACHE},pod="m1",handler="blob",method="get",code="200"}}', "0+594x30"),
            series(f'registry_http_requests_total{{{CACHE},pod="m1",handler="blob",method="get",code="503"}}', "0+6x30"),
        ],
        [
            check("RegistryHigh5xxRatio", "10m"),
            check("RegistryHigh5xxRatio", "20m", expect(
                "RegistryHigh5xxRatio", {"namespace": NS, "job": "docker-registry-metrics"},
                "docker-registry-metrics: 10% of responses are 5xx")),
        ],
    ),
    "5xx: every request failing at 1 request per minute (below 0.05/s) is silent": (
        [series(f'registry_http_requests_total{{{PRIVATE},pod="r1",handler="manifest",method="get",code="500"}}', "0+1x30")],
        [check("RegistryHigh5xxRatio", "25m")],
    ),
    "latency: manifest p99 2.2s (private) and 4.5s (cache) fire after 15m; slow blob GETs are ignored": (
        [
            *histogram("registry_http_request_duration_seconds", f'{PRIVATE},pod="r1",handler="manifest",method="get"',
                       {"0.25": "0+50x30", "0.5": "0+90x30", "1": "0+95x30", "2.5": "0+100x30", "+Inf": "0+100x30"}),
            *histogram("registry_http_request_duration_seconds", f'{PRIVATE},pod="r1",handler="blob",method="get"',
                       {"1": "0+0x30", "2.5": "0+0x30", "10": "0+0x30", "+Inf": "0+100x30"}),
            *histogram("registry_http_request_duration_seconds", f'{CACHE},pod="m1",handler="manifest",method="get"',
                       {"1": "0+90x30", "2.5": "0+95x30", "5": "0+100x30", "+Inf": "0+100x30"}),
        ],
        [
            check("RegistryHighManifestLatencyP99", "10m"),
            check("RegistryHighManifestLatencyP99", "20m", expect(
                "RegistryHighManifestLatencyP99", {"namespace": NS, "job": "docker-registry-metrics"},
                "Private registry manifest p99 is 2.2s")),
            check("RegistryCacheHighManifestLatencyP99", "20m", expect(
                "RegistryCacheHighManifestLatencyP99", {"namespace": NS, "job": "docker-registry-mirror-metrics"},
                "Pull-through cache manifest p99 is 4.5s")),
        ],
    ),
    "latency: p99 under the thresholds is silent": (
        [
            *histogram("registry_http_request_duration_seconds", f'{PRIVATE},pod="r1",handler="manifest",method="get"',
                       {"0.25": "0+50x30", "0.5": "0+100x30", "1": "0+100x30", "+Inf": "0+100x30"}),
            *histogram("registry_http_request_duration_seconds", f'{CACHE},pod="m1",handler="manifest",method="get"',
                       {"1": "0+99x30", "2.5": "0+100x30", "+Inf": "0+100x30"}),
        ],
        [check("RegistryHighManifestLatencyP99", "25m"), check("RegistryCacheHighManifestLatencyP99", "25m")],
    ),
    "storage: up but not Ready for 2m fires; a dead process, a 1m blip or another container of the pod does not": (
        [
            series(f'kube_pod_container_status_ready{{namespace="{NS}",pod="r1",container="registry"}}', "1x5 0x10"),
            series(f'kube_pod_container_status_ready{{namespace="{NS}",pod="r2",container="registry"}}', "1x5 0x10"),
            series(f'kube_pod_container_status_ready{{namespace="{NS}",pod="r3",container="registry"}}', "1x5 0 1x9"),
            # authEnabled: the token server not Ready in r4 takes the pod out, but its storage is fine
            series(f'kube_pod_container_status_ready{{namespace="{NS}",pod="r4",container="registry"}}', "1x15"),
            series(f'kube_pod_container_status_ready{{namespace="{NS}",pod="r4",container="token-server"}}', "1x5 0x10"),
            series(f'up{{{PRIVATE},pod="r1"}}', "1x15"),
            series(f'up{{{PRIVATE},pod="r2"}}', "1x5 0x10"),
            series(f'up{{{PRIVATE},pod="r3"}}', "1x15"),
            series(f'up{{{PRIVATE},pod="r4"}}', "1x15"),
        ],
        [
            check("RegistryStorageUnhealthy", "6m"),
            check("RegistryStorageUnhealthy", "7m"),
            check("RegistryStorageUnhealthy", "8m", expect(
                "RegistryStorageUnhealthy", {"namespace": NS, "pod": "r1"}, "r1: up but not Ready (storage health check failing)")),
        ],
    ),
    "storage: the health check's Stat count flat while up fires (S3 hanging); counting or down is silent": (
        [
            series(f'registry_storage_action_seconds_count{{{PRIVATE},pod="r1",action="Stat",driver="s3aws"}}', "0+6x10 60x20"),
            series(f'registry_storage_action_seconds_count{{{PRIVATE},pod="r2",action="Stat",driver="s3aws"}}', "0+6x30"),
            series(f'registry_storage_action_seconds_count{{{PRIVATE},pod="r3",action="Stat",driver="s3aws"}}', "0+6x10 60x20"),
            series(f'up{{{PRIVATE},pod="r1"}}', "1x30"),
            series(f'up{{{PRIVATE},pod="r2"}}', "1x30"),
            series(f'up{{{PRIVATE},pod="r3"}}', "1x10 0x20"),
        ],
        [
            check("RegistryStorageStalled", "9m"),
            check("RegistryStorageStalled", "13m"),
            check("RegistryStorageStalled", "16m", expect(
                "RegistryStorageStalled", {"namespace": NS, "job": "docker-registry-metrics", "pod": "r1"},
                "r1: no S3 call has completed recently (S3 hanging?)")),
        ],
    ),
    "storage: GetContent p99 4.5s fires; slow List and Move and fast Stat are silent": (
        [
            *histogram("registry_storage_action_seconds", f'{PRIVATE},pod="r1",action="GetContent",driver="s3aws"',
                       {"1": "0+90x30", "2.5": "0+95x30", "5": "0+100x30", "10": "0+100x30", "+Inf": "0+100x30"}),
            *histogram("registry_storage_action_seconds", f'{PRIVATE},pod="r1",action="List",driver="s3aws"',
                       {"1": "0+0x30", "10": "0+0x30", "+Inf": "0+10x30"}),
            *histogram("registry_storage_action_seconds", f'{PRIVATE},pod="r1",action="Move",driver="s3aws"',
                       {"1": "0+0x30", "10": "0+5x30", "+Inf": "0+10x30"}),
            *histogram("registry_storage_action_seconds", f'{PRIVATE},pod="r1",action="Stat",driver="s3aws"',
                       {"0.05": "0+100x30", "1": "0+100x30", "+Inf": "0+100x30"}),
        ],
        [
            check("RegistryStorageSlowP99", "10m"),
            check("RegistryStorageSlowP99", "20m", expect(
                "RegistryStorageSlowP99", {"namespace": NS, "job": "docker-registry-metrics", "action": "GetContent"},
                "docker-registry-metrics: S3 GetContent p99 is 4.5s")),
        ],
    ),
    "redis: lookup errors growing for 5m fire; an old constant count or a 3-error blip is silent": (
        [
            series(f'registry_storage_cache_errors_total{{{PRIVATE},pod="r1"}}', "0x5 0+30x20"),
            series(f'registry_storage_cache_errors_total{{{PRIVATE},pod="r2"}}', "40x25"),
            series(f'registry_storage_cache_errors_total{{{PRIVATE},pod="r3"}}', "0x10 1 2 3 3x12"),
        ],
        [
            check("RegistryRedisCacheErrors", "8m"),
            check("RegistryRedisCacheErrors", "15m", expect(
                "RegistryRedisCacheErrors", {"namespace": NS, "job": "docker-registry-metrics", "pod": "r1"},
                "r1: Redis lookups fail (150 in 5m)")),
        ],
    ),
    "upstream: 404s while nothing is fetched upstream fire": (
        [
            series(f'registry_http_requests_total{{{CACHE},pod="m1",handler="manifest",method="get",code="200"}}', "0+60x40"),
            series(f'registry_http_requests_total{{{CACHE},pod="m1",handler="manifest",method="get",code="404"}}', "0x5 0+30x35"),
            series(f'registry_proxy_misses_total{{{CACHE},pod="m1",type="manifest"}}', "5x40"),
            series(f'registry_proxy_misses_total{{{CACHE},pod="m1",type="blob"}}', "12x40"),
        ],
        [
            check("RegistryCacheUpstreamFailing", "12m"),
            check("RegistryCacheUpstreamFailing", "30m", expect(
                "RegistryCacheUpstreamFailing", {"namespace": NS, "job": "docker-registry-mirror-metrics"},
                "The pull-through cache gets nothing from its upstream (33.33% of requests fail)")),
        ],
    ),
    "upstream: the same 404s while the cache keeps fetching (unknown tags, not a broken upstream) are silent": (
        [
            series(f'registry_http_requests_total{{{CACHE},pod="m1",handler="manifest",method="get",code="200"}}', "0+60x40"),
            series(f'registry_http_requests_total{{{CACHE},pod="m1",handler="manifest",method="get",code="404"}}', "0+30x40"),
            series(f'registry_proxy_misses_total{{{CACHE},pod="m1",type="manifest"}}', "0+1x40"),
        ],
        [check("RegistryCacheUpstreamFailing", "30m")],
    ),
    "upstream: 3 typo 404s in a quiet cache (fewer than 5) are silent": (
        [
            series(f'registry_http_requests_total{{{CACHE},pod="m1",handler="manifest",method="get",code="404"}}', "0x5 1 2 3x30"),
            series(f'registry_proxy_misses_total{{{CACHE},pod="m1",type="manifest"}}', "5x40"),
        ],
        [check("RegistryCacheUpstreamFailing", "20m")],
    ),
}


def promtool_test(promtool: str, directory: Path, rules_text: str, cases: dict) -> subprocess.CompletedProcess:
    (directory / "rules.yml").write_text(rules_text)
    document = {
        "rule_files": ["rules.yml"],
        "evaluation_interval": "1m",
        "tests": [{"name": name, "interval": "1m", "input_series": inputs, "alert_rule_test": checks}
                  for name, (inputs, checks) in cases.items()],
    }
    (directory / "tests.yml").write_text(yaml.safe_dump(document, sort_keys=False, width=1000))
    return subprocess.run([promtool, "test", "rules", "tests.yml"], cwd=directory, capture_output=True, text=True, timeout=60)


def test_every_alert_has_a_firing_case():
    fired = {exp for _, checks in CASES.values() for c in checks if c["exp_alerts"] for exp in [c["alertname"]]}
    assert fired == set(ALERTS)


@pytest.mark.parametrize("case", list(CASES))
def test_promtool_unit(promtool, tmp_path, case):
    result = promtool_test(promtool, tmp_path, monitoring.rule_file(SETTINGS), {case: CASES[case]})
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_the_unit_tests_can_fail(promtool, tmp_path):
    """A rule without `or vector(0)` never fires when every target is gone: the case above catches it."""
    broken = monitoring.rule_file(SETTINGS).replace(" or vector(0))", ")")
    case = "replicas: every target gone (no up series at all) fires, thanks to `or vector(0)`"
    result = promtool_test(promtool, tmp_path, broken, {case: CASES[case]})
    assert result.returncode != 0 and "RegistryAllReplicasDown" in result.stdout + result.stderr


@pytest.mark.parametrize("stack", ["staging", "production"])
@pytest.mark.parametrize("timing", ["cluster", "sandbox"])
def test_promtool_check_rules(promtool, tmp_path, stack, timing):
    settings = settings_for(stack, serviceMonitor="true", prometheusRule="true")
    path = tmp_path / "rules.yml"
    path.write_text(monitoring.rule_file(settings, monitoring.SANDBOX if timing == "sandbox" else monitoring.CLUSTER))
    result = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(monitoring.alerts(settings))} rules found" in result.stdout


def test_sandbox_timing_differs_only_in_durations():
    """The sandbox's rules are the cluster's with every `for:` and range window divided by 30 (1 s
    scrapes instead of 30 s), windows at least 30 s, `for:` at least 15 s; thresholds, labels and texts alike."""
    def strip(text: str) -> str:
        return re.sub(r"\b\d+[smh]\b", "<d>", text)

    cluster = monitoring.alerts(SETTINGS, monitoring.CLUSTER)
    sandbox = monitoring.alerts(SETTINGS, monitoring.SANDBOX)
    assert [strip(repr(a)) for a in cluster] == [strip(repr(a)) for a in sandbox]
    holds = {a.name: (a.hold, b.hold) for a, b in zip(cluster, sandbox)}
    assert holds["RegistryReplicasDown"] == ("5m", "15s")
    assert holds["RegistryStorageStalled"] == ("2m", "15s")
    assert holds["RegistryHigh5xxRatio"] == ("10m", "20s")
    assert holds["RegistryRedisCacheErrors"] == ("5m", "15s")
    assert holds["RegistryCacheUpstreamFailing"] == ("10m", "20s")
    windows = {a.name: sorted(set(re.findall(r"\[(\w+)\]", b.expr))) for a, b in zip(cluster, sandbox)}
    assert windows["RegistryRedisCacheErrors"] == ["30s"] and windows["RegistryCacheUpstreamFailing"] == ["30s"]
    assert windows["RegistryPodRestarting"] == ["1m"]
