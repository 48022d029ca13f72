"""`deploy-registry-ha.sh destroy` against the stand-in `pulumi`: what it says stays, the exact destroy
calls (protected resources excluded), the confirmation, and how it says to delete a kept bucket."""
from __future__ import annotations

import json
import os

import pytest

from conftest import pulumi_argvs, stand_in_project
from registry_ha import cli, destroy_ops
from tests.mocking import settings_for

NI = "--non-interactive"


def outputs(stack: str) -> dict:
    return {"namespace": "registry", "bucketName": f"neural-hive-registry-{stack}-abc", "region": "us-east-1",
            "iamUserName": f"registry-ha-{stack}-registry"}


@pytest.fixture
def project(tmp_path, monkeypatch):
    repo, state = tmp_path / "project", tmp_path / "pulumi"
    stand_in_project(repo, state, monkeypatch)

    def argvs():
        return pulumi_argvs(state)

    return {"repo": repo, "state": state, "argvs": argvs}


def test_production_keeps_its_bucket_and_key_and_says_how_to_delete_them(project, capsys):
    (project["state"] / "outputs.json").write_text(json.dumps(outputs("production")))
    assert cli.main(["destroy", "production", "--yes"]) == 0
    assert project["argvs"]()[2:] == [
        ["stack", "output", "--json", "--stack", "production", NI],
        ["destroy", "--preview-only", "--stack", "production", NI, "--exclude-protected"],
        ["destroy", "--yes", "--stack", "production", NI, "--exclude-protected"],
    ]
    captured = capsys.readouterr()
    assert ("stays: bucket neural-hive-registry-production-abc (us-east-1) with every image "
            "(versioned, old versions kept 30 days), its KMS key (protected)") in captured.err
    assert "goes:  every Kubernetes object in namespace registry" in captured.err
    assert "the IAM user registry-ha-production-registry" in captured.err
    bucket_urn = ("urn:pulumi:production::registry-ha::registry-ha:storage:RegistryStorage"
                  "$aws:s3/bucket:Bucket::storage-bucket")
    key_urn = "urn:pulumi:production::registry-ha::registry-ha:storage:RegistryStorage$aws:kms/key:Key::storage-key"
    assert f"pulumi up --stack production --yes --target '{bucket_urn}' --target '{key_urn}'" in captured.out
    assert "pulumi config set registry-ha:retainBucket false --stack production" in captured.out
    assert "aws s3api delete-bucket --bucket neural-hive-registry-production-abc" in captured.out
    assert f"pulumi state delete --stack production --force '{key_urn}'" in captured.out


def test_the_urns_printed_are_the_ones_the_program_registers():
    from registry_ha.mock_engine import run_program

    run = run_program("production")
    protected = sorted(r.urn for r in run.resources if r.protect)
    assert sorted(destroy_ops.kept_resources(settings_for("production"), "production")) == protected


def test_staging_says_the_bucket_goes_with_its_images(project, capsys):
    (project["state"] / "outputs.json").write_text(json.dumps(outputs("staging")))
    assert cli.main(["destroy", "staging", "--yes"]) == 0
    captured = capsys.readouterr()
    assert "goes:  bucket neural-hive-registry-staging-abc (us-east-1), emptied first (forceDestroy: true)" in captured.err
    assert "stays" not in captured.err
    assert captured.out == "stack staging destroyed, its bucket included\n"


def test_no_confirmation_no_destroy(project, capsys, monkeypatch):
    monkeypatch.setattr("sys.stdin", open(os.devnull))
    assert cli.main(["destroy", "production"]) == 2
    assert "pass --yes" in capsys.readouterr().err
    assert ["destroy", "--yes", "--stack", "production", NI, "--exclude-protected"] not in project["argvs"]()


def test_a_failed_preview_changes_nothing(project, capsys):
    (project["state"] / "fail_destroy").write_text("")
    assert cli.main(["destroy", "production", "--yes"]) == 1
    assert "nothing was changed" in capsys.readouterr().err
    assert sum(1 for a in project["argvs"]() if a[0] == "destroy") == 1


def test_a_key_the_stack_does_not_own_is_not_its_to_keep():
    settings = settings_for("production", kmsKeyArn="arn:aws:kms:us-east-1:123456789012:key/given")
    assert [u.rsplit("::", 1)[1] for u in destroy_ops.kept_resources(settings, "production")] == ["storage-bucket"]
    text = destroy_ops.what_stays(settings, "production", {})
    assert "the KMS key arn:aws:kms:us-east-1:123456789012:key/given is yours, not the stack's" in text
