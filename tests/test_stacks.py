"""Stacks the Pulumi way: every difference between stacks is written in their stack files (no value
depends on a stack's name), stacks that would share a cluster's objects are refused, and provider
keys the providers would ignore are warned about."""
from __future__ import annotations

import itertools
import json
import os
import subprocess
from pathlib import Path

import pulumi
import pytest

from conftest import REPO_ROOT, copy_repo
from registry_ha.k8s import CHECKSUM_ANNOTATION
from registry_ha.mock_engine import run_program
from registry_ha.render import render_documents
from registry_ha.settings import from_pulumi_config, resolve_values
from registry_ha.stacks import read_stack_file, stack_names, unknown_provider_keys

SHIPPED = stack_names(REPO_ROOT)
FAKES = REPO_ROOT / "tests" / "fakes"


def resolved(stack: str) -> tuple[dict, set]:
    """Every key's value for a shipped stack, and the keys its stack file writes (provider keys included)."""
    config, secret_keys = read_stack_file(stack)
    values, given = resolve_values(config, stack, secret_keys, aws_region=config.get("aws:region"))
    return values, given | {key for key in config if not key.startswith("registry-ha:")}


def test_the_shipped_stacks_are_staging_and_production():
    assert SHIPPED == ["production", "staging"]


@pytest.mark.parametrize("one, other", list(itertools.combinations(SHIPPED, 2)))
def test_every_value_that_differs_between_stacks_is_written_in_both_stack_files(one, other):
    (values_one, written_one), (values_other, written_other) = resolved(one), resolved(other)
    differing = sorted(key for key in values_one if values_one[key] != values_other[key])
    assert len(differing) >= 10, differing  # they do differ (a comparison of nothing proves nothing)
    unwritten = {key: (values_one[key], values_other[key]) for key in differing
                 if not (key in written_one and key in written_other)}
    assert unwritten == {}, f"values that differ without being in both Pulumi.{one}.yaml and Pulumi.{other}.yaml"
    config_one, _ = read_stack_file(one)
    config_other, _ = read_stack_file(other)
    provider_keys = {k for k in {*config_one, *config_other} if not k.startswith("registry-ha:")}
    assert {k for k in provider_keys if config_one.get(k) != config_other.get(k) and not (k in config_one and k in config_other)} == set()


def rendered(stack_name: str, file_of: str) -> str:
    """Everything the program declares for Pulumi.<file_of>.yaml evaluated as stack `stack_name`: the
    manifests, the AWS resources and the outputs as one JSON text, the stack names replaced by STACK."""
    config, secret_keys = read_stack_file(file_of)
    run = run_program(stack_name, config=config, secret_keys=secret_keys)
    manifests, aws = render_documents(run)
    for documents in manifests.values():
        for document in documents:
            annotations = document.get("spec", {}).get("template", {}).get("metadata", {}).get("annotations", {})
            if CHECKSUM_ANNOTATION in annotations:
                # a digest of the config, which holds the bucket name (made from the stack name): the config
                # itself is compared below, and tests/test_components.py checks the digest is the config's
                annotations[CHECKSUM_ANNOTATION] = "DIGEST"
    in_order = {  # registration order varies from run to run
        "manifests": {c: sorted(docs, key=lambda d: (d["kind"], d["metadata"]["name"])) for c, docs in manifests.items()},
        "aws": sorted(aws, key=lambda r: (r["type"], r["name"])),
        "outputs": run.outputs,
    }
    text = json.dumps(in_order, sort_keys=True)
    assert stack_name in text  # the names the program makes from the stack name (bucket prefix, labels)
    return text.replace(stack_name, "STACK")


@pytest.mark.parametrize("stack, other_name", [(s, o) for s in SHIPPED for o in SHIPPED if o != s])
def test_a_stack_file_renders_the_same_under_another_stack_name(stack, other_name):
    """Only the stack file decides what a stack deploys: the same file under another stack name declares
    the same objects, except for the names made from the stack name."""
    own = rendered(stack, stack)
    assert rendered(other_name, stack) == own
    assert rendered(other_name, other_name) != own  # the two files do deploy different things


# --------------------------------------------------------------------------- stacks on one cluster


@pytest.fixture
def repo(tmp_path) -> Path:
    return copy_repo(tmp_path / "repo")


def script(repo: Path, tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    state = tmp_path / "fake-pulumi"
    state.mkdir(exist_ok=True)
    env = {"PATH": f"{FAKES}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}", "HOME": str(tmp_path),
           "FAKE_PULUMI_DIR": str(state)}
    return subprocess.run([str(repo / "scripts" / "deploy-registry-ha.sh"), *args], cwd=tmp_path, env=env,
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120)


def pulumi_calls(tmp_path: Path) -> list[list[str]]:
    path = tmp_path / "fake-pulumi" / "calls.jsonl"
    return [json.loads(line)["argv"] for line in path.read_text().splitlines()] if path.exists() else []


def set_config(repo: Path, stack: str, **values: str) -> None:
    path = repo / f"Pulumi.{stack}.yaml"
    lines = path.read_text().splitlines()
    for key, value in values.items():
        lines = [line for line in lines if not line.strip().startswith(f"{key}:")]
        lines.append(f"  {key}: {json.dumps(value)}")
    path.write_text("\n".join(lines) + "\n")


def test_two_stack_files_on_one_cluster_are_refused_by_render_and_deploy(repo, tmp_path):
    set_config(repo, "production", **{"kubernetes:context": "neural-hive-staging"})
    render = script(repo, tmp_path, "render", "staging", "--out", str(tmp_path / "out"))
    assert render.returncode == 2
    assert render.stderr == ("error: stack 'staging': namespace 'registry' is also used by Pulumi.production.yaml on the "
                             "same kubernetes:context neural-hive-staging; give each stack its own kubernetes:context, "
                             "or its own namespace and nodePort\n")
    assert not (tmp_path / "out").exists()
    deploy = script(repo, tmp_path, "deploy", "production", "--yes")
    assert deploy.returncode == 2
    assert deploy.stderr.startswith("error: stack 'production': namespace 'registry' is also used by Pulumi.staging.yaml")
    assert pulumi_calls(tmp_path) == []  # refused before the CLI ran

    set_config(repo, "production", **{"registry-ha:namespace": "registry-prod"})  # the NodePort still clashes
    render = script(repo, tmp_path, "render", "staging", "--out", str(tmp_path / "out"))
    assert render.returncode == 2 and "nodePort 30500 is also used by Pulumi.production.yaml" in render.stderr

    set_config(repo, "production", **{"registry-ha:nodePort": "30600"})  # a namespace and a NodePort of its own
    assert script(repo, tmp_path, "render", "staging", "--out", str(tmp_path / "out")).returncode == 0
    deploy = script(repo, tmp_path, "deploy", "production", "--yes")
    assert deploy.returncode == 0, deploy.stderr
    assert ["up", "--yes", "--diff", "--stack", "production", "--non-interactive", "--policy-pack", "policy"] in pulumi_calls(tmp_path)


# --------------------------------------------------------------------------- provider keys


def test_a_provider_key_typo_is_warned_about_by_render(repo, tmp_path):
    set_config(repo, "staging", **{"aws:regoin": "eu-west-1", "kubernetes:contxt": "other"})
    proc = script(repo, tmp_path, "render", "staging", "--out", str(tmp_path / "out"))
    assert proc.returncode == 0, proc.stderr  # a warning, not an error: Pulumi itself accepts the key
    assert proc.stderr.splitlines() == [
        "warning: aws:regoin: not a setting of the aws provider, which would ignore it; did you mean aws:region?",
        "warning: kubernetes:contxt: not a setting of the kubernetes provider, which would ignore it; "
        "did you mean kubernetes:context?",
    ]


def test_the_keys_the_stack_files_use_are_known_to_the_providers():
    for stack in SHIPPED:
        config, _ = read_stack_file(stack)
        assert {"aws:region", "kubernetes:context"} <= set(config)
        assert unknown_provider_keys(config) == []
    assert unknown_provider_keys({"aws:profile": "x", "aws:skipCredentialsValidation": "true",
                                  "kubernetes:namespace": "x", "registry-ha:anything": "x", "other:key": "x"}) == []


def test_from_pulumi_config_warns_through_the_engine(monkeypatch):
    """What `pulumi up` shows: pulumi.log.warn, once per unknown provider key; the program still runs."""
    from pulumi.runtime import config as runtime_config

    runtime_config.set_all_config({}, [])
    monkeypatch.setenv("PULUMI_CONFIG", json.dumps({"aws:regoin": "eu-west-1", "aws:region": "us-east-1",
                                                    "kubernetes:context": "c", "registry-ha:replicas": "3"}))
    monkeypatch.setenv("PULUMI_CONFIG_SECRET_KEYS", "[]")
    monkeypatch.setattr(pulumi, "get_stack", lambda: "staging")
    warned = []
    monkeypatch.setattr(pulumi.log, "warn", lambda message, *args, **kwargs: warned.append(message))
    settings = from_pulumi_config()
    assert warned == ["aws:regoin: not a setting of the aws provider, which would ignore it; did you mean aws:region?"]
    assert settings.storage.region == "us-east-1" and settings.registry.replicas == 3
