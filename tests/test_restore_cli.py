"""`deploy-registry-ha.sh restore` without a bucket to reach: arguments, the stack's bucketName output read
through the stand-in `pulumi`, and one line when AWS credentials are missing (the restore itself runs
against moto's versioned S3 in tests/integration/test_17_restore.py)."""
from __future__ import annotations

import json
import os

import pytest

from conftest import pulumi_argvs, stand_in_project
from registry_ha import cli
from registry_ha.restore import parse_time


@pytest.fixture
def project(tmp_path, monkeypatch):
    repo, state = tmp_path / "project", tmp_path / "pulumi"
    stand_in_project(repo, state, monkeypatch)
    for name in [k for k in os.environ if k.startswith("AWS_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    return state


def test_the_bucket_comes_from_the_stack_outputs_and_missing_credentials_are_one_line(project, capsys):
    (project / "outputs.json").write_text(json.dumps({"bucketName": "neural-hive-registry-production-abc", "region": "us-east-1"}))
    assert cli.main(["restore", "production", "team/app:1.2.3", "--before", "2026-11-28T10:00:00Z", "--yes"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: no AWS credentials: set AWS_PROFILE") and "Traceback" not in err
    calls = pulumi_argvs(project)
    assert ["stack", "output", "--json", "--stack", "production", "--non-interactive"] in calls


def test_a_stack_never_deployed_has_no_bucket_to_restore_from(project, capsys):
    assert cli.main(["restore", "production", "team/app:1.2.3", "--before", "2026-11-28T10:00:00Z"]) == 1
    assert "has no bucketName output; pass --bucket" in capsys.readouterr().err


@pytest.mark.parametrize("argv, words", [
    (["restore", "production", "team/app:1.2.3"], "the following arguments are required: --before"),
    (["restore", "production", "Team/App", "--before", "2026-11-28"], "NAME:TAG such as team/app:1.2.3"),
    (["restore", "production", "team/app:v1", "--before", "28/11/2026"], "an ISO 8601 time such as 2026-11-28T10:00:00Z (got '28/11/2026')"),
])
def test_bad_arguments_exit_2(project, capsys, argv, words):
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert words in err and "Traceback" not in err


def test_times_without_an_offset_are_utc():
    assert parse_time("2026-11-28 10:00").isoformat() == "2026-11-28T10:00:00+00:00"
    assert parse_time("2026-11-28T12:00:00+02:00").utcoffset().total_seconds() == 7200
