"""checkov on what each shipped stack deploys: `render <stack>` written to disk, then
`checkov -d <dir> --framework kubernetes` (the version pinned in requirements-checkov.txt, from the
virtualenv bootstrap makes under .tools/checkov).

Measured: 0 failed checks for every stack file; every skipped check is one this design fails on
purpose (no CPU limit; images pinned by tag, not digest) and carries its reason in checkov's own
annotation; with the images pinned by digest the digest waivers disappear and still 0 checks fail.
The opt-in node configurator (a root DaemonSet in a privileged namespace of its own) passes too, with
its own reasoned waivers (root, UID 0, no liveness probe) and nothing else.
"""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from conftest import IN_CI, REPO_ROOT
from registry_ha.mock_engine import load_stack_config, run_program
from registry_ha.render import write_render
from registry_ha.stacks import stack_names

CHECKOV = REPO_ROOT / ".tools" / "checkov" / "venv" / "bin" / "checkov"
WAIVABLE = {"CKV_K8S_11", "CKV_K8S_15", "CKV_K8S_43"}  # CPU limits; pull policy and digest while pinned by tag
CONFIGURATOR = "DaemonSet.registry-ha-nodes.registry-node-configurator"
CONFIGURATOR_WAIVABLE = {"CKV_K8S_23", "CKV_K8S_40", "CKV_K8S_8", "CKV_K8S_15", "CKV_K8S_43"}  # root; no liveness; by tag
DIGEST = "@sha256:" + "ab" * 32


def pinned_version() -> str:
    line = next(l for l in (REPO_ROOT / "requirements-checkov.txt").read_text().splitlines() if l.startswith("checkov=="))
    return line.split("==", 1)[1].strip()


@pytest.fixture(scope="module")
def checkov() -> str:
    if not CHECKOV.exists():
        message = f"{CHECKOV} is missing; run ./scripts/bootstrap.sh"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    version = subprocess.run([str(CHECKOV), "--version"], capture_output=True, text=True, timeout=120).stdout.strip()
    assert version == pinned_version(), f"checkov {version} in .tools, {pinned_version()} pinned: run ./scripts/bootstrap.sh"
    return str(CHECKOV)


def scan(checkov: str, directory: Path) -> dict:
    # --skip-download: no call to the vendor's API (guidelines, mappings); the checks are all local
    result = subprocess.run([checkov, "-d", str(directory), "--framework", "kubernetes", "--skip-download", "-o", "json"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode in (0, 1), result.stderr[-2000:]
    report = json.loads(result.stdout)
    assert report["check_type"] == "kubernetes"
    return report


def render(tmp_path: Path, stack: str, **values) -> Path:
    config, secret_keys = load_stack_config(stack)
    config.update({f"registry-ha:{k}": v for k, v in values.items()})
    out = tmp_path / stack
    write_render(run_program(stack, config=config, secret_keys=secret_keys), out)
    return out


def failed(report: dict) -> list[str]:
    return [f"{c['check_id']} {c['resource']}" for c in report["results"]["failed_checks"]]


def skips(report: dict) -> dict[tuple[str, str], str]:
    return {(c["check_id"], c["resource"]): c["check_result"].get("suppress_comment", "")
            for c in report["results"]["skipped_checks"]}


@pytest.mark.parametrize("stack", stack_names())
def test_every_stack_passes_with_reasoned_waivers(checkov, tmp_path, stack):
    report = scan(checkov, render(tmp_path, stack))
    summary = report["summary"]
    print(f"\n{stack}: {summary}")
    assert failed(report) == [] and summary["parsing_errors"] == 0
    assert summary["passed"] > 200 and summary["resource_count"] >= 15
    waived = skips(report)
    assert waived and {check for check, _ in waived} <= WAIVABLE
    for (check, resource), reason in waived.items():
        assert len(reason) > 30 and reason != "No comment provided", (check, resource, reason)
    # each Deployment waives the CPU limit and, pinned by tag, the two digest checks
    deployments = {resource for _, resource in waived}
    assert {(check, d) for d in deployments for check in WAIVABLE} == set(waived)


def test_digest_pins_pass_without_the_digest_waivers(checkov, tmp_path):
    report = scan(checkov, render(
        tmp_path, "production", image=f"registry:3.1.1{DIGEST}", redisImage=f"redis:7.4.2-alpine{DIGEST}",
        tokenServerImage=f"cesanta/docker_auth:1.14.0{DIGEST}", authProxyImage=f"haproxy:2.6.17-alpine{DIGEST}"))
    assert failed(report) == []
    assert {check for check, _ in skips(report)} == {"CKV_K8S_11"}


def test_auth_with_tls_and_pull_secrets_passes(checkov, tmp_path):
    report = scan(checkov, render(tmp_path, "staging", authEnabled="true", tlsSecretName="registry-tls",
                                  pullSecretNamespaces='["apps"]'))
    assert failed(report) == [] and report["summary"]["parsing_errors"] == 0


@pytest.mark.parametrize("stack, mode", [("production", "on"), ("staging", "remove")])
def test_the_node_configurator_passes_with_its_own_reasoned_waivers(checkov, tmp_path, stack, mode):
    report = scan(checkov, render(tmp_path, stack, nodeConfigurator=mode,
                                  mirrors='[{"name": "dockerhub", "host": "docker.io", "clusterIP": "10.43.0.50"}]'))
    assert failed(report) == [] and report["summary"]["parsing_errors"] == 0
    waived = skips(report)
    assert {check for check, resource in waived if resource == CONFIGURATOR} == CONFIGURATOR_WAIVABLE
    for (check, resource), reason in waived.items():
        assert len(reason) > 30 and reason != "No comment provided", (check, resource, reason)
    # it has a CPU limit, so that one is passed, not waived
    passed = {(c["check_id"], c["resource"]) for c in report["results"]["passed_checks"]}
    assert ("CKV_K8S_11", CONFIGURATOR) in passed and ("CKV_K8S_20", CONFIGURATOR) in passed  # no privilege escalation
