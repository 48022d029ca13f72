"""scripts/push-with-fallback.sh against real registries and moto's ECR.

Measured: with the primary refused / silent / demanding credentials the image lands on the
secondary (and nowhere else), with the reason printed; with both down, the ECR step creates
the repository in moto's ECR, takes its authorization token, and pushes with it to a local
registry with htpasswd basic auth standing in for the ECR endpoint (the push only works with
the right token); with everything down the exit is 1; bad settings are one-line errors.
"""
from __future__ import annotations

import base64
import io
import json
import os
import subprocess
import tarfile
from pathlib import Path

import bcrypt
import boto3
import pytest

from conftest import require_binary
from ops_servers import Servers, dead_address
from registry_ha import imagetools, push_fallback

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parent.parent
SCRIPT = REPO_ROOT / "scripts" / "push-with-fallback.sh"
NAME, TAG = "team/app", "1.0"
AWS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_REGION": "eu-west-1"}


@pytest.fixture
def servers(tmp_path):
    s = Servers(tmp_path)
    yield s
    s.close()


@pytest.fixture
def image(tmp_path):
    return imagetools.build_oci_layout(tmp_path / "image", "v1", (8192, 65536))


def run(source, env_extra, args=(), timeout=60):
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("AWS_", "REGISTRY_PRIMARY", "REGISTRY_SECONDARY", "REGISTRY_HA_ECR"))}
    env["AWS_CONFIG_FILE"] = env["AWS_SHARED_CREDENTIALS_FILE"] = "/nonexistent"
    env.update(env_extra)
    return subprocess.run([str(SCRIPT), str(source), f"{NAME}:{TAG}", *args], capture_output=True, text=True,
                          env=env, timeout=timeout)


def digest_at(address, auth=None):
    return imagetools.manifest_digest(address, NAME, TAG, auth=auth)


def test_primary_refused_goes_to_secondary(servers, image):
    secondary = servers.registry("secondary")
    primary = dead_address()
    proc = run(image.layout, {"REGISTRY_PRIMARY": primary, "REGISTRY_SECONDARY": secondary.address})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"pushed {NAME}:{TAG} to secondary {secondary.address}/{NAME}:{TAG}" in proc.stdout
    assert f"primary {primary} skipped: refused" in proc.stdout
    assert digest_at(secondary.address) == (200, image.manifest_digest)


def test_primary_silent_times_out_then_secondary(servers, image):
    secondary = servers.registry("secondary")
    proc = run(image.layout, {"REGISTRY_PRIMARY": servers.silent(), "REGISTRY_SECONDARY": secondary.address},
               ["--timeout", "1"])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "skipped: timeout" in proc.stdout
    assert digest_at(secondary.address) == (200, image.manifest_digest)


def test_primary_up_takes_it_and_secondary_is_untouched(servers, image):
    primary, secondary = servers.registry("primary"), servers.registry("secondary")
    proc = run(image.layout, {"REGISTRY_PRIMARY": primary.address, "REGISTRY_SECONDARY": secondary.address})
    assert proc.returncode == 0
    assert f"to primary {primary.address}" in proc.stdout and "skipped" not in proc.stdout
    assert digest_at(primary.address) == (200, image.manifest_digest)
    assert digest_at(secondary.address)[0] == 404


def test_primary_wanting_credentials_is_skipped_as_auth(servers, image, tmp_path):
    htpasswd = "someone:" + bcrypt.hashpw(b"pw", bcrypt.gensalt(rounds=4)).decode() + "\n"
    primary = servers.registry("primary", htpasswd=htpasswd)
    secondary = servers.registry("secondary")
    proc = run(image.layout, {"REGISTRY_PRIMARY": primary.address, "REGISTRY_SECONDARY": secondary.address,
                              "REGISTRY_AUTH_FILE": str(tmp_path / "none.json")})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"primary {primary.address} skipped: auth" in proc.stdout
    assert digest_at(secondary.address) == (200, image.manifest_digest)


def _ecr_stand_in(servers, moto_url):
    """A registry whose htpasswd accepts exactly the credentials moto's ECR token carries."""
    client = boto3.client("ecr", region_name="eu-west-1", endpoint_url=moto_url,
                          aws_access_key_id="testing", aws_secret_access_key="testing")
    token = client.get_authorization_token()["authorizationData"][0]["authorizationToken"]
    user, password = base64.b64decode(token).decode().split(":", 1)
    htpasswd = f"{user}:" + bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=4)).decode() + "\n"
    return client, servers.registry("ecr", htpasswd=htpasswd), token, password


def test_both_down_pushes_to_ecr_with_the_token_and_creates_the_repository(servers, image):
    moto_url = servers.moto()
    client, ecr, token, password = _ecr_stand_in(servers, moto_url)
    primary, secondary = dead_address(), dead_address()
    with pytest.raises(client.exceptions.RepositoryNotFoundException):
        client.describe_repositories(repositoryNames=[NAME])
    proc = run(image.layout, {**AWS, "REGISTRY_PRIMARY": primary, "REGISTRY_SECONDARY": secondary,
                              "AWS_ENDPOINT_URL_ECR": moto_url, "REGISTRY_HA_ECR_REGISTRY": ecr.address})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"pushed {NAME}:{TAG} to ecr {ecr.address}/{NAME}:{TAG}" in proc.stdout
    assert f"primary {primary} skipped: refused" in proc.stdout
    assert f"secondary {secondary} skipped: refused" in proc.stdout
    assert f"created repository {NAME} in eu-west-1" in proc.stderr
    # the repository now exists in (moto's) ECR
    repos = client.describe_repositories(repositoryNames=[NAME])["repositories"]
    assert repos[0]["repositoryName"] == NAME
    # the image is there, readable only with the token
    assert digest_at(ecr.address)[0] == 401
    assert digest_at(ecr.address, auth=f"Basic {token}") == (200, image.manifest_digest)
    # the token never shows
    assert token not in proc.stdout + proc.stderr and password not in proc.stdout + proc.stderr


def test_existing_ecr_repository_is_reused(servers, image):
    moto_url = servers.moto()
    client, ecr, _, _ = _ecr_stand_in(servers, moto_url)
    client.create_repository(repositoryName=NAME)
    proc = run(image.layout, {**AWS, "REGISTRY_PRIMARY": dead_address(), "REGISTRY_SECONDARY": dead_address(),
                              "AWS_ENDPOINT_URL_ECR": moto_url, "REGISTRY_HA_ECR_REGISTRY": ecr.address})
    assert proc.returncode == 0, proc.stderr
    assert "created repository" not in proc.stderr


def test_ecr_with_a_wrong_token_is_an_auth_failure(servers, image):
    moto_url = servers.moto()
    htpasswd = "AWS:" + bcrypt.hashpw(b"something-else", bcrypt.gensalt(rounds=4)).decode() + "\n"
    ecr = servers.registry("ecr", htpasswd=htpasswd)
    proc = run(image.layout, {**AWS, "REGISTRY_PRIMARY": dead_address(), "REGISTRY_SECONDARY": dead_address(),
                              "AWS_ENDPOINT_URL_ECR": moto_url, "REGISTRY_HA_ECR_REGISTRY": ecr.address})
    assert proc.returncode == 1
    assert "ecr" in proc.stdout and "skipped: auth" in proc.stdout


def test_everything_down_exits_1_naming_each_reason(image):
    proc = run(image.layout, {**AWS, "REGISTRY_PRIMARY": dead_address(), "REGISTRY_SECONDARY": dead_address(),
                              "AWS_ENDPOINT_URL_ECR": f"http://{dead_address()}"}, ["--timeout", "1"])
    assert proc.returncode == 1
    assert proc.stdout.startswith(f"FAILED: {NAME}:{TAG} was not pushed anywhere")
    assert proc.stdout.count("skipped: refused") == 3
    assert "Traceback" not in proc.stderr


def test_no_aws_credentials_is_an_auth_failure(image):
    proc = run(image.layout, {"AWS_REGION": "us-east-1", "REGISTRY_PRIMARY": dead_address(),
                              "REGISTRY_SECONDARY": dead_address()})
    assert proc.returncode == 1
    assert "ecr ECR us-east-1 skipped: auth" in proc.stdout and "no AWS credentials" in proc.stderr


@pytest.mark.parametrize(
    "env,args,expected",
    [
        ({"REGISTRY_PRIMARY": "registry.neural-hive.local"}, [], "REGISTRY_PRIMARY: HOST:PORT"),
        ({"REGISTRY_SECONDARY": "http://37.60.241.150:30500"}, [], "REGISTRY_SECONDARY: HOST:PORT"),
        ({"REGISTRY_SECONDARY": "37.60.241.150:0"}, [], "REGISTRY_SECONDARY: HOST:PORT"),
        ({"AWS_REGION": "moon-1"}, [], "AWS_REGION: an AWS region such as us-east-1"),
        ({"REGISTRY_HA_ECR_REGISTRY": "nope"}, [], "REGISTRY_HA_ECR_REGISTRY: HOST:PORT"),
        ({}, ["--timeout", "0"], "--timeout"),
    ],
)
def test_bad_settings_are_one_line_errors(image, env, args, expected):
    proc = run(image.layout, env, args)
    assert proc.returncode == 2
    assert expected in proc.stderr and proc.stderr.count("\n") == 1


@pytest.mark.parametrize("name", ["Team/App:1.0", "team/app", "team/app:", "reg.io:5000/app:1"])
def test_bad_image_names(monkeypatch, capsys, image, name):
    assert push_fallback.main([str(image.layout), name]) == 2
    assert "NAME:TAG" in capsys.readouterr().err


def test_missing_source_is_a_one_line_error(tmp_path):
    proc = run(tmp_path / "nothing-here", {"REGISTRY_PRIMARY": dead_address()})
    assert proc.returncode == 2
    assert "SOURCE" in proc.stderr and proc.stderr.count("\n") == 1


def test_source_detection(tmp_path, image):
    assert push_fallback.resolve_source(str(image.layout), tmp_path) == f"oci:{image.layout.resolve()}"
    assert push_fallback.resolve_source("oci:/x:y", tmp_path) == "oci:/x:y"
    oci_tar = tmp_path / "image.tar"
    with tarfile.open(oci_tar, "w") as tar:
        tar.add(image.layout, arcname=".")
    assert push_fallback.resolve_source(str(oci_tar), tmp_path) == f"oci-archive:{oci_tar.resolve()}"
    docker_tar = tmp_path / "docker.tar"
    with tarfile.open(docker_tar, "w") as tar:
        data = b"[]"
        info = tarfile.TarInfo("manifest.json")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    assert push_fallback.resolve_source(str(docker_tar), tmp_path) == f"docker-archive:{docker_tar.resolve()}"


def test_oci_archive_source_is_pushed(servers, image, tmp_path):
    secondary = servers.registry("secondary")
    oci_tar = tmp_path / "image.tar"
    with tarfile.open(oci_tar, "w") as tar:
        tar.add(image.layout, arcname=".")
    proc = run(oci_tar, {"REGISTRY_PRIMARY": dead_address(), "REGISTRY_SECONDARY": secondary.address})
    assert proc.returncode == 0, proc.stderr
    assert digest_at(secondary.address) == (200, image.manifest_digest)


def test_docker_daemon_image_is_exported_once_and_pushed(servers, image, tmp_path):
    """SOURCE names a local Docker image: `docker save` (a stand-in docker CLI) then skopeo."""
    secondary = servers.registry("secondary")
    archive = tmp_path / "saved.tar"
    subprocess.run([require_binary("skopeo"), "--insecure-policy", "copy", image.reference, f"docker-archive:{archive}:team/app:1.0"],
                   check=True, capture_output=True)
    fakes = Path(__file__).resolve().parent / "fakes"
    env = {"REGISTRY_PRIMARY": dead_address(), "REGISTRY_SECONDARY": secondary.address,
           "FAKE_DOCKER_IMAGE": "team/app:1.0", "FAKE_DOCKER_ARCHIVE": str(archive),
           "PATH": f"{fakes}{os.pathsep}{os.environ['PATH']}"}
    proc = run("team/app:1.0", env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    status, digest = digest_at(secondary.address)
    assert status == 200
    # same layers as the image that was saved (docker-archive re-encodes the manifest)
    manifest = json.loads(imagetools.http_request(f"http://{secondary.address}/v2/{NAME}/manifests/{TAG}",
                                                  headers={"Accept": imagetools.MANIFEST_ACCEPT})[2])
    assert len(manifest["layers"]) == len(image.layer_digests)

    missing = run("team/other:1.0", env)
    assert missing.returncode == 2
    assert "not an image in the local Docker daemon" in missing.stderr
