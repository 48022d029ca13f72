"""12. The program's alert rules and dashboard on a real Prometheus (Debian's 2.42) scraping the session
sandbox's debug ports every second, with the rendered rules loaded (sandbox timing: every `for:` and
window divided by 30).

After pushes and pulls every dashboard query returns at least one series through the HTTP API (a
wrong metric name, a label that does not exist or a bad window returns none); then three faults,
each put back before the next: SIGKILL a replica (RegistryReplicasDown), kill Redis
(RegistryRedisCacheErrors), stop the cache's upstream and pull an uncached image
(RegistryCacheUpstreamFailing). Each alert must go pending, then fire after its `for:`; the times
are printed (bench/alerts.json records them for the docs).
"""
from __future__ import annotations

import pytest

from bench import alerts as drills
from conftest import require_binary
from registry_ha import monitoring
from registry_ha.sandbox import procs, prometheus

from .oci import build_image, pull_dir, push

pytestmark = pytest.mark.integration

SLACK_S = 30  # scrape + evaluation + polling on a loaded 2-core CI box: generous on purpose
QUERY_DEADLINE_S = 30


@pytest.fixture(scope="module")
def prom(sandbox):
    require_binary("prometheus")
    sandbox.enable_prometheus()
    sandbox.start("prometheus")
    address = sandbox.components["prometheus"].address

    def scraped() -> list[str]:
        targets = prometheus.api(address, "targets")["activeTargets"]
        return sorted(t["labels"]["pod"] for t in targets if t["health"] == "up")

    caches = [c.component_name for c in sandbox.settings.caches]
    expected = sorted([*caches, *sandbox.replica_names()])
    assert procs.wait_until(lambda: scraped() == expected, 20, 0.5), scraped()
    yield address
    sandbox.stop("prometheus")


def rule_health(address: str) -> dict[str, str]:
    return {r["name"]: r["health"] for g in prometheus.api(address, "rules")["groups"] for r in g["rules"]}


def test_prometheus_loads_the_rendered_rules(sandbox, prom):
    loaded = (sandbox.config_dir / "prometheus-rules.yml").read_text()
    assert loaded == monitoring.rule_file(sandbox.settings, monitoring.SANDBOX)
    assert procs.wait_until(lambda: set(rule_health(prom).values()) == {"ok"}, 20, 0.5), rule_health(prom)
    assert sorted(rule_health(prom)) == sorted(a.name for a in monitoring.alerts(sandbox.settings))


def test_every_dashboard_query_returns_series_after_pushes_and_pulls(sandbox, prom, skopeo_bin, workdir):
    image = build_image(workdir / "layout", "v1", layer_sizes=(16 * 1024, 256 * 1024))
    assert push(skopeo_bin, image, sandbox.endpoint, "it/dashboard").returncode == 0
    upstream = sandbox.components["upstream"].address
    assert push(skopeo_bin, image, upstream, "library/dashboard").returncode == 0
    for i in range(3):  # the LB spreads these over the replicas; the cache: one cold pull, then warm ones
        assert pull_dir(skopeo_bin, sandbox.endpoint, "it/dashboard:v1", workdir / f"lb{i}").returncode == 0
        assert pull_dir(skopeo_bin, sandbox.mirror_address(), "library/dashboard:v1", workdir / f"cache{i}").returncode == 0

    board = monitoring.dashboard(sandbox.settings)
    rate_interval = f"{4 * int(prometheus.SCRAPE_INTERVAL.rstrip('s'))}s"  # Grafana's $__rate_interval: 4 scrapes
    queries = monitoring.dashboard_queries(board)
    cluster_only = [(t, r) for t, r, e in queries if monitoring.needs_kube_state_metrics(e)]
    assert cluster_only == [("Replicas ready", "B")]  # kube-state-metrics: not in the sandbox
    results: dict = {}

    def all_answer() -> bool:
        for title, ref, expr in queries:
            if (title, ref) not in cluster_only and not results.get((title, ref)):
                results[(title, ref)] = prometheus.query(prom, monitoring.expand(expr, board, rate_interval))
        return all(results.get((t, r)) for t, r, _ in queries if (t, r) not in cluster_only)

    assert procs.wait_until(all_answer, QUERY_DEADLINE_S, 0.5), [
        f"{t} / {r}: {monitoring.expand(e, board, rate_interval)}" for t, r, e in queries
        if (t, r) not in cluster_only and not results.get((t, r))]
    # the default latency thresholds are bucket boundaries of 3.1.1's histograms (no interpolation there)
    for metric, threshold in (("registry_http_request_duration_seconds", sandbox.settings.monitoring.manifest_p99_s),
                              ("registry_http_request_duration_seconds", sandbox.settings.monitoring.cache_manifest_p99_s),
                              ("registry_storage_action_seconds", sandbox.settings.monitoring.storage_p99_s)):
        bounds = {float(s["metric"]["le"]) for s in prometheus.query(prom, f"count by (le) ({metric}_bucket)")}
        assert float(threshold) in bounds, (metric, threshold, sorted(bounds))
    panels = {t for t, _, _ in queries}
    print(f"\ndashboard: {len(queries) - len(cluster_only)} queries on {len(panels)} panels each returned series "
          f"({sum(len(v) for v in results.values())} in all, $__rate_interval={rate_interval}); "
          f"{len(cluster_only)} needs kube-state-metrics")


def test_registries_run_without_trace_export_errors(sandbox, prom):
    """The program's Deployment sets OTEL_TRACES_EXPORTER=none; the sandbox's registries get it too."""
    for name in (*sandbox.replica_names(), *(c.component_name for c in sandbox.settings.caches)):
        assert "traces export" not in sandbox.log_path(name).read_text(errors="replace"), name


def assert_fired(result: dict, bound_s: float) -> None:
    """Pending first, firing once its `for:` has passed, within `bound_s` of the fault."""
    hold = result["sandbox_for_s"]
    print(f"\n{result['alert']}: {result['fault']}: pending after {result['pending_s']} s, firing after "
          f"{result['firing_s']} s (for: {hold} s in the sandbox, {result['cluster_for']} in the cluster)")
    assert result["pending_s"] is not None and result["firing_s"] is not None, result
    assert result["firing_s"] - result["pending_s"] >= hold - 1.5, result
    assert result["firing_s"] <= bound_s, result


def test_sigkill_a_replica_fires_replicas_down(sandbox, prom):
    hold = drills.hold_of(sandbox, "RegistryReplicasDown")
    result = drills.kill_replica(sandbox, prom, "registry-2", timeout=hold + 60)
    assert_fired(result, hold + SLACK_S)
    assert result["value"] in ("2", "2e+00") and result["labels"]["deployment"] == "docker-registry"
    assert sandbox.healthy("registry-2")


def test_killing_redis_fires_redis_cache_errors(sandbox, prom):
    hold = drills.hold_of(sandbox, "RegistryRedisCacheErrors")
    result = drills.kill_redis(sandbox, prom, timeout=hold + 90)
    assert_fired(result, hold + SLACK_S)
    assert result["pulls_ok"] > 0 and result["pulls_failed"] == 0, result  # a cache, not a dependency
    assert result["labels"]["pod"] in sandbox.replica_names()
    assert sandbox.healthy("redis")


def test_stopping_the_upstream_fires_upstream_failing(sandbox, prom):
    hold = drills.hold_of(sandbox, "RegistryCacheUpstreamFailing")
    # its 30 s window must first forget the cache's last successful upstream fetch
    result = drills.stop_upstream(sandbox, prom, timeout=hold + 120)
    assert_fired(result, hold + 30 + SLACK_S)
    assert result["pulls_refused"] > 0 and result["pulls_served"] == 0, result
    assert result["served_after_restore"] is True, result
    assert sandbox.healthy("upstream")


def test_local_up_with_prometheus_prints_its_url_and_down_stops_it(tmp_path):
    """The operator's path: `local up --with-prometheus` starts it next to the sandbox on 127.0.0.1 and
    prints its URL; `local down` stops it with the rest. Debian's own service stays off (:9090 free)."""
    import json
    import os
    import re
    import subprocess

    from .conftest import REPO_ROOT, free_port, free_port_base

    script = REPO_ROOT / "scripts" / "deploy-registry-ha.sh"
    env = {"PATH": os.environ.get("PATH", procs.SAFE_PATH), "HOME": os.environ.get("HOME", "/tmp")}
    base = free_port_base()
    opts = ["--state-dir", str(tmp_path / "state"), "--port", str(free_port()), "--port-base", str(base)]

    def local(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(script), "local", *args, *opts], capture_output=True, text=True, timeout=180, env=env)

    try:
        up = local("up", "--with-prometheus")
        assert up.returncode == 0, up.stderr
        url = re.search(r"^prometheus: (http://\S+)", up.stdout, re.M).group(1)
        assert url == f"http://127.0.0.1:{base + 91}"
        assert procs.http_status(url.removeprefix("http://"), "/-/ready") == 200
        status = json.loads(local("status", "--json").stdout)
        (prom,) = [c for c in status["components"] if c["role"] == "prometheus"]
        assert prom["healthy"] and prom["version"], prom
    finally:
        down = local("down")
    assert down.returncode == 0 and "stopped prometheus" in down.stderr, down.stderr
    assert not procs.port_listening(base + 91)
    assert not procs.port_listening(9090), "something listens on :9090 (Debian's prometheus service?)"
