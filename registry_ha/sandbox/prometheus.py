"""Prometheus next to the sandbox (`local up --with-prometheus`): Debian's prometheus on 127.0.0.1,
its own data directory under the state dir, scraping every registry's debug port every second.

Each target gets the labels the ServiceMonitor gives it in the cluster (`job` = the metrics
Service's name, `namespace`, `pod`, `service`, `endpoint`, `container`), so the program's own alert
rules and dashboard queries select the sandbox's series unchanged. The rules it loads are the
program's (`registry_ha.monitoring.rule_groups`) with one difference, `monitoring.SANDBOX` timing:
every `for:` and range window divided by 30 (1 s scrapes instead of 30 s), windows at least 30 s and
`for:` at least 15 s (the registry's storage health check still runs every 10 s). Thresholds,
labels and expressions are the PrometheusRule's.
"""
from __future__ import annotations

import http.client
import json
import shutil
import time
import urllib.parse
from datetime import datetime
from typing import TYPE_CHECKING, Callable, Optional

import yaml

from registry_ha import monitoring
from registry_ha.k8s import Names
from registry_ha.sandbox import procs
from registry_ha.sandbox.errors import SandboxError
from registry_ha.sandbox.secrets import write_private

if TYPE_CHECKING:
    from registry_ha.sandbox.core import Sandbox

SCRAPE_INTERVAL = "1s"
SCRAPE_TIMEOUT = "900ms"  # below the interval, as Prometheus requires


def binary() -> str:
    path = shutil.which("prometheus", path=procs.SAFE_PATH)
    if path is None:
        raise SandboxError("missing prometheus: sudo apt-get install -y --no-install-recommends prometheus "
                           "(or run ./scripts/bootstrap.sh)")
    return path


def _target(sb: "Sandbox", name: str, job: str) -> dict:
    return {
        "targets": [sb.debug_address(name)],
        "labels": {"namespace": sb.settings.namespace, "service": job, "endpoint": "metrics",
                   "container": "registry", "pod": name},
    }


def scrape_config(sb: "Sandbox") -> dict:
    """prometheus.yml: one job per registry workload, named like the ServiceMonitor names it."""
    jobs = []
    private_job = Names.for_registry(sb.settings, "private").metrics_service
    jobs.append({"job_name": private_job, "metrics_path": "/metrics",
                 "static_configs": [_target(sb, name, private_job) for name in sb.replica_names()]})
    for cache in sb.settings.caches:
        if cache.component_name not in sb.components:
            continue
        cache_job = Names.for_registry(sb.settings, "mirror", cache).metrics_service
        jobs.append({"job_name": cache_job, "metrics_path": "/metrics",
                     "static_configs": [_target(sb, cache.component_name, cache_job)]})
    return {
        "global": {"scrape_interval": SCRAPE_INTERVAL, "scrape_timeout": SCRAPE_TIMEOUT,
                   "evaluation_interval": SCRAPE_INTERVAL},
        "rule_files": [str(rules_path(sb))],
        "scrape_configs": jobs,
    }


def rules_path(sb: "Sandbox"):
    return sb.config_dir / "prometheus-rules.yml"


def before_start(sb: "Sandbox", name: str) -> None:
    write_private(sb.config_dir / "prometheus.yml", yaml.safe_dump(scrape_config(sb), sort_keys=False))
    write_private(rules_path(sb), monitoring.rule_file(sb.settings, monitoring.SANDBOX))
    (sb.state_dir / "prometheus").mkdir(exist_ok=True)


def argv(sb: "Sandbox", name: str, binaries: dict[str, str]) -> list[str]:
    return [
        binary(),
        f"--config.file={sb.config_dir / 'prometheus.yml'}",
        f"--storage.tsdb.path={sb.state_dir / 'prometheus'}",
        "--storage.tsdb.retention.time=2d",
        f"--web.listen-address={sb.components[name].address}",
    ]


def healthy(sb: "Sandbox", name: str) -> bool:
    return procs.http_status(sb.components[name].address, "/-/ready") == 200


def url(sb: "Sandbox") -> str:
    return f"http://{sb.components['prometheus'].address}"


# --------------------------------------------------------------------------- HTTP API


def api(address: str, path: str, params: Optional[dict] = None, timeout: float = 10.0):
    """`data` of a Prometheus HTTP API answer (GET, no proxy); raises on an error answer."""
    host, _, port = address.rpartition(":")
    query = f"?{urllib.parse.urlencode(params)}" if params else ""
    conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        conn.request("GET", f"/api/v1/{path}{query}")
        body = json.loads(conn.getresponse().read())
    finally:
        conn.close()
    if body.get("status") != "success":
        raise RuntimeError(f"prometheus {path} {params}: {body.get('errorType')}: {body.get('error')}")
    return body["data"]


def query(address: str, expr: str) -> list[dict]:
    """The instant vector (or scalar as one sample) `expr` evaluates to now."""
    data = api(address, "query", {"query": expr})
    if data["resultType"] in ("scalar", "string"):
        return [{"metric": {}, "value": data["result"]}]
    return data["result"]


def active_alerts(address: str) -> list[dict]:
    return api(address, "alerts")["alerts"]


def _epoch(rfc3339: str) -> float:
    base, _, fraction = rfc3339.rstrip("Z").partition(".")
    return datetime.fromisoformat(base + "+00:00").timestamp() + float("0." + (fraction or "0")[:6])


def watch_alert(address: str, alertname: str, since: float, timeout: float,
                while_waiting: Optional[Callable[[], None]] = None, interval: float = 0.2) -> dict:
    """Poll /api/v1/alerts until `alertname` fires. `since`: wall-clock time (time.time()) of the fault.
    Returns seconds from the fault to pending (the rule's activeAt) and to the first poll that saw it
    firing (None if it did not within `timeout`), with the alert's value and labels."""
    seen: dict = {"alert": alertname, "pending_s": None, "firing_s": None, "value": None, "labels": None}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for alert in active_alerts(address):
            if alert["labels"].get("alertname") != alertname:
                continue
            if seen["pending_s"] is None:
                seen["pending_s"] = round(_epoch(alert["activeAt"]) - since, 2)
            if alert["state"] == "firing":
                seen.update(firing_s=round(time.time() - since, 2), value=alert["value"], labels=alert["labels"])
                return seen
        if while_waiting is not None:
            while_waiting()
        time.sleep(interval)
    return seen
