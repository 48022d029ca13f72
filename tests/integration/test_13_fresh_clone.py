"""13. A fresh clone with a stack of the operator's own: add Pulumi.dev.yaml (its own cluster), then
`render dev`, `deploy dev --yes` (through the stand-in pulumi) and `local up --stack dev` all work, with
dev's own values, from the clone's scripts."""
from __future__ import annotations

import json
import os
import subprocess

import pytest
import yaml

from conftest import copy_repo
from registry_ha.sandbox import procs

from .conftest import REPO_ROOT, free_port, free_port_base

pytestmark = pytest.mark.integration

FAKES = REPO_ROOT / "tests" / "fakes"
DEV = """\
# dev: a small stack on its own cluster
config:
  aws:region: eu-west-1
  kubernetes:context: neural-hive-dev
  registry-ha:replicas: "2"
  registry-ha:redisMaxMemory: 64mb
  registry-ha:forceDestroy: "true"
  registry-ha:retainBucket: "false"
"""


def test_a_fresh_clone_with_a_stack_of_its_own(bins, tmp_path):
    clone = copy_repo(tmp_path / "clone")
    (clone / "Pulumi.dev.yaml").write_text(DEV)
    fake = tmp_path / "fake-pulumi"
    fake.mkdir()
    (fake / "stacks.json").write_text(json.dumps([{"name": "dev"}]))  # after `pulumi stack init dev`
    (fake / "outputs.json").write_text(json.dumps({"registryAddress": "registry.neural-hive.local:5000"}))
    env = {"PATH": f"{FAKES}{os.pathsep}{os.environ.get('PATH', procs.SAFE_PATH)}", "HOME": str(tmp_path),
           "FAKE_PULUMI_DIR": str(fake)}

    def script(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(clone / "scripts" / "deploy-registry-ha.sh"), *args], cwd=tmp_path, env=env,
                              stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=180)

    render = script("render", "dev")
    assert render.returncode == 0, render.stderr
    # 18: staging's 17 and the token server's Secret (authEnabled defaults to true; staging's file turns it off)
    assert render.stdout.startswith(f"rendered dev: 18 Kubernetes objects, 9 AWS resources -> {clone / 'build' / 'dev'}")
    documents = list(yaml.safe_load_all((clone / "build" / "dev" / "private.yaml").read_text()))
    deployment = next(d for d in documents if d["kind"] == "Deployment")
    assert deployment["spec"]["replicas"] == 2
    assert deployment["metadata"]["labels"]["app.kubernetes.io/instance"] == "registry-ha-dev"
    outputs = json.loads((clone / "build" / "dev" / "outputs.json").read_text())
    assert (outputs["region"], outputs["iamUserName"]) == ("eu-west-1", "registry-ha-dev-registry")
    assert outputs["bucketName"].startswith("neural-hive-registry-dev-")

    deploy = script("deploy", "dev", "--yes")
    assert deploy.returncode == 0, deploy.stderr
    calls = [json.loads(line) for line in (fake / "calls.jsonl").read_text().splitlines()]
    assert [c["argv"][0] for c in calls] == ["whoami", "stack", "preview", "up", "stack"]
    assert all(c["cwd"] == str(clone) and "Pulumi.dev.yaml" in c["stack_files"] for c in calls)
    assert calls[3]["argv"] == ["up", "--yes", "--diff", "--stack", "dev", "--non-interactive", "--policy-pack", "policy"]
    assert "registry.neural-hive.local:5000" in deploy.stdout

    opts = ["--stack", "dev", "--state-dir", str(tmp_path / "sandbox"), "--port", str(free_port()),
            "--port-base", str(free_port_base())]
    try:
        up = script("local", "up", "--json", *opts)
        assert up.returncode == 0, up.stderr
        status = json.loads(up.stdout)
        assert status["stack"] == "dev"
        assert [c["name"] for c in status["components"] if c["role"] == "registry"] == ["registry-1", "registry-2"]
        assert {"token", "front"} <= {c["name"] for c in status["components"]}  # auth on: the token server and proxy
        assert status["auth_users"] == ["admin", "ci", "node", "reader"]
        assert all(c["healthy"] for c in status["components"]), status
        again = script("local", "status", *opts)
        assert again.returncode == 0, again.stdout + again.stderr
    finally:
        down = script("local", "down", *opts)
    assert down.returncode == 0, down.stderr
