"""The whole program, evaluated with Pulumi.staging.yaml and Pulumi.production.yaml under mocks."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from registry_ha.mock_engine import MOCK_LB_IP, is_secret_wrapper, load_stack_config, run_program
from registry_ha.settings import KEYS, SettingsError

REPO = Path(__file__).resolve().parent.parent
STACKS = ("staging", "production")


@pytest.fixture(scope="module")
def runs():
    return {stack: run_program(stack) for stack in STACKS}


def manifest(run, kind, name):
    matches = [m for m in run.manifests() if m["kind"] == kind and m["metadata"]["name"] == name]
    assert len(matches) == 1, f"{kind}/{name}: {len(matches)}"
    return matches[0]


def registry_config(run, secret_name="docker-registry-config"):
    return yaml.safe_load(manifest(run, "Secret", secret_name)["stringData"]["config.yml"])


@pytest.mark.parametrize("stack", STACKS)
def test_components_are_typed_and_every_resource_is_parented(runs, stack):
    run = runs[stack]
    components = {r.type for r in run.resources if not r.custom}
    assert components == {
        "registry-ha:namespace:RegistryNamespace",
        "registry-ha:storage:RegistryStorage",
        "registry-ha:redis:RedisCache",
        "registry-ha:registry:Registry",
        "registry-ha:network:NetworkPolicies",
    } | ({"registry-ha:auth:TokenAuth"} if stack == "production" else set())  # authEnabled: production's stack file
    component_urns = {r.urn for r in run.resources if not r.custom}
    orphans = [r.name for r in run.resources if r.custom and r.parent not in component_urns]
    assert orphans == []


@pytest.mark.parametrize("stack", STACKS)
def test_outputs(runs, stack):
    outputs = runs[stack].outputs
    assert outputs["registryAddress"] == "registry.neural-hive.local:5000"
    assert outputs["secondaryAddress"] == "37.60.241.150:30500"
    assert outputs["loadBalancerAddress"] == MOCK_LB_IP
    assert outputs["hostsLine"] == f"{MOCK_LB_IP} registry.neural-hive.local"
    assert outputs["mirrorAddress"] == "docker-registry-mirror.registry.svc.cluster.local:5000"
    assert outputs["bucketName"].startswith(f"neural-hive-registry-{stack}-")
    assert outputs["region"] == "us-east-1"
    assert outputs["iamUserName"] == f"registry-ha-{stack}-registry"
    assert outputs["namespace"] == "registry"
    # only production (authEnabled) has identities, and their passwords leave only as a secret output
    assert runs[stack].secret_outputs == ({"registryCredentials"} if stack == "production" else set())


@pytest.mark.parametrize("stack", STACKS)
def test_three_replicas_behind_one_config_secret(runs, stack):
    run = runs[stack]
    deployment = manifest(run, "Deployment", "docker-registry")
    assert deployment["spec"]["replicas"] == 3
    config = registry_config(run)
    assert len(config["http"]["secret"]) == 48
    mirror = registry_config(run, "docker-registry-mirror-config")
    assert mirror["proxy"]["remoteurl"] == "https://registry-1.docker.io"
    assert (config["redis"]["db"], mirror["redis"]["db"]) == (0, 1)
    assert config["redis"]["addrs"] == ["registry-redis.registry.svc:6379"]
    assert config["storage"]["s3"]["bucket"] == run.outputs["bucketName"]


def test_stacks_differ_where_they_should(runs):
    staging, production = runs["staging"], runs["production"]

    def anti_affinity(run):
        return manifest(run, "Deployment", "docker-registry")["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"]

    assert "preferredDuringSchedulingIgnoredDuringExecution" in anti_affinity(staging)
    assert "requiredDuringSchedulingIgnoredDuringExecution" in anti_affinity(production)
    staging_sse = staging.one("aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration", "storage-encryption")
    production_sse = production.one("aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration", "storage-encryption")
    assert staging_sse.inputs["rules"][0]["applyServerSideEncryptionByDefault"]["sseAlgorithm"] == "AES256"
    assert production_sse.inputs["rules"][0]["applyServerSideEncryptionByDefault"]["sseAlgorithm"] == "aws:kms"
    key_arn = production.one("aws:kms/key:Key", "storage-key").state["arn"]
    assert production_sse.inputs["rules"][0]["applyServerSideEncryptionByDefault"]["kmsMasterKeyId"] == key_arn
    assert production_sse.inputs["rules"][0]["bucketKeyEnabled"] is True
    # SSE-KMS: the bucket default is the authority; the registry sends no SSE headers (3.1.1 drops keyid
    # on a re-created multipart upload). SSE-S3: the registry asks for AES256 as well.
    assert registry_config(production)["storage"]["s3"]["encrypt"] is False
    assert "keyid" not in registry_config(production)["storage"]["s3"]
    assert registry_config(staging)["storage"]["s3"]["encrypt"] is True
    assert production.of_type("aws:s3/bucketVersioning:BucketVersioning") and not staging.of_type("aws:s3/bucketVersioning:BucketVersioning")


@pytest.mark.parametrize("stack", STACKS)
def test_no_configmap_and_secrets_only_inside_secrets(runs, stack):
    run = runs[stack]
    assert [m for m in run.manifests() if m["kind"] == "ConfigMap"] == []
    config = registry_config(run)
    secret_values = [config["http"]["secret"], config["redis"]["password"], config["storage"]["s3"]["secretkey"]]
    for resource in run.resources:
        if resource.type == "kubernetes:core/v1:Secret":
            assert is_secret_wrapper(resource.inputs["stringData"])  # marked secret on the wire
            continue
        text = json.dumps(resource.inputs)
        leaked = [v for v in secret_values if v in text]
        assert not leaked, f"{resource.type} {resource.name} holds a secret value"


@pytest.mark.parametrize("stack", STACKS)
def test_debug_port_is_never_exposed(runs, stack):
    exposed = [
        m for m in runs[stack].manifests()
        if m["kind"] == "Service" and m["spec"]["type"] in ("LoadBalancer", "NodePort")
    ]
    assert [m["metadata"]["name"] for m in exposed] == ["docker-registry"]
    for service in exposed:
        assert {p["port"] for p in service["spec"]["ports"]} == {5000}
        assert service["spec"]["ports"][0]["nodePort"] == 30500


def test_config_change_rolls_the_pods_and_nothing_else_does():
    def checksum(**extra):
        config, secret_keys = load_stack_config("staging")
        config.update({f"registry-ha:{k}": v for k, v in extra.items()})
        run = run_program("staging", config=config, secret_keys=secret_keys)
        return manifest(run, "Deployment", "docker-registry")["spec"]["template"]["metadata"]["annotations"]["checksum/config"]

    base = checksum()
    assert checksum() == base
    assert checksum(redisTimeout="250ms") != base
    assert checksum(storageRedirect="true") != base


def test_bad_config_stops_before_any_resource():
    config, _ = load_stack_config("staging")
    config["registry-ha:nodePort"] = "80"
    with pytest.raises(SettingsError, match=r"^registry-ha:nodePort: an integer from 30000 to 32767 \(got 80\)$"):
        run_program("staging", config=config)


def test_stack_files_hold_no_plaintext_secret():
    secret_keys = {k.name for k in KEYS if k.secret}
    for stack in STACKS:
        document = yaml.safe_load((REPO / f"Pulumi.{stack}.yaml").read_text())
        for key, value in (document.get("config") or {}).items():
            name = key.split(":")[-1]
            if name in secret_keys:
                assert isinstance(value, dict) and set(value) == {"secure"}, f"{stack}: {key} must be secure:"


def test_render_cli_writes_manifests_with_secrets_redacted(tmp_path):
    out = tmp_path / "staging"
    result = subprocess.run(
        [str(REPO / "scripts/deploy-registry-ha.sh"), "render", "staging", "--out", str(out)],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in out.iterdir()) == [
        "aws.json", "dockerhub-cache.yaml", "namespace.yaml", "network.yaml", "outputs.json", "private.yaml", "redis.yaml",
    ]
    private = list(yaml.safe_load_all((out / "private.yaml").read_text()))
    secret = next(d for d in private if d["kind"] == "Secret")
    assert secret["stringData"] == {"config.yml": "[secret]"}
    kinds = sorted(d["kind"] for d in private)
    assert kinds == ["Deployment", "PodDisruptionBudget", "Secret", "Service", "Service"]
    aws = json.loads((out / "aws.json").read_text())
    types = {r["type"] for r in aws}
    assert "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock" in types and "aws:iam/userPolicy:UserPolicy" in types
    policy = json.loads(next(r for r in aws if r["type"] == "aws:iam/userPolicy:UserPolicy")["inputs"]["policy"])
    assert {s["Sid"] for s in policy["Statement"]} == {"RegistryBucket", "RegistryObjects"}
    assert json.loads((out / "outputs.json").read_text())["registryAddress"] == "registry.neural-hive.local:5000"


def test_render_show_secrets_and_bad_arguments(tmp_path):
    script = str(REPO / "scripts/deploy-registry-ha.sh")
    shown = subprocess.run([script, "render", "production", "--out", str(tmp_path), "--show-secrets"], capture_output=True, text=True, timeout=120)
    assert shown.returncode == 0, shown.stderr
    secret = next(d for d in yaml.safe_load_all((tmp_path / "private.yaml").read_text()) if d["kind"] == "Secret")
    assert "http" in yaml.safe_load(secret["stringData"]["config.yml"])
    for argv, message in [
        (["render"], "error: render: the following arguments are required: stack"),
        (["render", "dev"], "error: stack 'dev': no Pulumi.dev.yaml in"),
        (["frobnicate"], "error: unknown command 'frobnicate'"),
    ]:
        result = subprocess.run([script, *argv], capture_output=True, text=True, timeout=60)
        assert result.returncode == 2
        assert result.stderr.splitlines()[0].startswith(message), result.stderr
        assert "Traceback" not in result.stderr


def test_mirror_node_port_gives_node_clients_an_address():
    config, secret_keys = load_stack_config("staging")
    config["registry-ha:mirrorNodePort"] = "30501"
    run = run_program("staging", config=config, secret_keys=secret_keys)
    assert run.outputs["mirrorAddress"] == "37.60.241.150:30501"
    service = manifest(run, "Service", "docker-registry-mirror")
    assert service["spec"]["type"] == "NodePort" and service["spec"]["ports"][0]["nodePort"] == 30501
    config["registry-ha:mirrorEnabled"] = "false"
    run = run_program("staging", config=config, secret_keys=secret_keys)
    assert run.outputs["mirrorAddress"] is None
    assert not [m for m in run.manifests() if m["metadata"]["name"].startswith("docker-registry-mirror")]
