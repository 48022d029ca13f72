"""`deploy-registry-ha.sh gc` on the cluster path, against the stand-in `pulumi` and `kubectl` (tests/fakes).

The fakes record every call; the fake `pulumi up` hands the stack file's registry-ha config to the fake
cluster, whose Deployment and pods then carry its checksum. So these tests see the real sequence: which
pulumi/kubectl commands ran, in which order, with which stack file, and what the Job looked like.
"""
from __future__ import annotations

import json
import os
import time
import types
from pathlib import Path

import pytest

from conftest import stand_in_project
from registry_ha import cli, gc_ops

OUTPUTS = {"namespace": "registry", "bucketName": "neural-hive-registry-staging-abc", "region": "us-east-1"}
RO = "registry-ha:readOnly"


class Cluster:
    def __init__(self, root: Path):
        self.project, self.pulumi, self.kube = root / "project", root / "pulumi", root / "kube"

    def pulumi_calls(self) -> list[dict]:
        path = self.pulumi / "calls.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []

    def pulumi_argvs(self) -> list[list[str]]:
        return [c["argv"] for c in self.pulumi_calls()]

    def kube_calls(self) -> list[dict]:
        path = self.kube / "calls.jsonl"
        calls = []
        for line in (path.read_text().splitlines() if path.exists() else []):
            entry = json.loads(line)
            calls.append(entry if isinstance(entry, dict) else {"argv": entry, "stdin": None})
        return calls

    def verbs(self) -> list[str]:
        """kubectl calls without the leading --context/-n, one string each ('get deployment docker-registry -o json')."""
        out = []
        for call in self.kube_calls():
            args = list(call["argv"])
            while args[:1] in (["--context"], ["-n"]):
                args = args[2:]
            out.append(" ".join(args))
        return out

    def created_jobs(self) -> list[dict]:
        return [json.loads(p.read_text()) for p in sorted((self.kube / "created").glob("*.json"))] if (self.kube / "created").exists() else []

    def flag(self, name: str, content: str = "") -> None:
        (self.kube / name).write_text(content)

    def stack_file(self, stack: str = "staging") -> str:
        return (self.project / f"Pulumi.{stack}.yaml").read_text()


@pytest.fixture
def cluster(tmp_path, monkeypatch) -> Cluster:
    c = Cluster(tmp_path)
    c.kube.mkdir()
    stand_in_project(c.project, c.pulumi, monkeypatch)
    (c.pulumi / "outputs.json").write_text(json.dumps(OUTPUTS))
    monkeypatch.setenv("FAKE_KUBECTL_DIR", str(c.kube))
    monkeypatch.setattr(gc_ops, "POLL_SECONDS", 0.01)
    # the stack as deployed before gc: what the fake cluster runs
    (c.kube / "deployed.json").write_text(json.dumps(_registry_config(c.stack_file())))
    return c


def _registry_config(text: str) -> dict:
    import yaml

    config = yaml.safe_load(text)["config"]
    return {k.split(":", 1)[1]: str(v) for k, v in config.items() if k.startswith("registry-ha:")}


def test_gc_reads_only_then_collects_flushes_db_0_and_returns_to_read_write(cluster, capsys):
    original = cluster.stack_file()
    assert cli.main(["gc", "staging", "--yes", "--delete-untagged"]) == 0

    argvs = cluster.pulumi_argvs()
    ni = "--non-interactive"
    assert argvs == [
        ["whoami", "--verbose", ni],
        ["stack", "ls", "--json", ni],
        ["stack", "output", "--json", "--stack", "staging", ni],
        ["preview", "--expect-no-changes", "--stack", "staging", ni],  # the project has no policy/ here
        ["config", "set", RO, "true", "--stack", "staging", ni],
        ["up", "--yes", "--diff", "--stack", "staging", ni, "--message", "gc: readOnly on"],
        ["config", "rm", RO, "--stack", "staging", ni],
        ["up", "--yes", "--diff", "--stack", "staging", ni, "--message", "gc: readOnly off"],
    ]
    ups = [c for c in cluster.pulumi_calls() if c["argv"][0] == "up"]
    assert f'{RO}: "true"' in ups[0]["stack_files"]["Pulumi.staging.yaml"]  # the first up deploys readOnly
    assert RO not in ups[1]["stack_files"]["Pulumi.staging.yaml"]
    assert _registry_config(cluster.stack_file()) == _registry_config(original)  # the stack file is back

    verbs = cluster.verbs()
    assert all(c["argv"][:4] == ["--context", "neural-hive-staging", "-n", "registry"] for c in cluster.kube_calls())
    (job,) = cluster.created_jobs()
    name = job["metadata"]["name"]
    assert name.startswith("docker-registry-gc-")
    assert verbs == [
        "get deployment docker-registry -o json",
        "get jobs -l app.kubernetes.io/name=docker-registry-gc -o json",
        # read-only reached every pod before the Job exists
        "rollout status deployment/docker-registry --timeout=900s",
        "get deployment docker-registry -o json",
        "get pods -l app.kubernetes.io/instance=registry-ha-staging,app.kubernetes.io/name=docker-registry -o json",
        "create -f -",
        f"get job {name} -o json",
        f"logs job/{name} --tail=-1",
        f"get job {name} -o json",
        "exec deploy/registry-redis -c redis -- redis-cli -n 0 FLUSHDB",  # db 0 only: the caches keep theirs
        "rollout status deployment/docker-registry --timeout=900s",
        "get deployment docker-registry -o json",
        "get pods -l app.kubernetes.io/instance=registry-ha-staging,app.kubernetes.io/name=docker-registry -o json",
    ]
    (container,) = job["spec"]["template"]["spec"]["containers"]
    assert container["args"] == ["garbage-collect", "/etc/distribution/config.yml", "--delete-untagged"]
    captured = capsys.readouterr()
    assert captured.out == "7 blobs in use; deleted 3 blobs and 1 untagged manifests\n"
    assert "1/4 readOnly on" in captured.err and "4/4 readOnly off" in captured.err


def test_the_job_waits_for_every_pod_including_terminating_ones(cluster):
    cluster.flag("lagging_pod_polls", "3")  # an old, read-write pod is still draining for 3 polls
    assert cli.main(["gc", "staging", "--yes"]) == 0
    verbs = cluster.verbs()
    create = verbs.index("create -f -")
    assert [v.split()[1] for v in verbs[:create] if v.startswith("get pods")] == ["pods"] * 4


def test_a_failed_job_still_flushes_and_returns_to_read_write(cluster, capsys):
    cluster.flag("job_fails")
    assert cli.main(["gc", "staging", "--yes"]) == 1
    assert cluster.pulumi_argvs()[-2:][0][:2] == ["config", "rm"]
    assert cluster.pulumi_argvs()[-1][0] == "up"
    assert "exec deploy/registry-redis -c redis -- redis-cli -n 0 FLUSHDB" in cluster.verbs()
    assert RO not in cluster.stack_file()
    err = capsys.readouterr().err
    assert "BackoffLimitExceeded" in err
    assert err.strip().splitlines()[-1] == "error: gc staging: the garbage-collect Job failed; the registry is writable again"


def test_an_interrupted_run_stops_the_job_before_pushes_come_back(cluster, monkeypatch):
    cluster.flag("job_running")

    def interrupt(seconds):
        clock.sleep = time.sleep
        raise KeyboardInterrupt  # Ctrl-C while the sweep runs (the first wait for the Job)

    # only gc_ops' own clock: subprocess waits with time.sleep too
    clock = types.SimpleNamespace(monotonic=time.monotonic, sleep=interrupt)
    monkeypatch.setattr(gc_ops, "time", clock)
    assert cli.main(["gc", "staging", "--yes"]) == 1
    verbs = cluster.verbs()
    name = cluster.created_jobs()[0]["metadata"]["name"]
    delete = verbs.index(f"delete job {name} --cascade=foreground --wait=true --timeout=300s")
    flush = verbs.index("exec deploy/registry-redis -c redis -- redis-cli -n 0 FLUSHDB")
    assert delete < flush
    rm = [i for i, c in enumerate(cluster.pulumi_argvs()) if c[:2] == ["config", "rm"]]
    assert rm and RO not in cluster.stack_file()


def test_read_write_that_fails_says_how_to_finish(cluster, capsys):
    (cluster.pulumi / "fail_up_after").write_text("1")  # the read-only up works, every later one fails
    assert cli.main(["gc", "staging", "--yes"]) == 1
    err = capsys.readouterr().err
    assert err.count("returning to read-write failed") == 2
    assert ("finish by hand: pulumi config rm registry-ha:readOnly --stack staging && "
            "./scripts/deploy-registry-ha.sh deploy staging --yes") in err


@pytest.mark.parametrize(
    "setup, words",
    [
        (lambda c: (c.project / "Pulumi.staging.yaml").write_text(c.stack_file() + f'  {RO}: "true"\n'),
         "already has readOnly: true in Pulumi.staging.yaml (a gc that was interrupted?)"),
        (lambda c: (c.pulumi / "outputs.json").write_text("{}"), "has no output namespace, bucketName: it was never deployed"),
        (lambda c: (c.pulumi / "fail_preview").write_text(""), "is not what is deployed"),
        (lambda c: c.flag("no_deployment"), "no Deployment docker-registry in namespace registry (context neural-hive-staging)"),
        (lambda c: c.flag("jobs.json", json.dumps({"items": [{"metadata": {"name": "docker-registry-gc-1"}, "status": {"active": 1}}]})),
         "a garbage-collect Job is still running (docker-registry-gc-1)"),
    ],
    ids=["already-read-only", "never-deployed", "undeployed-changes", "no-deployment", "job-running"],
)
def test_refuses_a_state_it_does_not_know_before_changing_anything(cluster, capsys, setup, words):
    setup(cluster)
    assert cli.main(["gc", "staging", "--yes"]) == 1
    assert words in capsys.readouterr().err
    assert not any(a[0] in ("config", "up") for a in cluster.pulumi_argvs())
    assert cluster.created_jobs() == []


def test_the_interrupted_state_names_the_way_back(cluster, capsys):
    (cluster.project / "Pulumi.staging.yaml").write_text(cluster.stack_file() + f'  {RO}: "true"\n')
    cli.main(["gc", "staging", "--yes"])
    assert ("pulumi config rm registry-ha:readOnly --stack staging && ./scripts/deploy-registry-ha.sh deploy staging --yes"
            in capsys.readouterr().err)


def test_dry_run_reports_without_a_read_only_window(cluster, capsys):
    assert cli.main(["gc", "staging", "--dry-run"]) == 0
    assert not any(a[0] in ("config", "up", "preview") for a in cluster.pulumi_argvs())
    (job,) = cluster.created_jobs()
    assert job["spec"]["template"]["spec"]["containers"][0]["args"][2:] == ["--dry-run"]
    assert not any("FLUSHDB" in v for v in cluster.verbs())
    assert capsys.readouterr().out == "7 blobs in use; would delete 3 blobs and 1 untagged manifests\n"


def test_without_confirmation_nothing_changes(cluster, capsys, monkeypatch):
    monkeypatch.setattr("sys.stdin", open(os.devnull))
    assert cli.main(["gc", "staging"]) == 2
    assert "pass --yes" in capsys.readouterr().err
    assert not any(a[0] in ("config", "up") for a in cluster.pulumi_argvs())


@pytest.mark.parametrize("argv, words", [
    (["gc"], "the following arguments are required: stack"),
    (["gc", "staging", "--timeout", "5"], "--timeout: at least 60 seconds"),
    (["gc", "Staging!"], "a stack name of"),
    (["gc", "staging", "--delete-everything"], "unrecognized arguments: --delete-everything"),
])
def test_bad_arguments_exit_2_with_one_line(cluster, capsys, argv, words):
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert words in err and "Traceback" not in err
    assert cluster.pulumi_argvs() == []


def test_a_stack_without_a_context_uses_the_current_one(cluster):
    text = "\n".join(line for line in cluster.stack_file().splitlines() if "kubernetes:context" not in line) + "\n"
    (cluster.project / "Pulumi.staging.yaml").write_text(text)
    (cluster.kube / "deployed.json").write_text(json.dumps(_registry_config(text)))
    assert cli.main(["gc", "staging", "--yes"]) == 0
    assert all(c["argv"][:2] == ["-n", "registry"] for c in cluster.kube_calls())
