"""`python -m bench.alerts`: what a healthy sandbox reads against each alert threshold, and how long
the alerts the sandbox can provoke take to fire after the fault (a replica SIGKILLed, Redis killed,
the cache's upstream stopped). Writes bench/alerts.json, which docs/monitoring.md quotes.

The sandbox runs the program's rules with `monitoring.SANDBOX` timing (1 s scrapes; every `for:`
and window divided by 30, at least 15 s / 30 s), so these are the sandbox's times, not a cluster's.
The drills here are also what tests/integration/test_10_monitoring.py runs (with generous bounds).
"""
from __future__ import annotations

import datetime as dt
import http.client
import json
import os
import platform
import re
import signal
import sys
import time
from pathlib import Path
from typing import Optional

from registry_ha import monitoring
from registry_ha.imagetools import plain_request
from registry_ha.k8s import Names
from registry_ha.sandbox import prometheus
from registry_ha.sandbox.binaries import binary_version
from registry_ha.sandbox.core import Sandbox

from bench.client import PullError, build_image, pull, push

BENCH_DIR = Path(__file__).resolve().parent
RESULT = BENCH_DIR / "alerts.json"
PULL_ERRORS = (OSError, PullError, http.client.HTTPException)
KiB = 1024


def _seconds(duration: str) -> int:
    return sum(int(n) * {"s": 1, "m": 60, "h": 3600}[u] for n, u in re.findall(r"(\d+)([smh])", duration))


def hold_of(sb: Sandbox, alertname: str) -> int:
    """The `for:` the sandbox's Prometheus applies to `alertname`, in seconds."""
    alert = next(a for a in monitoring.alerts(sb.settings, monitoring.SANDBOX) if a.name == alertname)
    return _seconds(alert.hold or "0s")


def _every(seconds: float, action):
    """`action` at most once per `seconds` (the traffic a drill keeps up while it waits)."""
    last = [0.0]

    def run() -> None:
        if time.monotonic() - last[0] >= seconds:
            last[0] = time.monotonic()
            action()

    return run


def _fired(sb: Sandbox, fault: str, seen: dict, **extra) -> dict:
    cluster = next(a for a in monitoring.alerts(sb.settings) if a.name == seen["alert"])
    return {"fault": fault, **seen, "sandbox_for_s": hold_of(sb, seen["alert"]), "cluster_for": cluster.hold, **extra}


def counter_total(address: str, family: str) -> float:
    """Sum of a counter family on a registry's debug port."""
    status, _, body = plain_request(address, "GET", "/metrics", timeout=5)
    if status != 200:
        return 0.0
    return sum(float(v) for v in re.findall(rf"^{family}(?:{{[^}}]*}})? (\S+)$", body.decode(), re.M))


# --------------------------------------------------------------------------- drills


def kill_replica(sb: Sandbox, prom: str, victim: str = "registry-2", timeout: float = 90) -> dict:
    """SIGKILL one replica: RegistryReplicasDown goes pending, then fires after its `for:`."""
    comp = sb.components[victim]
    try:
        t0 = time.time()
        os.kill(comp.pid, signal.SIGKILL)
        seen = prometheus.watch_alert(prom, "RegistryReplicasDown", t0, timeout)
    finally:
        sb.start(victim)
    return _fired(sb, f"SIGKILL {victim}", seen)


def kill_redis(sb: Sandbox, prom: str, timeout: float = 90) -> dict:
    """SIGKILL Redis while an image is pulled through the LB every 0.5 s (pulls keep working: each
    blob lookup falls back to S3): RegistryRedisCacheErrors fires."""
    image = build_image((16 * KiB, 64 * KiB), label=f"alerts-redis-{os.urandom(4).hex()}")
    repo = "alerts/redis"
    push(sb.endpoint, repo, "v1", image)
    replicas = [sb.debug_address(name) for name in sb.replica_names()]
    pulls = {"ok": 0, "failed": 0}

    def one_pull() -> None:
        try:
            pull(sb.endpoint, repo, "v1", image, timeout=15)
            pulls["ok"] += 1
        except PULL_ERRORS:
            pulls["failed"] += 1

    errors_before = sum(counter_total(a, "registry_storage_cache_errors_total") for a in replicas)
    redis = sb.components["redis"]
    try:
        t0 = time.time()
        os.kill(redis.pid, signal.SIGKILL)
        seen = prometheus.watch_alert(prom, "RegistryRedisCacheErrors", t0, timeout, _every(0.5, one_pull))
        errors = sum(counter_total(a, "registry_storage_cache_errors_total") for a in replicas) - errors_before
    finally:
        sb.start("redis")
    per_pull = round(errors / pulls["ok"], 1) if pulls["ok"] else None
    return _fired(sb, "SIGKILL redis, pulls every 0.5 s", seen, pulls_ok=pulls["ok"], pulls_failed=pulls["failed"],
                  lookup_errors=errors, lookup_errors_per_pull=per_pull)


def stop_upstream(sb: Sandbox, prom: str, timeout: float = 150) -> dict:
    """Stop the cache's upstream (the stand-in) and pull an image the cache has not cached every 0.5 s:
    the cache answers 404 and fetches nothing, and RegistryCacheUpstreamFailing fires once its window
    no longer holds the cache's last successful upstream fetch."""
    mirror = sb.mirror_address()
    assert mirror is not None and sb.upstream_stand_in, "needs the cache in front of the local stand-in"
    image = build_image((16 * KiB,), label=f"alerts-upstream-{os.urandom(4).hex()}")
    repo = f"alerts/uncached-{os.urandom(3).hex()}"
    push(sb.components["upstream"].address, repo, "v1", image)
    attempts = {"refused": 0, "served": 0}

    def one_pull() -> None:
        try:
            pull(mirror, repo, "v1", image, timeout=15)
            attempts["served"] += 1
        except PULL_ERRORS:
            attempts["refused"] += 1

    try:
        sb.stop("upstream")
        t0 = time.time()
        seen = prometheus.watch_alert(prom, "RegistryCacheUpstreamFailing", t0, timeout, _every(0.5, one_pull))
    finally:
        sb.start("upstream")
    served_after = None
    try:
        pull(mirror, repo, "v1", image, timeout=30)
        served_after = True
    except PULL_ERRORS:
        served_after = False
    return _fired(sb, "upstream stopped, uncached pulls every 0.5 s", seen, pulls_refused=attempts["refused"],
                  pulls_served=attempts["served"], served_after_restore=served_after)


# --------------------------------------------------------------------------- healthy baseline


def healthy_baseline(sb: Sandbox, prom: str, rounds: int = 20) -> dict:
    """Pushes and pulls through the LB and the cache, then what Prometheus reads over that time on
    each alert's signal (nothing may fire)."""
    t0 = time.monotonic()
    images = [build_image((16 * KiB, 256 * KiB, 1024 * KiB), label=f"alerts-base-{i}-{os.urandom(4).hex()}") for i in range(3)]
    for i, image in enumerate(images):
        push(sb.endpoint, f"alerts/base{i}", "v1", image)
        push(sb.components["upstream"].address, f"alerts/base{i}", "v1", image)
    for r in range(rounds):
        for i, image in enumerate(images):
            pull(sb.endpoint, f"alerts/base{i}", "v1", image)
            pull(sb.mirror_address(), f"alerts/base{i}", "v1", image)
    time.sleep(3)  # the last scrapes
    window = f"{int(time.monotonic() - t0) + 5}s"
    private = Names.for_registry(sb.settings, "private").metrics_service
    docker_hub = next(c for c in sb.settings.caches if c.host == "docker.io")
    cache = Names.for_registry(sb.settings, "mirror", docker_hub).metrics_service
    ns = sb.settings.namespace

    def one(expr: str) -> Optional[float]:
        result = prometheus.query(prom, expr)
        return round(float(result[0]["value"][1]), 4) if result else None

    def p99(metric: str, selector: str) -> Optional[float]:
        return one(f"histogram_quantile(0.99, sum by (le) (increase({metric}_bucket{{{selector}}}[{window}])))")

    readings = {
        "window": window,
        "pulls": rounds * len(images) * 2,
        "manifest_p99_s": p99("registry_http_request_duration_seconds", f'job="{private}",namespace="{ns}",handler="manifest"'),
        "cache_manifest_p99_s": p99("registry_http_request_duration_seconds", f'job="{cache}",namespace="{ns}",handler="manifest"'),
        "storage_p99_s": p99("registry_storage_action_seconds",
                             f'job=~"{private}|{cache}",namespace="{ns}",action=~"GetContent|PutContent|Stat|Delete"'),
        "responses": one(f'sum(increase(registry_http_requests_total{{namespace="{ns}"}}[{window}]))'),
        "responses_5xx": one(f'sum(increase(registry_http_requests_total{{namespace="{ns}",code=~"5.."}}[{window}])) or vector(0)'),
        "cache_failed_share": one(
            f'(sum(increase(registry_http_requests_total{{job="{cache}",namespace="{ns}",handler=~"manifest|blob",code=~"404|5.."}}[{window}])) or vector(0))'
            f' / sum(increase(registry_http_requests_total{{job="{cache}",namespace="{ns}",handler=~"manifest|blob"}}[{window}]))'),
        "redis_lookup_errors": one(f'sum(increase(registry_storage_cache_errors_total{{namespace="{ns}"}}[{window}]))'),
        "redis_hit_ratio": one(f'sum(increase(registry_storage_cache_hits_total{{namespace="{ns}"}}[{window}]))'
                               f' / sum(increase(registry_storage_cache_requests_total{{namespace="{ns}"}}[{window}]))'),
        "firing": sorted({a["labels"]["alertname"] for a in prometheus.active_alerts(prom)}),
    }
    return readings


# --------------------------------------------------------------------------- the run


def run(out=sys.stderr) -> dict:
    from bench.env import BenchEnv

    env = BenchEnv(out=out)
    started = dt.datetime.now(dt.timezone.utc)
    try:
        env.up()
        sb = env.sandbox
        assert sb is not None
        sb.enable_prometheus()
        sb.start("prometheus")
        prom = sb.components["prometheus"].address
        time.sleep(35)  # a full 30 s window of scrapes before anything is judged
        out.write("bench: alerts: healthy baseline ...\n")
        baseline = healthy_baseline(sb, prom)
        drills = []
        for drill in (kill_replica, kill_redis, stop_upstream):
            out.write(f"bench: alerts: {drill.__name__} ...\n")
            drills.append(drill(sb, prom))
            time.sleep(5)
        versions = {"prometheus": binary_version(prometheus.binary()), "registry": sb.settings.registry.image}
    finally:
        env.close()
    return {
        "date": started.isoformat(timespec="seconds"),
        "command": "python -m bench.alerts",
        "nproc": os.cpu_count(),
        "machine": f"{platform.system()} {platform.release()} {platform.machine()}, Python {platform.python_version()}",
        "versions": versions,
        "scrape_interval": prometheus.SCRAPE_INTERVAL,
        "baseline": baseline,
        "drills": drills,
    }


def main() -> int:
    result = run()
    RESULT.write_text(json.dumps(result, indent=2) + "\n")
    for d in result["drills"]:
        print(f"{d['fault']:<48} {d['alert']:<30} pending {d['pending_s']} s, firing {d['firing_s']} s "
              f"(sandbox for: {d['sandbox_for_s']} s)")
    print(f"baseline: {json.dumps(result['baseline'])}\nresults: {RESULT.relative_to(BENCH_DIR.parent)}")
    return 0 if all(d["firing_s"] is not None for d in result["drills"]) else 1


if __name__ == "__main__":
    sys.exit(main())
