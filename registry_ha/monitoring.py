"""Alert rules and the Grafana dashboard for the registry, as plain data.

Every metric name and label here is one Distribution 3.1.1 exports on its debug port (2.8's
`registry_storage_cache_total{type=...}` is gone; the Redis cache counters are
`registry_storage_cache_{requests,hits,errors}_total`, the cache's upstream traffic is
`registry_proxy_*{type}`). Series are selected by the labels the ServiceMonitor gives them:
`job` = the metrics Service's name, `namespace`, `pod`. The component passes these dicts to
pulumi-kubernetes unchanged, and the sandbox's Prometheus loads the same rules.

Where a metric cannot tell (3.1.1 exports no storage-health, upstream-error or Redis-liveness
metric), an alert reads what does move: the Stat of the storage health check that stops
completing, the cache's 404/5xx answers while it fetches nothing upstream, the failed Redis
lookups. Alerts that need kube-state-metrics say so in their meaning.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Optional

from registry_ha.k8s import Names
from registry_ha.settings import Settings

RUNBOOK_DOC = "docs/monitoring.md"
DASHBOARD_LABEL = {"grafana_dashboard": "1"}  # what kube-prometheus-stack's Grafana sidecar looks for
RATE_INTERVAL = "$__rate_interval"  # Grafana: at least 4 scrape intervals
KUBE_STATE_METRICS = re.compile(r"\bkube_[a-z_]+")


# --------------------------------------------------------------------------- timing


def prom_duration(seconds: int) -> str:
    if seconds % 3600 == 0:
        return f"{seconds // 3600}h"
    if seconds % 60 == 0:
        return f"{seconds // 60}m"
    return f"{seconds}s"


@dataclass(frozen=True)
class Timing:
    """`for:` durations and range windows. The rules are written for the cluster (the ServiceMonitor
    scrapes every 30 s); the sandbox scrapes every 1 s and divides both by 30. Its floors come from
    the one period it cannot scale, the registry's 10 s storage health check: every window at least
    30 s (3 checks, 30 scrapes), every `for:` at least 15 s (so a registry that has just started and
    not yet run its second check is not taken for a stalled one)."""

    divisor: int = 1
    min_window_s: int = 0
    min_hold_s: int = 1

    def hold(self, seconds: int) -> str:
        return prom_duration(max(self.min_hold_s, seconds // self.divisor))

    def window(self, seconds: int) -> str:
        return prom_duration(max(self.min_window_s, seconds // self.divisor))


CLUSTER = Timing()
SANDBOX = Timing(divisor=30, min_window_s=30, min_hold_s=15)


# --------------------------------------------------------------------------- what the rules select


@dataclass(frozen=True)
class CacheTarget:
    job: str  # the cache's metrics Service (the ServiceMonitor's job label)
    app: str  # its Deployment
    replicas: int
    host: str  # the upstream it caches (docker.io, ghcr.io, ...)


@dataclass(frozen=True)
class Targets:
    namespace: str
    private_job: str
    private_app: str
    replicas: int
    caches: tuple[CacheTarget, ...]
    redis_app: str

    @staticmethod
    def of(settings: Settings) -> "Targets":
        private = Names.for_registry(settings, "private")
        caches = []
        for cache in settings.caches:
            names = Names.for_registry(settings, "mirror", cache)
            caches.append(CacheTarget(names.metrics_service, names.app, cache.replicas, cache.host))
        return Targets(
            namespace=settings.namespace,
            private_job=private.metrics_service,
            private_app=private.app,
            replicas=settings.registry.replicas,
            caches=tuple(caches),
            redis_app=Names.for_redis().app,
        )

    @property
    def cache_job(self) -> Optional[str]:
        """A regex of every cache's job (a single cache: its job), or None without caches."""
        return "|".join(c.job for c in self.caches) or None

    @property
    def jobs(self) -> list[str]:
        return [self.private_job] + [c.job for c in self.caches]

    @property
    def apps(self) -> list[str]:
        return [self.private_app] + [c.app for c in self.caches] + [self.redis_app]

    def private(self, extra: str = "") -> str:
        return f'job="{self.private_job}",namespace="{self.namespace}"{extra}'

    def cache(self, extra: str = "") -> str:
        return f'job=~"{self.cache_job}",namespace="{self.namespace}"{extra}'

    def registries(self, extra: str = "") -> str:
        return f'job=~"{"|".join(self.jobs)}",namespace="{self.namespace}"{extra}'


# --------------------------------------------------------------------------- alerts


@dataclass(frozen=True)
class Alert:
    name: str
    group: str
    severity: str  # critical: pushes/pulls fail or will; warning: degraded
    expr: str
    hold: Optional[str]  # `for:`
    summary: str  # may use {{ $value }} and {{ $labels.x }}
    meaning: str  # what it means; may use {{ $labels.x }}, never $value (docs show it)
    action: str  # what to check first; same rule
    labels: tuple[tuple[str, str], ...] = ()

    @property
    def anchor(self) -> str:
        return self.name.lower()

    @property
    def description(self) -> str:
        return f"{self.meaning}\nCheck first: {self.action}"

    def rule(self, runbook_url: str) -> dict:
        rule: dict = {"alert": self.name, "expr": self.expr}
        if self.hold:
            rule["for"] = self.hold
        rule["labels"] = {"severity": self.severity, **dict(self.labels)}
        rule["annotations"] = {
            "summary": self.summary,
            "description": self.description,
            "runbook_url": f"{runbook_url}#{self.anchor}",
        }
        return rule


def _seconds(value: float) -> str:
    return f"{value:g}"


def alerts(settings: Settings, timing: Timing = CLUSTER) -> list[Alert]:
    """Every alert the PrometheusRule holds, in runbook order."""
    t = Targets.of(settings)
    m = settings.monitoring
    ns = t.namespace
    w5, w15, w30 = timing.window(300), timing.window(900), timing.window(1800)
    kubectl = f"kubectl -n {ns}"
    all_5xx = t.registries(',code=~"5.."')
    private_manifest = t.private(',handler="manifest"')
    stat = t.registries(',action="Stat"')
    storage_calls = t.registries(',action=~"GetContent|PutContent|Stat|Delete"')
    cache_manifest = t.cache(',handler="manifest"')
    cache_content = t.cache(',handler=~"manifest|blob"')
    cache_failed = t.cache(',handler=~"manifest|blob",code=~"404|5.."')
    out = [
        Alert(
            "RegistryReplicasDown", "registry-availability", "warning",
            f"(count(up{{{t.private()}}} == 1) or vector(0)) < {t.replicas}",
            timing.hold(300),
            f"Only {{{{ $value }}}} of {t.replicas} {t.private_app} replicas are up",
            f"Fewer than {t.replicas} {t.private_app} pods have answered on their metrics port (:5001) for "
            f"{timing.hold(300)}: the registry runs with less capacity and without its redundancy.",
            f"`{kubectl} get pods -l app.kubernetes.io/name={t.private_app} -o wide` (Pending? CrashLoopBackOff?), "
            f"then the events in `{kubectl} describe pod <pod>` and `{kubectl} logs <pod> --previous`.",
            (("namespace", ns), ("deployment", t.private_app)),
        ),
        Alert(
            "RegistryAllReplicasDown", "registry-availability", "critical",
            f"(count(up{{{t.private()}}} == 1) or vector(0)) == 0",
            timing.hold(60),
            f"No {t.private_app} replica is up: pushes and pulls fail",
            f"No {t.private_app} pod has answered on :5001 for {timing.hold(60)}: every push and pull fails.",
            f"`{kubectl} get pods,events` and `{kubectl} logs deploy/{t.private_app} --previous`: a config error or "
            "an image that cannot be pulled stops every replica. If it followed a deployment, "
            "`./scripts/deploy-registry-ha.sh rollback <stack>`.",
            (("namespace", ns), ("deployment", t.private_app)),
        ),
        Alert(
            "RegistryDeploymentReplicasNotReady", "registry-availability", "warning",
            f'kube_deployment_status_replicas_ready{{namespace="{ns}",deployment=~"{"|".join(t.apps)}"}}\n'
            f'  < kube_deployment_spec_replicas{{namespace="{ns}",deployment=~"{"|".join(t.apps)}"}}',
            timing.hold(300),
            "{{ $labels.deployment }}: {{ $value }} ready replicas, fewer than configured",
            f"A Deployment (registry, cache or Redis) has had fewer Ready pods than its spec for {timing.hold(300)} "
            "(needs kube-state-metrics).",
            f"`{kubectl} get pods -l app.kubernetes.io/name={{{{ $labels.deployment }}}}`: a registry pod Running but "
            "not Ready fails its storage health check (RegistryStorageUnhealthy) or, with authEnabled, its auth-proxy "
            "or token-server container is not Ready (`kubectl describe pod`, then that container's log); a Pending "
            "one finds no node (antiAffinity: required needs replicas + 1 nodes during a rollout).",
        ),
        Alert(
            "RegistryPodRestarting", "registry-availability", "warning",
            f'max by (namespace, pod) (increase(kube_pod_container_status_restarts_total{{namespace="{ns}"}}[{w30}])) >= {m.restarts}\n'
            f"or\n"
            f"max by (namespace, pod) (changes(process_start_time_seconds{{{t.registries()}}}[{w30}])) >= {m.restarts}",
            None,
            f'{{{{ $labels.pod }}}} restarted {{{{ $value | printf "%.0f" }}}} times in {w30}',
            f"A registry or Redis pod has restarted at least {m.restarts} times within {w30} (kube-state-metrics' "
            "restart counter; without it, the registry's process start time).",
            f"`{kubectl} logs {{{{ $labels.pod }}}} --previous` (a panic, a config error) and "
            f"`{kubectl} describe pod {{{{ $labels.pod }}}}` (OOMKilled? the liveness probe?).",
        ),
        Alert(
            "RegistryHigh5xxRatio", "registry-errors-latency", "critical",
            "(\n"
            f'  sum by (namespace, job) (rate(registry_http_requests_total{{{all_5xx}}}[{w5}]))\n'
            "  /\n"
            f"  sum by (namespace, job) (rate(registry_http_requests_total{{{t.registries()}}}[{w5}]))\n"
            f") > {_seconds(m.error_percent / 100)}\n"
            "and\n"
            f"sum by (namespace, job) (rate(registry_http_requests_total{{{t.registries()}}}[{w5}])) > 0.05",
            timing.hold(600),
            "{{ $labels.job }}: {{ $value | humanizePercentage }} of responses are 5xx",
            f"More than {m.error_percent}% of a registry's responses have been 5xx for {timing.hold(600)} "
            f"({w5} rate, at least 0.05 requests/s). The 503s a registry sends while its storage health check "
            "fails are not counted here (RegistryStorageUnhealthy covers them).",
            f"the errors in the logs of the deployment the job label names (job minus -metrics): "
            f"`{kubectl} logs deploy/<deployment> --since=15m | grep '\"level\":\"error\"'`. S3 AccessDenied, "
            "SlowDown and KMS errors are the usual causes; on the cache, the upstream's toomanyrequests.",
        ),
        Alert(
            "RegistryHighManifestLatencyP99", "registry-errors-latency", "warning",
            "histogram_quantile(0.99,\n"
            f'  sum by (namespace, job, le) (rate(registry_http_request_duration_seconds_bucket{{{private_manifest}}}[{w5}]))\n'
            f") > {_seconds(m.manifest_p99_s)}",
            timing.hold(900),
            "Private registry manifest p99 is {{ $value | humanizeDuration }}",
            f"The p99 of the private registry's manifest requests (the first call of every pull and push) has "
            f"been above {_seconds(m.manifest_p99_s)}s for {timing.hold(900)}. Blob requests are left out: their "
            "duration includes streaming the layer.",
            "the dashboard's Storage action p99 (slow S3), then Redis call latency p99 and the pods' CPU.",
        ),
        Alert(
            "RegistryStorageUnhealthy", "registry-storage", "critical",
            # The registry container's readiness, not the pod's: with authEnabled the pod also holds the auth
            # proxy and the token server, whose failures are not a storage problem.
            f'max by (namespace, pod) (kube_pod_container_status_ready{{namespace="{ns}",container="registry"}}) == 0\n'
            "and on (namespace, pod)\n"
            f"max by (namespace, pod) (up{{{t.registries()}}}) == 1",
            timing.hold(120),
            "{{ $labels.pod }}: up but not Ready (storage health check failing)",
            f"The registry in the pod answers on :5001 but its container has failed its readiness probe (GET /) for "
            f"{timing.hold(120)}: Distribution answers 503 once its S3 health check (every 10s) has failed 3 times in "
            "a row, and the pod leaves the Service (needs kube-state-metrics).",
            f"`{kubectl} port-forward pod/{{{{ $labels.pod }}}} 5001` and `curl -s 127.0.0.1:5001/debug/health` "
            "shows the S3 error; then the S3 credentials and IAM policy (AccessDenied), the bucket, the region "
            "and the KMS key policy.",
        ),
        Alert(
            "RegistryStorageStalled", "registry-storage", "critical",
            f'sum by (namespace, job, pod) (rate(registry_storage_action_seconds_count{{{stat}}}[{timing.window(120)}])) == 0\n'
            f"and on (namespace, job, pod) up{{{t.registries()}}} == 1",
            timing.hold(120),
            "{{ $labels.pod }}: no S3 call has completed recently (S3 hanging?)",
            f"The storage health check's S3 Stat (every 10s) has not completed on the pod over {timing.window(120)}, "
            f"for {timing.hold(120)}, although the process is up: S3 hangs. A hanging S3 never fails the health "
            "check (it has no timeout), so the pod stays Ready while pulls hang.",
            f"S3 reachability from the nodes (VPC endpoint, DNS, NAT gateway), the AWS S3 status, and "
            f"`{kubectl} logs {{{{ $labels.pod }}}} | grep -i s3`.",
        ),
        Alert(
            "RegistryStorageSlowP99", "registry-storage", "warning",
            "histogram_quantile(0.99,\n"
            f'  sum by (namespace, job, action, le) (rate(registry_storage_action_seconds_bucket{{{storage_calls}}}[{w5}]))\n'
            f") > {_seconds(m.storage_p99_s)}",
            timing.hold(900),
            "{{ $labels.job }}: S3 {{ $labels.action }} p99 is {{ $value | humanizeDuration }}",
            f"The p99 of the registry's S3 calls has been above {_seconds(m.storage_p99_s)}s for {timing.hold(900)} "
            "(List and Move are left out: they grow with the data).",
            "SlowDown (throttling) in the registry logs, the network path to S3 (NAT gateway limits), and "
            "whether one pod or all are slow (the dashboard's Storage action p99).",
        ),
        Alert(
            "RegistryRedisCacheErrors", "registry-redis", "warning",
            f"sum by (namespace, job, pod) (increase(registry_storage_cache_errors_total{{{t.registries()}}}[{w5}])) > {m.redis_errors}",
            timing.hold(300),
            "{{ $labels.pod }}: Redis lookups fail ({{ $value | printf \"%.0f\" }} in " + w5 + ")",
            f"More than {m.redis_errors} blob-descriptor lookups in Redis failed on the pod within {w5}, for "
            f"{timing.hold(300)}. Pulls still work: each failed lookup falls back to S3, slower by up to redisTimeout.",
            f"`{kubectl} get pods -l app.kubernetes.io/name={t.redis_app}` and `{kubectl} logs deploy/{t.redis_app}` "
            "(OOMKilled? maxmemory?), then the Redis password in the registry's config Secret.",
        ),
    ]
    if t.cache_job:
        out += [
            Alert(
                "RegistryCacheDown", "registry-cache", "warning",
                # one series per cache, labelled with its job, so each cache alerts on its own
                "\nor\n".join(
                    f'label_replace((count(up{{job="{c.job}",namespace="{ns}"}} == 1) or vector(0)) < {c.replicas}, '
                    f'"job", "{c.job}", "", "")'
                    for c in t.caches
                ),
                timing.hold(300),
                "The pull-through cache {{ $labels.job }} is down",
                f"No pod of the cache has answered on :5001 for {timing.hold(300)}: nodes pulling through it "
                "fail or fall back to the upstream.",
                f"`{kubectl} get pods -l app.kubernetes.io/component=mirror` and "
                f"`{kubectl} logs deploy/<the cache> --previous` (the job name minus -metrics).",
                (("namespace", ns),),
            ),
            Alert(
                "RegistryCacheHighManifestLatencyP99", "registry-cache", "warning",
                "histogram_quantile(0.99,\n"
                f'  sum by (namespace, job, le) (rate(registry_http_request_duration_seconds_bucket{{{cache_manifest}}}[{w5}]))\n'
                f") > {_seconds(m.cache_manifest_p99_s)}",
                timing.hold(900),
                "Pull-through cache manifest p99 is {{ $value | humanizeDuration }}",
                f"The p99 of the cache's manifest requests has been above {_seconds(m.cache_manifest_p99_s)}s for "
                f"{timing.hold(900)} (a miss includes the round trip to the upstream).",
                "the upstream's status and the cluster's egress to it, then the Storage action p99 as for the "
                "private registry.",
            ),
            Alert(
                "RegistryCacheUpstreamFailing", "registry-cache", "warning",
                "(\n"
                f'  sum by (namespace, job) (rate(registry_http_requests_total{{{cache_failed}}}[{w15}]))\n'
                "  /\n"
                f'  sum by (namespace, job) (rate(registry_http_requests_total{{{cache_content}}}[{w15}]))\n'
                f") > {_seconds(m.upstream_error_percent / 100)}\n"
                "and on (namespace, job)\n"
                f'sum by (namespace, job) (increase(registry_http_requests_total{{{cache_failed}}}[{w15}])) >= 5\n'
                "and on (namespace, job)\n"
                f"sum by (namespace, job) (increase(registry_proxy_misses_total{{{t.cache()}}}[{w15}])) == 0",
                timing.hold(600),
                "The pull-through cache gets nothing from its upstream ({{ $value | humanizePercentage }} of requests fail)",
                f"More than {m.upstream_error_percent}% (and at least 5) of the cache's manifest and blob responses "
                f"over {w15} were 404 or 5xx while it fetched nothing from its upstream, for {timing.hold(600)}. With "
                "the upstream unreachable or rate limiting (429), Distribution 3.1.1 answers 404 for tags it has not "
                "cached and 500 for digests and blobs it has not cached; cached content keeps serving.",
                f"`{kubectl} logs deploy/<the cache> | grep -E 'toomanyrequests|dial tcp|unauthorized'`, the "
                "cluster's egress to the upstream (the cache's remoteUrl in mirrors), its credentials and pull rate limit. "
                "If RegistryStorageUnhealthy or RegistryStorageStalled fires for the cache pod too, the cause is its S3.",
            ),
        ]
    return out


GROUPS = ("registry-availability", "registry-errors-latency", "registry-storage", "registry-redis", "registry-cache")


def rule_groups(settings: Settings, timing: Timing = CLUSTER) -> list[dict]:
    """The `groups` of the PrometheusRule (and of a Prometheus rule file: same shape)."""
    by_group: dict[str, list[dict]] = {}
    for alert in alerts(settings, timing):
        by_group.setdefault(alert.group, []).append(alert.rule(settings.monitoring.runbook_url))
    return [{"name": name, "rules": by_group[name]} for name in GROUPS if name in by_group]


def prometheus_rule_spec(settings: Settings) -> dict:
    return {"groups": rule_groups(settings)}


def rule_file(settings: Settings, timing: Timing = CLUSTER) -> str:
    """A Prometheus rule file (`rule_files:`, `promtool check rules`) with the same groups."""
    import yaml

    class Dumper(yaml.SafeDumper):
        pass

    Dumper.add_representer(
        str, lambda d, s: d.represent_scalar("tag:yaml.org,2002:str", s, style="|" if "\n" in s else None)
    )
    return yaml.dump({"groups": rule_groups(settings, timing)}, Dumper=Dumper, sort_keys=False, width=1000)


def prometheus_rule_name(settings: Settings) -> str:
    return f"{settings.registry.service_name}-alerts"


# --------------------------------------------------------------------------- dashboard


@dataclass(frozen=True)
class Panel:
    title: str
    unit: str
    targets: tuple[tuple[str, str], ...]  # (legend, PromQL with Grafana variables)
    row: str


def panels(settings: Settings) -> list[Panel]:
    t = Targets.of(settings)
    p = 'namespace="$namespace",job="$job_private"'
    c = 'namespace="$namespace",job=~"$job_cache"'
    both = 'namespace="$namespace",job=~"$job_private|$job_cache"' if t.cache_job else p
    ri = RATE_INTERVAL
    out = [
        Panel("Request rate per replica", "reqps", (
            ("{{pod}}", f"sum by (pod) (rate(registry_http_requests_total{{{p}}}[{ri}]))"),), "Private registry"),
        Panel("5xx error ratio per replica", "percentunit", (
            # a pod that never answered 5xx has no code="5.." series: count it as 0, not as missing
            ("{{pod}}", f'(sum by (pod) (rate(registry_http_requests_total{{{p},code=~"5.."}}[{ri}]))'
                        f" or sum by (pod) (rate(registry_http_requests_total{{{p}}}[{ri}])) * 0)"
                        f" / sum by (pod) (rate(registry_http_requests_total{{{p}}}[{ri}]))"),), "Private registry"),
        Panel("Responses by status code", "reqps", (
            ("{{code}}", f"sum by (code) (rate(registry_http_requests_total{{{p}}}[{ri}]))"),), "Private registry"),
        Panel("Manifest latency p50 / p90 / p99", "s", tuple(
            (f"p{int(q * 100)}", f"histogram_quantile({q}, sum by (le) (rate(registry_http_request_duration_seconds_bucket"
                                 f'{{{p},handler="manifest"}}[{ri}])))')
            for q in (0.5, 0.9, 0.99)), "Private registry"),
        Panel("p99 latency by handler", "s", (
            ("{{handler}} {{method}}", "histogram_quantile(0.99, sum by (le, handler, method) "
                                       f"(rate(registry_http_request_duration_seconds_bucket{{{p}}}[{ri}])))"),), "Private registry"),
        Panel("Bytes served (blob GET) per replica", "Bps", (
            ("{{pod}}", f'sum by (pod) (rate(registry_http_response_size_bytes_sum{{{p},handler="blob"}}[{ri}]))'),), "Private registry"),
        Panel("Bytes received (uploads) per replica", "Bps", (
            ("{{pod}}", f'sum by (pod) (rate(registry_http_request_size_bytes_sum{{{p},handler=~"blob_upload|blob_upload_chunk"}}[{ri}]))'),), "Private registry"),
        Panel("Replicas ready", "short", (
            ("up (scraped)", f"count(up{{{p}}} == 1) or vector(0)"),
            ("ready (kube-state-metrics)", f'sum(kube_deployment_status_replicas_ready{{namespace="$namespace",deployment="{t.private_app}"}})'),
            ("configured", f"vector({t.replicas})"),), "Private registry"),
        Panel("Process restarts (1h)", "short", (
            ("{{pod}}", f"changes(process_start_time_seconds{{{both}}}[1h])"),), "Private registry"),
        Panel("Storage action p99 by action", "s", (
            ("{{job}} {{action}}", "histogram_quantile(0.99, sum by (le, job, action) "
                                   f"(rate(registry_storage_action_seconds_bucket{{{both}}}[{ri}])))"),), "Storage (S3)"),
        Panel("Storage actions per second", "ops", (
            ("{{job}} {{action}}", f"sum by (job, action) (rate(registry_storage_action_seconds_count{{{both}}}[{ri}]))"),), "Storage (S3)"),
        Panel("Redis cache hit ratio", "percentunit", (
            ("{{job}}", f"sum by (job) (rate(registry_storage_cache_hits_total{{{both}}}[{ri}]))"
                        f" / sum by (job) (rate(registry_storage_cache_requests_total{{{both}}}[{ri}]))"),), "Redis"),
        Panel("Redis lookup errors per second", "ops", (
            ("{{pod}}", f"sum by (pod) (rate(registry_storage_cache_errors_total{{{both}}}[{ri}]))"),), "Redis"),
        Panel("Redis call latency p99", "s", (
            ("{{job}} {{operation}}", "histogram_quantile(0.99, sum by (le, job, operation) "
                                      f"(rate(registry_storage_cache_redis_seconds_bucket{{{both}}}[{ri}])))"),), "Redis"),
    ]
    if t.cache_job:
        row = "Pull-through cache"
        out += [
            Panel("Cache: bytes from upstream / to clients", "Bps", (
                ("from upstream {{job}} {{type}}", f"sum by (job, type) (rate(registry_proxy_pulled_bytes_total{{{c}}}[{ri}]))"),
                ("to clients {{job}} {{type}}", f"sum by (job, type) (rate(registry_proxy_pushed_bytes_total{{{c}}}[{ri}]))"),), row),
            Panel("Cache: upstream fetches and hits per second", "ops", (
                ("fetched from upstream {{job}} {{type}}", f"sum by (job, type) (rate(registry_proxy_misses_total{{{c}}}[{ri}]))"),
                ("served from the cache {{job}} {{type}}", f"sum by (job, type) (rate(registry_proxy_hits_total{{{c}}}[{ri}]))"),), row),
            Panel("Cache: hit ratio", "percentunit", (
                ("{{job}} {{type}}", f"sum by (job, type) (rate(registry_proxy_hits_total{{{c}}}[{ri}]))"
                                     f" / sum by (job, type) (rate(registry_proxy_requests_total{{{c}}}[{ri}]))"),), row),
            Panel("Cache: responses by status code", "reqps", (
                ("{{job}} {{handler}} {{code}}", f"sum by (job, handler, code) (rate(registry_http_requests_total{{{c}}}[{ri}]))"),), row),
            Panel("Cache: replicas up", "short", (
                ("up (scraped) {{job}}", f"count by (job) (up{{{c}}} == 1)"),
                ("configured (all caches)", f"vector({sum(cache.replicas for cache in t.caches)})"),), row),
        ]
    return out


def dashboard(settings: Settings) -> dict:
    """The Grafana dashboard (JSON model, schema 39). Job names are constants filled in from settings."""
    t = Targets.of(settings)
    datasource = {"type": "prometheus", "uid": "${datasource}"}
    grafana_panels: list[dict] = []
    y, x, panel_id, row = 0, 0, 1, None
    for panel in panels(settings):
        if panel.row != row:
            y += 8 if x else 0
            x = 0
            row = panel.row
            grafana_panels.append({"id": panel_id, "type": "row", "title": row, "collapsed": False,
                                   "gridPos": {"h": 1, "w": 24, "x": 0, "y": y}, "panels": []})
            panel_id += 1
            y += 1
        grafana_panels.append({
            "id": panel_id,
            "type": "timeseries",
            "title": panel.title,
            "datasource": datasource,
            "gridPos": {"h": 8, "w": 12, "x": x, "y": y},
            "fieldConfig": {"defaults": {"unit": panel.unit}, "overrides": []},
            "options": {"legend": {"displayMode": "list", "placement": "bottom"}, "tooltip": {"mode": "multi"}},
            "targets": [{"refId": chr(ord("A") + i), "datasource": datasource, "expr": expr, "legendFormat": legend}
                        for i, (legend, expr) in enumerate(panel.targets)],
        })
        panel_id += 1
        x = 12 - x
        y += 8 if x == 0 else 0
    variables = [
        {"name": "datasource", "type": "datasource", "query": "prometheus", "hide": 0, "current": {}},
        {"name": "namespace", "type": "query", "datasource": datasource, "hide": 0, "refresh": 2,
         "query": {"query": f'label_values(up{{job="{t.private_job}"}}, namespace)', "refId": "namespace"},
         "definition": f'label_values(up{{job="{t.private_job}"}}, namespace)',
         "current": {"text": t.namespace, "value": t.namespace}},
        # the job label is the metrics Service's name (ServiceMonitor): fixed by the program's settings
        {"name": "job_private", "type": "constant", "query": t.private_job, "hide": 2},
    ]
    if t.cache_job:
        variables.append({"name": "job_cache", "type": "constant", "query": t.cache_job, "hide": 2})
    return {
        "uid": dashboard_name(settings),
        "title": f"Registry HA ({settings.stack})",
        "tags": ["registry", "distribution"],
        "timezone": "browser",
        "schemaVersion": 39,
        "refresh": "30s",
        "time": {"from": "now-3h", "to": "now"},
        "templating": {"list": variables},
        "panels": grafana_panels,
    }


def dashboard_name(settings: Settings) -> str:
    return f"registry-ha-{settings.stack}"


def dashboard_configmap_data(settings: Settings) -> dict[str, str]:
    return {f"{dashboard_name(settings)}.json": json.dumps(dashboard(settings), indent=2)}


def dashboard_queries(board: dict) -> list[tuple[str, str, str]]:
    """(panel title, refId, expr) of every query on the dashboard."""
    return [(p["title"], q["refId"], q["expr"]) for p in board["panels"] if p["type"] != "row" for q in p["targets"]]


def expand(expr: str, board: dict, rate_interval: str, namespace: Optional[str] = None) -> str:
    """A dashboard query as Grafana sends it: its constants, the namespace and $__rate_interval filled in."""
    values = {v["name"]: v["query"] for v in board["templating"]["list"] if v["type"] == "constant"}
    namespace_var = next(v for v in board["templating"]["list"] if v["name"] == "namespace")
    values["namespace"] = namespace or namespace_var["current"]["value"]
    values["__rate_interval"] = rate_interval
    return re.sub(r"\$(\w+)", lambda m: values[m.group(1)], expr)


def needs_kube_state_metrics(expr: str) -> bool:
    return bool(KUBE_STATE_METRICS.search(expr))
