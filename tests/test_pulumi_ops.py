"""deploy / preview / rollback / history against a stand-in `pulumi` (tests/fakes/pulumi).

The fake records every invocation (arguments, working directory, the git HEAD of that
directory and the Pulumi.<stack>.yaml it saw) and answers `stack history --json`,
`stack ls --json` and `stack output --json` from fixtures, so these tests assert the
exact CLI calls, which commit a rollback ran, and that its worktree is always removed.
"""
from __future__ import annotations

import io
import json
import os
import subprocess
from pathlib import Path

import pytest

from conftest import use_stand_in_pulumi
from registry_ha import cli, pulumi_ops

REPO_ROOT = Path(__file__).resolve().parent.parent
NI = "--non-interactive"


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A git repository holding a Pulumi project with two commits, the fake pulumi first on PATH."""
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    git(repo, "config", "user.email", "t@example.com")
    git(repo, "config", "user.name", "t")
    (repo / "Pulumi.yaml").write_text("name: registry-ha\nruntime: python\n")
    (repo / "Pulumi.staging.yaml").write_text("config:\n  kubernetes:context: s\n  registry-ha:replicas: \"3\"\n")
    (repo / "Pulumi.production.yaml").write_text("config:\n  kubernetes:context: p\n")
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "good")
    good = git(repo, "rev-parse", "HEAD")
    (repo / "Pulumi.staging.yaml").write_text("config:\n  kubernetes:context: s\n  registry-ha:replicas: \"1\"\n")
    git(repo, "commit", "-q", "-am", "bad")
    bad = git(repo, "rev-parse", "HEAD")

    state = tmp_path / "fake-pulumi"
    use_stand_in_pulumi(repo, state, monkeypatch)
    monkeypatch.delenv("PULUMI_BACKEND_URL", raising=False)

    class P:
        pass

    p = P()
    p.repo, p.state, p.good, p.bad, p.tmp = repo, state, good, bad, tmp_path

    def calls():
        path = state / "calls.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []

    def history(entries):
        (state / "history.json").write_text(json.dumps(entries))

    p.calls, p.history = calls, history
    p.argvs = lambda: [c["argv"] for c in calls()]
    return p


def update(version, head, result="succeeded", kind="update", dirty="false", message=""):
    env = {"exec.kind": "cli"}
    if head is not None:
        env["git.head"] = head
        env["git.dirty"] = dirty
    return {"version": version, "kind": kind, "result": result, "message": message,
            "startTime": f"2026-11-0{version}T10:00:00Z", "environment": env}


CHECKS = [["whoami", "--verbose", NI], ["stack", "ls", "--json", NI]]
OUTPUTS = {
    "registryAddress": "registry.neural-hive.local:5000",
    "secondaryAddress": "37.60.241.150:30500",
    "loadBalancerAddress": "10.20.0.5",
    "hostsLine": "10.20.0.5 registry.neural-hive.local",
    "mirrorAddress": {"docker.io": "10.43.12.7:5000", "ghcr.io": "10.43.0.61:5000"},
    "bucketName": "neural-hive-registry-staging-abc",
    "region": "us-east-1",
    "iamUserName": "registry-staging",
    "namespace": "registry",
}


# --------------------------------------------------------------------------- deploy / preview


def test_deploy_yes_previews_then_ups_then_prints_addresses(project, capsys):
    (project.state / "outputs.json").write_text(json.dumps(OUTPUTS))
    assert pulumi_ops.deploy_main(["staging", "--yes"]) == 0
    assert project.argvs() == CHECKS + [
        ["preview", "--diff", "--stack", "staging", NI],
        ["up", "--yes", "--diff", "--stack", "staging", NI],
        ["stack", "output", "--json", "--stack", "staging", NI],
    ]
    assert {c["cwd"] for c in project.calls()} == {str(project.repo)}
    out = capsys.readouterr().out
    assert "registry.neural-hive.local:5000" in out
    assert "10.20.0.5 registry.neural-hive.local" in out  # the /etc/hosts line
    assert "37.60.241.150:30500" in out
    assert "docker.io 10.43.12.7:5000, ghcr.io 10.43.0.61:5000" in out


def test_deploy_without_lb_ip_says_how_to_get_it(project, capsys):
    outputs = dict(OUTPUTS, loadBalancerAddress="", hostsLine="")
    (project.state / "outputs.json").write_text(json.dumps(outputs))
    assert pulumi_ops.deploy_main(["production", "--yes"]) == 0
    out = capsys.readouterr().out
    assert "kubectl get svc docker-registry -n registry" in out


def test_deploy_with_policy_pack_passes_it_to_preview_and_up(project):
    (project.repo / "policy").mkdir()
    (project.repo / "policy" / "PulumiPolicy.yaml").write_text("runtime: python\n")
    assert pulumi_ops.deploy_main(["staging", "--yes"]) == 0
    argvs = project.argvs()
    assert ["preview", "--diff", "--stack", "staging", NI, "--policy-pack", "policy"] in argvs
    assert ["up", "--yes", "--diff", "--stack", "staging", NI, "--policy-pack", "policy"] in argvs


def test_preview_alone(project):
    assert pulumi_ops.preview_main(["production"]) == 0
    assert project.argvs() == CHECKS + [["preview", "--diff", "--stack", "production", NI]]


def test_deploy_without_yes_and_no_terminal_refuses_before_up(project, capsys):
    assert pulumi_ops.deploy_main(["staging"]) == 2  # a usage error: a run without a terminal needs --yes
    err = capsys.readouterr().err
    assert "stdin is not a terminal; pass --yes" in err
    assert not any(a[0] == "up" for a in project.argvs())
    assert ["preview", "--diff", "--stack", "staging", NI] in project.argvs()


class _Tty(io.StringIO):
    def isatty(self):
        return True


@pytest.mark.parametrize("answer,code,ups", [("y\n", 0, 1), ("n\n", 1, 0), ("\n", 1, 0)])
def test_deploy_asks_on_a_terminal(project, monkeypatch, capsys, answer, code, ups):
    monkeypatch.setattr("sys.stdin", _Tty(answer))
    assert pulumi_ops.deploy_main(["staging"]) == code
    assert sum(1 for a in project.argvs() if a[0] == "up") == ups
    assert "Apply these changes to stack 'staging'?" in capsys.readouterr().err


def test_failed_preview_stops_before_up(project, capsys):
    (project.state / "fail_preview").touch()
    assert pulumi_ops.deploy_main(["staging", "--yes"]) == 1
    assert not any(a[0] == "up" for a in project.argvs())
    assert "pulumi preview failed" in capsys.readouterr().err


def test_failed_up_is_an_error(project, capsys):
    (project.state / "fail_up").touch()
    assert pulumi_ops.deploy_main(["staging", "--yes"]) == 1
    assert "pulumi up failed for stack 'staging'" in capsys.readouterr().err


# --------------------------------------------------------------------------- checks


def test_missing_cli_names_the_install(project, monkeypatch, capsys):
    monkeypatch.setenv("PATH", "/nonexistent")
    assert pulumi_ops.deploy_main(["staging", "--yes"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "pulumi CLI is not on PATH" in err and "get.pulumi.com" in err


def test_not_logged_in_names_pulumi_login(project, capsys):
    (project.state / "whoami_fails").touch()
    assert pulumi_ops.preview_main(["staging"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "pulumi login" in err
    assert not any(a[0] == "preview" for a in project.argvs())


def test_missing_stack_names_stack_init(project, capsys):
    (project.state / "stacks.json").write_text(json.dumps([{"name": "organization/registry-ha/staging"}]))
    assert pulumi_ops.preview_main(["staging"]) == 0  # project-scoped DIY names match too
    assert pulumi_ops.preview_main(["production"]) == 1
    err = capsys.readouterr().err
    assert "stack 'production' does not exist in backend file:///tmp/fake-state" in err
    assert "pulumi stack init production" in err


def test_passphrase_stack_without_passphrase_refuses(project, capsys, monkeypatch):
    (project.repo / "Pulumi.staging.yaml").write_text("encryptionsalt: v1:abc\nconfig: {}\n")
    assert pulumi_ops.preview_main(["staging"]) == 2
    assert "PULUMI_CONFIG_PASSPHRASE" in capsys.readouterr().err
    monkeypatch.setenv("PULUMI_CONFIG_PASSPHRASE", "x")
    assert pulumi_ops.preview_main(["staging"]) == 0


def test_no_pulumi_yaml(project, capsys):
    (project.repo / "Pulumi.yaml").unlink()
    assert pulumi_ops.preview_main(["staging"]) == 1
    assert "no Pulumi.yaml" in capsys.readouterr().err


@pytest.mark.parametrize(
    "fn,argv,expected",
    [
        (pulumi_ops.deploy_main, [], "the following arguments are required: stack"),
        (pulumi_ops.deploy_main, ["Dev_1"], "stack 'Dev_1': a stack name of 1-15 lowercase letters"),
        (pulumi_ops.preview_main, ["staging", "extra"], "unrecognized arguments: extra"),
        (pulumi_ops.rollback_main, ["staging", "--to", "x"], "invalid int value"),
        (pulumi_ops.history_main, ["qa/../x"], "stack 'qa/../x': a stack name of"),
        (pulumi_ops.deploy_main, ["staging", "--force"], "unrecognized arguments: --force"),
    ],
)
def test_usage_errors_exit_2_without_calling_pulumi(project, capsys, fn, argv, expected):
    assert fn(argv) == 2
    err = capsys.readouterr().err
    assert expected in err and "usage:" in err
    assert project.calls() == []


@pytest.mark.parametrize("fn", [pulumi_ops.deploy_main, pulumi_ops.preview_main, pulumi_ops.history_main])
def test_a_stack_without_a_stack_file_lists_the_stack_files(project, capsys, fn):
    assert fn(["qa"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: stack 'qa': no Pulumi.qa.yaml in ") and err.count("\n") == 1
    assert "(stack files: Pulumi.production.yaml, Pulumi.staging.yaml)" in err
    assert project.calls() == []


def test_script_entry_point_unknown_command_and_stack(project):
    script = REPO_ROOT / "scripts" / "deploy-registry-ha.sh"
    for args, expected in ((["frobnicate"], "unknown command"), (["deploy", "qa"], "stack 'qa': no Pulumi.qa.yaml"), ([], "usage")):
        proc = subprocess.run([str(script), *args], capture_output=True, text=True, env=os.environ)
        assert proc.returncode == 2, (args, proc.stderr)
        assert expected in proc.stdout + proc.stderr
    proc = subprocess.run([str(script), "preview", "staging"], capture_output=True, text=True, env=os.environ)
    assert proc.returncode == 0, proc.stderr
    assert ["preview", "--diff", "--stack", "staging", NI] in project.argvs()


def test_cli_maps_commands_here():
    for name in ("deploy", "preview", "rollback", "history"):
        module, function = cli.COMMANDS[name].split(":")
        assert module == "registry_ha.pulumi_ops" and callable(getattr(pulumi_ops, function))


# --------------------------------------------------------------------------- history


def test_history_table(project, capsys):
    project.history([
        update(1, project.good, message="first deploy"),
        update(2, project.bad, result="failed", dirty="true"),
        update(3, None, kind="refresh"),
    ])
    assert pulumi_ops.history_main(["staging", "--limit", "5"]) == 0
    assert project.argvs()[-1] == ["stack", "history", "--json", "--stack", "staging", "--page-size", "5", NI]
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["VERSION", "KIND", "RESULT", "STARTED", "COMMIT", "MESSAGE"]
    assert lines[1].split()[:3] == ["3", "refresh", "succeeded"]  # newest first
    assert f"{project.bad[:10]}+dirty" in lines[2]
    assert project.good[:10] in lines[3] and "first deploy" in lines[3]


# --------------------------------------------------------------------------- rollback


def worktrees(repo: Path) -> list[str]:
    return [l for l in git(repo, "worktree", "list", "--porcelain").splitlines() if l.startswith("worktree ")]


def test_rollback_runs_up_from_a_worktree_of_the_previous_successful_commit(project, capsys):
    project.history([
        update(1, project.good),
        update(2, project.bad, result="failed"),  # failed: skipped as a target
        update(3, project.good),                  # the last good one
        update(4, project.bad),                   # current
    ])
    assert pulumi_ops.rollback_main(["staging", "--yes"]) == 0
    calls = project.calls()
    assert [c["argv"] for c in calls[:3]] == CHECKS + [
        ["stack", "history", "--json", "--stack", "staging", "--page-size", "500", NI]
    ]
    install, up = calls[3], calls[4]
    assert install["argv"] == ["install"]
    assert up["argv"] == ["up", "--yes", "--diff", "--stack", "staging", NI,
                          "--message", f"rollback to update 3 (commit {project.good[:12]})"]
    # run from a temporary worktree at the good commit, with that commit's stack config
    assert up["cwd"] != str(project.repo) and "registry-ha-rollback-" in up["cwd"]
    assert up["head"] == project.good
    assert 'replicas: "3"' in up["stack_files"]["Pulumi.staging.yaml"]
    assert calls[5]["argv"] == ["stack", "output", "--json", "--stack", "staging", NI]
    assert calls[5]["cwd"] == str(project.repo)
    # removed afterwards: the directory and git's record of it
    assert not Path(up["cwd"]).exists() and not Path(up["cwd"]).parent.exists()
    assert worktrees(project.repo) == [f"worktree {project.repo}"]
    assert git(project.repo, "rev-parse", "HEAD") == project.bad  # the checkout itself untouched


def test_rollback_to_an_explicit_version(project):
    project.history([update(1, project.good), update(2, project.bad), update(3, project.bad)])
    assert pulumi_ops.rollback_main(["staging", "--to", "1", "--yes"]) == 0
    up = [c for c in project.calls() if c["argv"][0] == "up"][0]
    assert up["head"] == project.good


def test_rollback_removes_the_worktree_when_up_fails(project, capsys):
    project.history([update(1, project.good), update(2, project.bad)])
    (project.state / "fail_up").touch()
    assert pulumi_ops.rollback_main(["production", "--yes"]) == 1
    up = [c for c in project.calls() if c["argv"][0] == "up"][0]
    assert up["head"] == project.good
    assert not Path(up["cwd"]).exists()
    assert worktrees(project.repo) == [f"worktree {project.repo}"]
    assert "pulumi up failed" in capsys.readouterr().err


def test_rollback_removes_the_worktree_when_install_fails(project):
    project.history([update(1, project.good), update(2, project.bad)])
    (project.state / "fail_install").touch()
    assert pulumi_ops.rollback_main(["staging", "--yes"]) == 1
    install = [c for c in project.calls() if c["argv"][0] == "install"][0]
    assert not Path(install["cwd"]).exists()
    assert not any(c["argv"][0] == "up" for c in project.calls())
    assert worktrees(project.repo) == [f"worktree {project.repo}"]


def test_rollback_pins_a_relative_file_backend(project, monkeypatch):
    monkeypatch.setenv("PULUMI_BACKEND_URL", "file://./state")
    env = pulumi_ops._absolute_backend_env(project.repo)
    assert env["PULUMI_BACKEND_URL"] == f"file://{project.repo / 'state'}"
    monkeypatch.setenv("PULUMI_BACKEND_URL", "s3://bucket/x")
    assert pulumi_ops._absolute_backend_env(project.repo)["PULUMI_BACKEND_URL"] == "s3://bucket/x"


@pytest.mark.parametrize(
    "entries,argv,expected",
    [
        (lambda p: [update(1, None), update(2, p.bad)], [], "update 1 has no environment git.head"),
        (lambda p: [update(1, p.good, dirty="true"), update(2, p.bad)], [], "update 1 was deployed from a dirty working tree"),
        (lambda p: [update(1, "0" * 40), update(2, p.bad)], [], "commit 000000000000 of update 1 is not in this repository"),
        (lambda p: [update(1, p.good, result="failed"), update(2, p.bad)], [], "no successful update before the current one"),
        (lambda p: [update(1, p.good)], [], "no successful update before the current one"),
        (lambda p: [], [], "no updates to roll back from"),
        (lambda p: [update(1, p.good), update(2, p.bad)], ["--to", "9"], "--to 9: no such version"),
        (lambda p: [update(1, p.good, result="failed"), update(2, p.bad)], ["--to", "1"], "update that failed"),
        (lambda p: [update(1, p.good, kind="refresh"), update(2, p.bad)], ["--to", "1"], "is a refresh"),
    ],
)
def test_rollback_refusals_touch_nothing(project, capsys, entries, argv, expected):
    project.history(entries(project))
    # a --to that names no successful update is a usage error; the rest are the stack's state
    assert pulumi_ops.rollback_main(["staging", "--yes", *argv]) == (2 if argv else 1)
    err = capsys.readouterr().err
    assert expected in err and err.count("\n") == 1, err
    assert not any(c["argv"][0] in ("up", "install") for c in project.calls())
    assert worktrees(project.repo) == [f"worktree {project.repo}"]


def test_rollback_without_yes_and_no_terminal_refuses(project, capsys):
    project.history([update(1, project.good), update(2, project.bad)])
    assert pulumi_ops.rollback_main(["staging"]) == 2
    assert "pass --yes" in capsys.readouterr().err
    assert not any(c["argv"][0] == "up" for c in project.calls())
