"""The whole program, evaluated with Pulumi.staging.yaml and Pulumi.production.yaml under mocks."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml

from registry_ha.mock_engine import (
    MOCK_LB_IP,
    is_secret_wrapper,
    load_stack_config,
    mock_cluster_ip,
    normalize,
    run_program,
    unwrap_secrets,
)
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
    monitoring = {"registry-ha:monitoring:Monitoring"} if stack == "production" else set()  # its stack file opts in
    assert components == {
        "registry-ha:namespace:RegistryNamespace",
        "registry-ha:storage:RegistryStorage",
        "registry-ha:redis:RedisCache",
        "registry-ha:registry:Registry",
        "registry-ha:network:NetworkPolicies",
        *monitoring,
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
    # upstream host -> the cache's ClusterIP:5000 (allocated by the cluster; here, by the mocks)
    assert outputs["mirrorAddress"] == {"docker.io": f"{mock_cluster_ip('dockerhub-cache-service')}:5000"}
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
def test_no_configmap_but_the_dashboard_and_secrets_only_inside_secrets(runs, stack):
    run = runs[stack]
    # the one ConfigMap is production's Grafana dashboard: one JSON document, checked for secrets below
    configmaps = [(m["metadata"]["name"], sorted(m["data"])) for m in run.manifests() if m["kind"] == "ConfigMap"]
    assert configmaps == ([("registry-ha-production", ["registry-ha-production.json"])] if stack == "production" else [])
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
    def checksums(**extra):
        config, secret_keys = load_stack_config("staging")
        config.update({f"registry-ha:{k}": v for k, v in extra.items()})
        run = run_program("staging", config=config, secret_keys=secret_keys)
        return {name: manifest(run, "Deployment", name)["spec"]["template"]["metadata"]["annotations"]["checksum/config"]
                for name in ("docker-registry", "docker-registry-mirror", "registry-redis")}

    base = checksums()
    assert checksums() == base
    changed = {key: {n for n, c in checksums(**{key: value}).items() if c != base[n]}
               for key, value in (("redisTimeout", "250ms"), ("storageRedirect", "true"), ("redisMaxMemory", "100mb"))}
    assert changed == {
        "redisTimeout": {"docker-registry", "docker-registry-mirror"},  # both registries' config.yml
        "storageRedirect": {"docker-registry", "docker-registry-mirror"},
        "redisMaxMemory": {"registry-redis"},  # redis.conf only: Redis rolls, the registries do not
    }


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
        "aws.json", "dockerhub-cache.yaml", "namespace.yaml", "network.yaml", "nodes", "outputs.json", "private.yaml", "redis.yaml",
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
    # the mock engine's stand-ins, exactly as the program declared them (real secrets live only in the state)
    run = run_program("production")
    for component in ("private", "dockerhub-cache", "redis"):
        written = next(d for d in yaml.safe_load_all((tmp_path / f"{component}.yaml").read_text()) if d["kind"] == "Secret")
        declared = next(m for m in run.manifests() if m["kind"] == "Secret" and m["metadata"] == written["metadata"])
        assert written["stringData"] == declared["stringData"] and "[secret]" not in json.dumps(written)
    private = next(d for d in yaml.safe_load_all((tmp_path / "private.yaml").read_text()) if d["kind"] == "Secret")
    config = yaml.safe_load(private["stringData"]["config.yml"])
    assert len(config["http"]["secret"]) == 48 and len(config["redis"]["password"]) == 40
    for argv, message in [
        (["render"], "error: render: the following arguments are required: stack"),
        (["render", "dev"], "error: stack 'dev': no Pulumi.dev.yaml in"),
        (["frobnicate"], "error: unknown command 'frobnicate'"),
    ]:
        result = subprocess.run([script, *argv], capture_output=True, text=True, timeout=60)
        assert result.returncode == 2
        assert result.stderr.splitlines()[0].startswith(message), result.stderr
        assert "Traceback" not in result.stderr


def with_config(stack="staging", **values):
    config, secret_keys = load_stack_config(stack)
    config.update({f"registry-ha:{k}": v for k, v in values.items()})
    return run_program(stack, config=config, secret_keys=secret_keys)


HUB = {"name": "dockerhub", "host": "docker.io", "serviceName": "docker-registry-mirror"}
GHCR = {"name": "ghcr", "host": "ghcr.io", "clusterIP": "10.43.0.61"}
QUAY = {"name": "quay", "host": "quay.io"}
K8S = {"name": "k8s", "host": "registry.k8s.io"}


def cache_resources(run, name: str) -> dict[str, dict]:
    """urn -> inputs of every resource of one cache's component (by its Pulumi name prefix)."""
    return {r.urn: normalize(unwrap_secrets(r.inputs)) for r in run.resources if r.name.startswith(f"{name}-cache")}


@pytest.fixture(scope="module")
def cache_runs():
    """The same stack with 1, 4 and 3 caches (ghcr removed from the middle), and with none."""
    return {
        "one": with_config(mirrors=json.dumps([HUB])),
        "four": with_config(mirrors=json.dumps([HUB, GHCR, QUAY, K8S])),
        "ghcr-removed": with_config(mirrors=json.dumps([HUB, QUAY, K8S])),
        "pinned-ghcr-removed": with_config(mirrors=json.dumps([HUB, {**QUAY, "redisDb": 3}, K8S])),
        "none": with_config(mirrors="[]"),
    }


def test_n_caches_each_with_their_own_objects(cache_runs):
    run = cache_runs["four"]
    components = [r.name for r in run.resources if r.type == "registry-ha:registry:Registry"]
    assert sorted(components) == sorted(["private", "dockerhub-cache", "ghcr-cache", "quay-cache", "k8s-cache"])  # registered concurrently
    for name, service, db, root in [("dockerhub", "docker-registry-mirror", 1, "/dockerhub-cache"),
                                    ("ghcr", "ghcr-cache", 2, "/ghcr-cache"), ("quay", "quay-cache", 3, "/quay-cache"),
                                    ("k8s", "k8s-cache", 4, "/k8s-cache")]:
        config = registry_config(run, f"{service}-config")
        assert (config["redis"]["db"], config["storage"]["s3"]["rootdirectory"]) == (db, root), name
        assert manifest(run, "Deployment", service)["spec"]["replicas"] == 1
        assert manifest(run, "Service", service)["spec"]["type"] == "ClusterIP"
        assert manifest(run, "Service", f"{service}-metrics")["spec"]["ports"][0]["port"] == 5001
    remotes = [registry_config(run, f"{s}-config")["proxy"]["remoteurl"] for s in ("docker-registry-mirror", "ghcr-cache", "quay-cache", "k8s-cache")]
    assert remotes == ["https://registry-1.docker.io", "https://ghcr.io", "https://quay.io", "https://registry.k8s.io"]
    allowed = manifest(run, "NetworkPolicy", "registry-allow-clients")["spec"]["podSelector"]["matchExpressions"][0]["values"]
    assert allowed == ["docker-registry", "docker-registry-mirror", "ghcr-cache", "quay-cache", "k8s-cache"]
    assert run.outputs["mirrorAddress"] == {
        "docker.io": f"{mock_cluster_ip('dockerhub-cache-service')}:5000",
        "ghcr.io": "10.43.0.61:5000",  # pinned
        "quay.io": f"{mock_cluster_ip('quay-cache-service')}:5000",
        "registry.k8s.io": f"{mock_cluster_ip('k8s-cache-service')}:5000",
    }
    # caches stay off every NodePort: only the private registry's Service has one
    node_ports = [m["metadata"]["name"] for m in run.manifests() if m["kind"] == "Service" and m["spec"]["type"] != "ClusterIP"]
    assert node_ports == ["docker-registry"]


def test_adding_or_removing_a_cache_leaves_the_others_alone(cache_runs):
    one, four, removed, pinned = (cache_runs[k] for k in ("one", "four", "ghcr-removed", "pinned-ghcr-removed"))
    hub = cache_resources(one, "dockerhub")
    assert len(hub) == 6  # the component, its http secret, config Secret, Deployment, Service, metrics Service
    # adding three caches: the Docker Hub cache's resources keep their URNs and every input
    assert cache_resources(four, "dockerhub") == hub
    # removing one from the middle: nobody else is renamed (same URNs: Pulumi updates, never replaces)
    for name in ("dockerhub", "quay", "k8s"):
        assert set(cache_resources(removed, name)) == set(cache_resources(four, name)), name
    assert cache_resources(removed, "dockerhub") == hub
    assert not cache_resources(removed, "ghcr")
    # an unpinned cache after the removed one moves to the freed Redis db (documented); a pinned one stays
    assert registry_config(removed, "quay-cache-config")["redis"]["db"] == 2
    assert registry_config(pinned, "quay-cache-config")["redis"]["db"] == 3
    assert cache_resources(pinned, "quay") == cache_resources(four, "quay")


def test_no_caches(cache_runs):
    run = cache_runs["none"]
    assert [r.name for r in run.resources if r.type == "registry-ha:registry:Registry"] == ["private"]
    assert run.outputs["mirrorAddress"] == {}
    allowed = manifest(run, "NetworkPolicy", "registry-allow-clients")["spec"]["podSelector"]["matchExpressions"][0]["values"]
    assert allowed == ["docker-registry"]


def test_node_configurator_gets_each_caches_allocated_address():
    """The DaemonSet's files carry the ClusterIP the cluster gave each cache (pinned or allocated)."""
    import tomllib

    run = with_config(nodeConfigurator="on", mirrors=json.dumps([HUB, GHCR]))
    files = manifest(run, "Secret", "node-configurator-files")["stringData"]
    hub = tomllib.loads(files["docker.io__hosts.toml"])
    assert list(hub["host"]) == [f"http://{mock_cluster_ip('dockerhub-cache-service')}:5000"]
    assert list(tomllib.loads(files["ghcr.io__hosts.toml"])["host"]) == ["http://10.43.0.61:5000"]
    assert manifest(run, "DaemonSet", "registry-node-configurator")["metadata"]["namespace"] == "registry-ha-nodes"
    assert [r.name for r in run.resources if r.type == "registry-ha:nodes:NodeConfigurator"] == ["node-configurator"]
    off = with_config()
    assert not [m for m in off.manifests() if m["kind"] in ("DaemonSet", "ConfigMap") or m["metadata"]["name"] == "registry-ha-nodes"]


# --------------------------------------------------------------------------- data safety (retainBucket)

BUCKET = "aws:s3/bucket:Bucket"
KMS_KEY = "aws:kms/key:Key"
# what keeps a retained bucket private, encrypted, versioned and TLS-only once Pulumi forgets it
BUCKET_GUARDS = {
    "aws:s3/bucketOwnershipControls:BucketOwnershipControls",
    "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock",
    "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
    "aws:s3/bucketVersioning:BucketVersioning",
    "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration",
    "aws:s3/bucketPolicy:BucketPolicy",
}


def test_production_bucket_and_key_survive_destroy(runs):
    run = runs["production"]
    bucket, key = run.one(BUCKET, "storage-bucket"), run.one(KMS_KEY, "storage-key")
    assert bucket.inputs["forceDestroy"] is False
    assert (bucket.protect, bucket.retain_on_delete) == (True, True)
    assert (key.protect, key.retain_on_delete) == (True, True)
    guards = [r for r in run.resources if r.type in BUCKET_GUARDS]
    assert {r.type for r in guards} == BUCKET_GUARDS
    # retained but not protected: destroy removes them from the stack and leaves them on the bucket
    assert [(r.name, r.protect, r.retain_on_delete) for r in guards] == [(r.name, False, True) for r in guards]
    # nothing else is kept: the IAM user, its key and every Kubernetes object go with the stack
    kept = sorted(r.name for r in run.resources if r.custom and (r.protect or r.retain_on_delete))
    assert kept == sorted(["storage-bucket", "storage-key", *[r.name for r in guards]])
    assert sorted(r.name for r in run.resources if r.protect) == ["storage-bucket", "storage-key"]


def test_staging_bucket_goes_with_the_stack(runs):
    run = runs["staging"]
    bucket = run.one(BUCKET, "storage-bucket")
    assert bucket.inputs["forceDestroy"] is True
    assert [r.name for r in run.resources if r.protect or r.retain_on_delete] == []


def test_retain_bucket_is_a_stack_setting_not_a_stack_name():
    config, secret_keys = load_stack_config("staging")
    config.update({"registry-ha:retainBucket": "true", "registry-ha:forceDestroy": "false"})
    run = run_program("staging", config=config, secret_keys=secret_keys)
    bucket = run.one(BUCKET, "storage-bucket")
    assert (bucket.protect, bucket.retain_on_delete, bucket.inputs["forceDestroy"]) == (True, True, False)


@pytest.mark.parametrize("stack", STACKS)
def test_bucket_policy_waits_for_the_public_access_block(runs, stack):
    run = runs[stack]
    block = run.one("aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock", "storage-public-access-block")
    policy = run.one("aws:s3/bucketPolicy:BucketPolicy", "storage-tls-only")
    assert block.urn in policy.dependencies
    if stack == "production":  # noncurrent-version expiry is configured after versioning is on
        versioning = run.one("aws:s3/bucketVersioning:BucketVersioning", "storage-versioning")
        lifecycle = run.one("aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration", "storage-lifecycle")
        assert versioning.urn in lifecycle.dependencies


def test_read_only_rolls_the_registry_and_leaves_the_cache_alone():
    """`gc`'s switch: the private registry's config and pods change, the cache's do not."""
    def run(**extra):
        config, secret_keys = load_stack_config("production")
        config.update({f"registry-ha:{k}": v for k, v in extra.items()})
        return run_program("production", config=config, secret_keys=secret_keys)

    def checksum(result, name):
        return manifest(result, "Deployment", name)["spec"]["template"]["metadata"]["annotations"]["checksum/config"]

    writable, read_only = run(), run(readOnly="true")
    assert registry_config(read_only)["storage"]["maintenance"]["readonly"] == {"enabled": True}
    assert "readonly" not in registry_config(writable)["storage"]["maintenance"]
    assert checksum(read_only, "docker-registry") != checksum(writable, "docker-registry")
    assert checksum(read_only, "docker-registry-mirror") == checksum(writable, "docker-registry-mirror")
    assert registry_config(read_only, "docker-registry-mirror-config") == registry_config(writable, "docker-registry-mirror-config")
