"""The GitHub workflows: actionlint on every file (it knows pulumi/actions@v7's inputs, so a
misspelt input fails), plus the structure the CI needs: tests before previews of both
stacks with PR comments, `pulumi up` on staging then production behind its environment."""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from conftest import require_binary

WORKFLOWS = Path(__file__).resolve().parent.parent / ".github" / "workflows"
FILES = sorted(WORKFLOWS.glob("*.yml")) + sorted(WORKFLOWS.glob("*.yaml"))


def load(name: str) -> dict:
    data = yaml.safe_load((WORKFLOWS / name).read_text())
    data["on"] = data.pop(True, data.get("on"))  # YAML 1.1 reads the key `on` as True
    return data


def actionlint(*paths) -> subprocess.CompletedProcess:
    binary = require_binary("actionlint")
    return subprocess.run([binary, "-oneline", *map(str, paths)], capture_output=True, text=True, timeout=60)


def test_there_are_exactly_the_four_workflows():
    """Each is linted below; a new or renamed file must be added here (and gets linted too)."""
    assert sorted(p.name for p in FILES) == ["ci-tests.yml", "deploy.yml", "pull-request.yml", "pulumi-stack.yml"]
    for path in FILES:
        workflow = load(path.name)
        assert workflow["on"] and workflow["jobs"], path.name


def test_the_program_bootstrap_and_ci_use_one_virtualenv():
    """Pulumi.yaml runs the program from .venv, the virtualenv ./scripts/bootstrap.sh makes (and the
    scripts run from); the preview/up workflow fills the same one."""
    root = WORKFLOWS.parent.parent
    assert yaml.safe_load((root / "Pulumi.yaml").read_text())["runtime"]["options"]["virtualenv"] == ".venv"
    assert '"$PY" -m venv .venv' in (root / "scripts" / "bootstrap.sh").read_text()
    assert 'PYTHON="$REPO_ROOT/.venv/bin/python"' in (root / "scripts" / "_python.sh").read_text()
    steps = load("pulumi-stack.yml")["jobs"]["pulumi"]["steps"]
    assert any(str(s.get("run", "")).startswith("python -m venv .venv && .venv/bin/pip install -q -r requirements.txt")
               for s in steps)


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_actionlint_accepts(path):
    proc = actionlint(path)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_actionlint_would_catch_a_misspelt_pulumi_input(tmp_path):
    broken = tmp_path / "broken.yml"
    broken.write_text((WORKFLOWS / "pulumi-stack.yml").read_text().replace("comment-on-pr:", "coment-on-pr:"))
    proc = actionlint(broken)
    assert proc.returncode != 0 and 'input "coment-on-pr" is not defined in action "pulumi/actions@v7"' in proc.stdout


def _pulumi_step(stack_workflow: dict) -> dict:
    steps = stack_workflow["jobs"]["pulumi"]["steps"]
    found = [s for s in steps if str(s.get("uses", "")).startswith("pulumi/actions@")]
    assert len(found) == 1
    return found[0]


def test_pulumi_step_comments_on_the_pr_with_the_diy_backend_and_policy_pack():
    step = _pulumi_step(load("pulumi-stack.yml"))
    assert step["uses"] == "pulumi/actions@v7"
    w = step["with"]
    assert w["comment-on-pr"] is True and w["comment-on-summary"] is True and w["edit-pr-comment"] is True
    assert w["cloud-url"] == "${{ secrets.PULUMI_BACKEND_URL }}"
    assert w["policyPacks"] == "policy"
    assert w["stack-name"] == "${{ inputs.stack }}" and w["command"] == "${{ inputs.command }}"
    assert step["env"]["PULUMI_CONFIG_PASSPHRASE"] == "${{ secrets.PULUMI_CONFIG_PASSPHRASE }}"


def test_pull_request_runs_tests_then_previews_both_stacks():
    pr = load("pull-request.yml")
    assert "pull_request" in pr["on"]
    assert pr["permissions"]["pull-requests"] == "write"
    assert pr["jobs"]["tests"]["uses"] == "./.github/workflows/ci-tests.yml"
    preview = pr["jobs"]["preview"]
    assert preview["needs"] == "tests"
    assert preview["uses"] == "./.github/workflows/pulumi-stack.yml"
    assert preview["with"]["command"] == "preview"
    assert preview["strategy"]["matrix"]["stack"] == ["staging", "production"]
    assert set(preview["secrets"]) == {"PULUMI_BACKEND_URL", "PULUMI_CONFIG_PASSPHRASE", "AWS_ROLE_ARN", "KUBECONFIG_DATA"}


def test_push_to_main_ups_staging_then_production_behind_its_environment():
    deploy = load("deploy.yml")
    assert deploy["on"]["push"]["branches"] == ["main"]
    jobs = deploy["jobs"]
    assert jobs["staging"]["needs"] == "tests" and jobs["staging"]["with"] == {"command": "up", "stack": "staging"}
    assert jobs["production"]["needs"] == "staging"
    assert jobs["production"]["with"] == {"command": "up", "stack": "production"}
    # the called job's environment is the stack's for `up` (none for previews)
    job = load("pulumi-stack.yml")["jobs"]["pulumi"]
    assert job["environment"] == "${{ inputs.command == 'up' && inputs.stack || '' }}"
    assert deploy["concurrency"]["cancel-in-progress"] is False


def test_ci_tests_run_the_suite_with_ci_true():
    steps = load("ci-tests.yml")["jobs"]["tests"]["steps"]
    run = [s for s in steps if "run-tests.sh" in str(s.get("run", ""))]
    assert run and run[0]["env"]["CI"] == "true"
    # bootstrap installs everything (apt packages, Go tools, the venvs): no hand-kept list beside it
    assert any("./scripts/bootstrap.sh" in str(s.get("run", "")) for s in steps)
    assert not any("apt-get install" in str(s.get("run", "")) for s in steps)
