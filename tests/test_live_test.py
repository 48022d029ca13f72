"""scripts/test-registry-ha.sh against real docker-registry processes (and a stand-in kubectl).

Measured: a healthy registry passes every check and is left without the test tag; a dead or
silent address fails the v2 check within seconds; a registry that cannot delete fails; a broken
pod or port-forward fails; the mirror check passes through a real pull-through cache and the
upstream serves the blobs only once (the second pull came from the cache).
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import time
from pathlib import Path

import pytest

from ops_servers import Servers, dead_address, push_oci
from registry_ha import imagetools

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parent.parent
SCRIPT = REPO_ROOT / "scripts" / "test-registry-ha.sh"
FAKES = Path(__file__).resolve().parent / "fakes"


@pytest.fixture
def servers(tmp_path):
    s = Servers(tmp_path)
    yield s
    s.close()


def run(args, env_extra=None, path_prefix=None, timeout=60):
    env = {k: v for k, v in os.environ.items() if k not in ("REGISTRY_PRIMARY", "REGISTRY_METRICS", "FAKE_KUBECTL_DIR")}
    env.update(env_extra or {})
    if path_prefix:
        env["PATH"] = f"{path_prefix}{os.pathsep}{env['PATH']}"
    else:  # no kubectl context here whatever the machine has
        env["KUBECONFIG"] = "/nonexistent"
    start = time.monotonic()
    proc = subprocess.run([str(SCRIPT), *args], capture_output=True, text=True, env=env, timeout=timeout)
    proc.seconds = time.monotonic() - start
    return proc


def lines(proc, status):
    return [l for l in proc.stdout.splitlines() if l.startswith(status + " ")]


def checks(proc, status):
    return [l.split()[1] for l in lines(proc, status)]


def test_healthy_registry_passes_and_cleans_up(servers):
    registry = servers.registry("r1")
    proc = run(["--registry", registry.address, "--metrics", registry.debug])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert checks(proc, "PASS") == ["v2", "push", "pull", "metrics", "delete"]
    assert checks(proc, "FAIL") == []
    assert "RESULT PASS: 5 passed, 0 failed" in proc.stdout
    # what it pushed is gone: the tag no longer resolves
    tag = re.search(r"registry-ha-smoke/test:(\S+)", proc.stdout).group(1)
    status, _ = imagetools.manifest_digest(registry.address, "registry-ha-smoke/test", tag)
    assert status == 404
    # and it really went through the registry: pushes and pulls in its access log
    log = registry.log.read_text()
    assert "PUT /v2/registry-ha-smoke/test/manifests/" in log
    assert "DELETE /v2/registry-ha-smoke/test/manifests/sha256:" in log


def test_default_target_is_registry_primary(servers):
    registry = servers.registry("r1")
    proc = run([], {"REGISTRY_PRIMARY": registry.address, "REGISTRY_METRICS": registry.debug})
    assert proc.returncode == 0, proc.stdout
    assert f"testing {registry.address}" in proc.stdout
    assert "metrics" in checks(proc, "PASS")


def test_dead_address_fails_fast_and_cleanly():
    proc = run(["--registry", dead_address()])
    assert proc.returncode == 1
    assert checks(proc, "FAIL") == ["v2"] and "refused" in proc.stdout
    assert "RESULT FAIL" in proc.stdout and "Traceback" not in proc.stderr
    assert proc.seconds < 5


def test_silent_address_times_out_within_the_timeout(servers):
    proc = run(["--registry", servers.silent(), "--timeout", "1"])
    assert proc.returncode == 1
    assert "timeout" in lines(proc, "FAIL")[0]
    assert proc.seconds < 6


def test_registry_that_cannot_delete_fails(servers):
    registry = servers.registry("nodelete", delete=False)
    proc = run(["--registry", registry.address])
    assert proc.returncode == 1
    assert checks(proc, "FAIL") == ["delete"]
    assert "405" in lines(proc, "FAIL")[0]


@pytest.mark.parametrize(
    "args,env,expected",
    [
        (["--registry", "registry.local"], {}, "--registry: HOST:PORT"),
        (["--registry", "http://r:5000"], {}, "--registry: HOST:PORT"),
        ([], {"REGISTRY_PRIMARY": "r:99999"}, "REGISTRY_PRIMARY: HOST:PORT"),
        (["--mirror", "x"], {}, "--mirror: HOST:PORT"),
        (["--registry", "r:5000", "--timeout", "0"], {}, "--timeout"),
    ],
)
def test_usage_errors(args, env, expected):
    proc = run(args, env)
    assert proc.returncode == 2
    assert expected in proc.stderr and proc.stderr.count("\n") == 1


def test_mirror_second_pull_is_served_from_the_cache(servers, tmp_path):
    upstream = servers.registry("upstream")
    image = imagetools.build_oci_layout(tmp_path / "hello", "latest", (4096, 8192))
    push_oci(image, f"{upstream.address}/library/hello-world:latest")

    def upstream_blob_gets():
        time.sleep(0.3)  # the access log line lands after the response
        return upstream.log.read_text().count('"GET /v2/library/hello-world/blobs/sha256:')

    # control: how many upstream blob GETs ONE cold pull through a fresh cache costs
    control = servers.registry("control", proxy=f"http://{upstream.address}")
    before = upstream_blob_gets()
    assert imagetools.skopeo_copy(f"docker://{control.address}/library/hello-world:latest",
                                  f"oci:{tmp_path / 'control'}:c").ok
    one_cold_pull = upstream_blob_gets() - before
    assert one_cold_pull >= 3  # 2 layers + config

    cache = servers.registry("cache", proxy=f"http://{upstream.address}")
    registry = servers.registry("r1")
    before = upstream_blob_gets()
    proc = run(["--registry", registry.address, "--mirror", cache.address])
    assert proc.returncode == 0, proc.stdout
    assert "mirror" in checks(proc, "PASS") and "served from the cache" in proc.stdout
    # the tool pulled twice, but the upstream saw exactly one cold pull's worth of blob GETs
    assert upstream_blob_gets() - before == one_cold_pull


def test_dead_mirror_fails(servers):
    registry = servers.registry("r1")
    proc = run(["--registry", registry.address, "--mirror", dead_address()])
    assert proc.returncode == 1
    assert checks(proc, "FAIL") == ["mirror"]


def _pods(*ready):
    return {"items": [
        {"metadata": {"name": f"docker-registry-{i}"},
         "status": {"conditions": [{"type": "Ready", "status": "True" if r else "False"}]}}
        for i, r in enumerate(ready)
    ]}


def test_kubectl_checks_every_pod_and_pulls_through_each_port_forward(servers, tmp_path):
    registry = servers.registry("r1")
    kube = tmp_path / "kube"
    kube.mkdir()
    (kube / "pods.json").write_text(json.dumps(_pods(True, True)))
    # both "pods" forward to the one real registry; its debug port serves the metrics
    ports = {f"docker-registry-{i}": {"5000": registry.address.split(":")[1], "5001": registry.debug.split(":")[1]}
             for i in range(2)}
    (kube / "ports.json").write_text(json.dumps(ports))
    proc = run(["--registry", registry.address], {"FAKE_KUBECTL_DIR": str(kube)}, path_prefix=FAKES)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert checks(proc, "PASS") == ["v2", "push", "pull", "pods", "pod-pull", "metrics", "pod-pull", "metrics", "delete"]
    calls = [json.loads(l) for l in (kube / "calls.jsonl").read_text().splitlines()]
    assert ["get", "pods", "-n", "registry", "-l", "app.kubernetes.io/name=docker-registry", "-o", "json"] in calls
    assert ["port-forward", "-n", "registry", "pod/docker-registry-1", ":5000", ":5001"] in calls
    # every port-forward was stopped
    leftovers = subprocess.run(["pgrep", "-f", f"{FAKES}/kubectl port-forward"], capture_output=True, text=True)
    assert leftovers.stdout.strip() == ""


def test_kubectl_unready_pod_and_broken_port_forward_fail(servers, tmp_path):
    registry = servers.registry("r1")
    kube = tmp_path / "kube"
    kube.mkdir()
    (kube / "pods.json").write_text(json.dumps(_pods(True, False)))
    (kube / "ports.json").write_text(json.dumps({"docker-registry-0": {"5000": registry.address.split(":")[1],
                                                                       "5001": registry.debug.split(":")[1]}}))
    proc = run(["--registry", registry.address], {"FAKE_KUBECTL_DIR": str(kube)}, path_prefix=FAKES)
    assert proc.returncode == 1
    failed = lines(proc, "FAIL")
    assert any(l.split()[1] == "pods" and "docker-registry-1" in l for l in failed)
    assert any(l.split()[1] == "pod-pull" and "docker-registry-1" in l and "not found" in l for l in failed)
    assert "delete" in checks(proc, "PASS")  # cleanup still ran


def test_passes_against_the_local_sandbox(servers, tmp_path):
    """The CI gate: test-registry-ha.sh against `deploy-registry-ha.sh local up`."""
    from conftest import require_binary
    from ops_servers import free_port
    from registry_ha.sandbox.ports import free_port_base

    for name in ("docker-registry", "redis-server", "haproxy", "weed", "skopeo"):
        require_binary(name)
    upstream = servers.registry("upstream")
    image = imagetools.build_oci_layout(tmp_path / "hello", "latest", (4096,))
    push_oci(image, f"{upstream.address}/library/hello-world:latest")
    state = tmp_path / "sandbox"
    opts = ["--state-dir", str(state), "--port", str(free_port()), "--port-base", str(free_port_base()),
            "--upstream", f"http://{upstream.address}"]
    deploy = REPO_ROOT / "scripts" / "deploy-registry-ha.sh"

    def local(*args):
        return subprocess.run([str(deploy), "local", *args, *opts], capture_output=True, text=True, timeout=180)

    try:
        up = local("up", "--json")
        assert up.returncode == 0, up.stderr
        status = json.loads(up.stdout)
        # the replicas' debug (metrics) ports: the second port the sandbox recorded for each
        recorded = json.loads((state / "state.json").read_text())["components"]
        metrics = [f"127.0.0.1:{c['ports'][1]}" for c in recorded.values() if c["role"] == "registry"]
        assert len(metrics) == 3
        args = ["--registry", status["endpoint"], "--mirror", status["mirrors"]["docker.io"]]
        for address in metrics:
            args += ["--metrics", address]
        proc = run(args, timeout=120)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert checks(proc, "PASS") == ["v2", "push", "pull", "metrics", "metrics", "metrics", "mirror", "delete"]
    finally:
        local("down")
