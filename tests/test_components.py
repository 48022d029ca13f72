"""Each ComponentResource under Pulumi mocks (preview=False). Every test returns its Output."""
from __future__ import annotations

import json

import pulumi
import pytest
import yaml

from components.auth import TokenAuth, TokenAuthArgs
from components.namespace import RegistryNamespace, RegistryNamespaceArgs
from components.network import NetworkPolicies, NetworkPoliciesArgs
from components.redis import RedisCache, RedisCacheArgs
from components.registry import Registry, RegistryArgs
from components.storage import RegistryStorage, RegistryStorageArgs
from registry_ha.registry_config import config_checksum
from registry_ha.settings import load_settings
from tests.mocking import registered, settings_for, use_mocks

KMS_ARN = "arn:aws:kms:us-east-1:123456789012:key/0000-given"


@pytest.fixture
def monitor():
    return use_mocks("staging")


def statements_of(policy_json: str) -> dict:
    return {s["Sid"]: s for s in json.loads(policy_json)["Statement"]}


# --------------------------------------------------------------------------- storage


@pulumi.runtime.test
def test_storage_staging_sse_s3_private_tls_only_least_privilege(monitor):
    storage = RegistryStorage("storage", RegistryStorageArgs(settings=settings_for().storage, stack="staging"))
    assert storage.kms_key is None and storage.versioning is None

    def check(args):
        bucket, pab, encryption, policy, lifecycle, user_policy, ownership = args
        assert bucket["bucketPrefix"] == "neural-hive-registry-staging-" and bucket["forceDestroy"] is True
        assert {k: pab[k] for k in ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets")} == {
            "blockPublicAcls": True,
            "blockPublicPolicy": True,
            "ignorePublicAcls": True,
            "restrictPublicBuckets": True,
        }
        (rule,) = encryption["rules"]
        assert rule["applyServerSideEncryptionByDefault"] == {"sseAlgorithm": "AES256"}
        assert set(statements_of(policy["policy"])) == {"DenyInsecureTransport"}  # SSE-S3: no KMS statements
        deny = statements_of(policy["policy"])["DenyInsecureTransport"]
        assert deny["Effect"] == "Deny" and deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
        (abort,) = lifecycle["rules"]
        assert abort["abortIncompleteMultipartUpload"] == {"daysAfterInitiation": 3}
        assert ownership["rule"] == {"objectOwnership": "BucketOwnerEnforced"}
        statements = statements_of(user_policy["policy"])
        assert set(statements) == {"RegistryBucket", "RegistryObjects"}
        arn = "arn:aws:s3:::" + bucket_name_from(policy)
        assert statements["RegistryBucket"]["Resource"] == arn
        assert statements["RegistryObjects"]["Resource"] == f"{arn}/*"

    return registered(
        monitor,
        storage.bucket,
        storage.public_access_block,
        storage.encryption,
        storage.bucket_policy,
        storage.lifecycle,
        storage.user_policy,
        storage.ownership,
    ).apply(check)


def bucket_name_from(policy: dict) -> str:
    resource = json.loads(policy["policy"])["Statement"][0]["Resource"][0]
    return resource.removeprefix("arn:aws:s3:::")


@pulumi.runtime.test
def test_storage_production_creates_a_rotating_kms_key_and_grants_it(monitor):
    storage = RegistryStorage("storage", RegistryStorageArgs(settings=settings_for("production").storage, stack="production"))
    assert storage.kms_key is not None and storage.versioning is not None

    def check(args):
        (key, encryption, user_policy, versioning, lifecycle, policy), key_arn = args
        assert key["enableKeyRotation"] is True and key["deletionWindowInDays"] == 30
        bucket_arn = "arn:aws:s3:::" + bucket_name_from(policy)
        statements = statements_of(policy["policy"])
        assert set(statements) == {"DenyInsecureTransport", "DenyOtherKmsKey", "DenyOtherEncryption", "DenyKmsWithoutKeyId"}
        for sid in ("DenyOtherKmsKey", "DenyOtherEncryption", "DenyKmsWithoutKeyId"):
            st = statements[sid]
            assert (st["Effect"], st["Principal"], st["Action"], st["Resource"]) == ("Deny", "*", "s3:PutObject", f"{bucket_arn}/*")
        key_id = "s3:x-amz-server-side-encryption-aws-kms-key-id"
        algorithm = "s3:x-amz-server-side-encryption"
        # headerless writes pass every statement (the bucket default applies); any other key or algorithm is refused
        assert statements["DenyOtherKmsKey"]["Condition"] == {"StringNotEquals": {key_id: key_arn}, "Null": {key_id: "false"}}
        assert statements["DenyOtherEncryption"]["Condition"] == {"StringNotEquals": {algorithm: "aws:kms"}, "Null": {algorithm: "false"}}
        assert statements["DenyKmsWithoutKeyId"]["Condition"] == {"StringEquals": {algorithm: "aws:kms"}, "Null": {key_id: "true"}}
        (rule,) = encryption["rules"]
        assert rule["applyServerSideEncryptionByDefault"] == {"sseAlgorithm": "aws:kms", "kmsMasterKeyId": key_arn}
        assert rule["bucketKeyEnabled"] is True
        kms = statements_of(user_policy["policy"])["RegistryKmsKey"]
        assert kms["Action"] == ["kms:GenerateDataKey", "kms:Decrypt"] and kms["Resource"] == key_arn
        assert versioning["versioningConfiguration"] == {"status": "Enabled"}
        rules = {r["id"]: r for r in lifecycle["rules"]}
        assert rules["expire-noncurrent-versions"]["noncurrentVersionExpiration"] == {"noncurrentDays": 30}

    return pulumi.Output.all(
        registered(monitor, storage.kms_key, storage.encryption, storage.user_policy, storage.versioning, storage.lifecycle,
                   storage.bucket_policy),
        storage.kms_key_arn,
    ).apply(check)


@pulumi.runtime.test
def test_storage_uses_a_given_kms_key_without_creating_one(monitor):
    settings = settings_for("production", kmsKeyArn=KMS_ARN, bucketName="neural-hive-registry-prod")
    storage = RegistryStorage("storage", RegistryStorageArgs(settings=settings.storage, stack="production"))
    assert storage.kms_key is None

    def check(args):
        bucket, encryption, user_policy = args
        assert bucket["bucket"] == "neural-hive-registry-prod" and "bucketPrefix" not in bucket
        assert encryption["rules"][0]["applyServerSideEncryptionByDefault"]["kmsMasterKeyId"] == KMS_ARN
        assert statements_of(user_policy["policy"])["RegistryKmsKey"]["Resource"] == KMS_ARN

    return registered(monitor, storage.bucket, storage.encryption, storage.user_policy).apply(check)


@pulumi.runtime.test
def test_storage_secret_key_is_a_pulumi_secret(monitor):
    storage = RegistryStorage("storage", RegistryStorageArgs(settings=settings_for().storage, stack="staging"))

    def check(secret_flag):
        assert secret_flag is True

    return pulumi.Output.from_input(storage.secret_access_key.is_secret()).apply(check)


# --------------------------------------------------------------------------- redis


@pulumi.runtime.test
def test_redis_is_a_password_protected_lru_cache_without_persistence(monitor):
    settings = settings_for(redisMaxMemory="64mb")
    redis = RedisCache("redis", RedisCacheArgs(settings=settings, namespace="registry"))
    assert redis.address == "registry-redis.registry.svc:6379"

    def check(args):
        (secret, deployment, service), password = args
        conf = secret["stringData"]["redis.conf"].splitlines()
        assert "maxmemory-policy allkeys-lru" in conf and "maxmemory 64mb" in conf
        assert f"requirepass {password}" in conf and len(password) == 40
        assert 'save ""' in conf and "appendonly no" in conf
        assert secret["kind"] == "Secret"
        # the pods roll exactly when redis.conf changes
        annotations = deployment["spec"]["template"]["metadata"]["annotations"]
        assert annotations == {"checksum/config": config_checksum(secret["stringData"]["redis.conf"])}
        pod = deployment["spec"]["template"]["spec"]
        assert pod["enableServiceLinks"] is False and pod["automountServiceAccountToken"] is False
        (container,) = pod["containers"]
        # The probe reads the password from the mounted file (checkov CKV_K8S_35: no Secret in the env).
        probe = container["readinessProbe"]["exec"]["command"][-1]
        assert probe == 'REDISCLI_AUTH="$(cat /etc/redis/password)" redis-cli ping | grep -q PONG'
        assert "env" not in container and "envFrom" not in container
        assert password not in json.dumps(deployment)
        (config,) = [v for v in pod["volumes"] if v["name"] == "config"]
        assert config["secret"]["items"] == [{"key": "redis.conf", "path": "redis.conf"}, {"key": "password", "path": "password"}]
        assert {"name": "config", "mountPath": "/etc/redis", "readOnly": True} in container["volumeMounts"]
        assert secret["stringData"]["password"] == password
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] > 10000
        assert service["spec"]["type"] == "ClusterIP" and service["spec"]["ports"][0]["port"] == 6379

    return pulumi.Output.all(registered(monitor, redis.secret, redis.deployment, redis.service), redis.password).apply(check)


# --------------------------------------------------------------------------- registry


def registry_args(settings, role="private", cache=None):
    return RegistryArgs(
        settings=settings,
        role=role,
        cache=cache,
        namespace="registry",
        bucket_name="bucket-1",
        access_key_id="AKIAEXAMPLE",
        secret_access_key=pulumi.Output.secret("s3-secret"),
        redis_address="registry-redis.registry.svc:6379",
        redis_password=pulumi.Output.secret("redis-password"),
        token_auth=TokenAuth("auth", TokenAuthArgs(settings, "registry"))
        if role == "private" and settings.access.auth_enabled else None,
    )


@pulumi.runtime.test
def test_private_registry_replicas_share_one_http_secret(monitor):
    registry = Registry("private", registry_args(settings_for()))

    def check(args):
        (secret, deployment), http_secret = args
        config = yaml.safe_load(secret["stringData"]["config.yml"])
        assert config["http"]["secret"] == http_secret and len(http_secret) == 48
        assert config["storage"]["s3"]["accesskey"] == "AKIAEXAMPLE"
        assert config["redis"]["password"] == "redis-password"
        spec = deployment["spec"]
        assert spec["replicas"] == 3
        pod = spec["template"]["spec"]
        # One Secret volume for the whole Deployment: every replica reads the same secret.
        assert [v["secret"]["secretName"] for v in pod["volumes"] if "secret" in v] == ["docker-registry-config"]
        assert http_secret not in json.dumps(deployment)
        # the pods roll exactly when a document of the config Secret changes
        documents = "\n---\n".join(secret["stringData"][key] for key in sorted(secret["stringData"]))
        assert spec["template"]["metadata"]["annotations"] == {"checksum/config": config_checksum(documents)}

    return pulumi.Output.all(registered(monitor, registry.config_secret, registry.deployment), registry.http_secret.result).apply(check)


@pytest.mark.parametrize("stack, mode", [("staging", "preferred"), ("production", "required")])
def test_anti_affinity_per_stack(stack, mode):
    monitor = use_mocks(stack)

    @pulumi.runtime.test
    def run():
        registry = Registry("private", registry_args(settings_for(stack)))

        def check(args):
            (deployment,) = args
            pod = deployment["spec"]["template"]["spec"]
            anti = pod["affinity"]["podAntiAffinity"]
            selector = {"app.kubernetes.io/name": "docker-registry", "app.kubernetes.io/instance": f"registry-ha-{stack}"}
            if mode == "required":
                (term,) = anti["requiredDuringSchedulingIgnoredDuringExecution"]
            else:
                (weighted,) = anti["preferredDuringSchedulingIgnoredDuringExecution"]
                term = weighted["podAffinityTerm"]
            assert term == {"labelSelector": {"matchLabels": selector}, "topologyKey": "kubernetes.io/hostname"}
            spread = {c["topologyKey"]: c["whenUnsatisfiable"] for c in pod["topologySpreadConstraints"]}
            # one pod per node leaves no node for a surge pod when nodes == replicas: replace in place
            rolling = deployment["spec"]["strategy"]["rollingUpdate"]
            if mode == "required":
                assert rolling == {"maxUnavailable": 1, "maxSurge": 0}
            else:
                assert rolling == {"maxUnavailable": 0, "maxSurge": 1}
            if stack == "production":
                assert spread == {"kubernetes.io/hostname": "DoNotSchedule", "topology.kubernetes.io/zone": "ScheduleAnyway"}
            else:
                assert spread == {"kubernetes.io/hostname": "ScheduleAnyway"}

        return registered(monitor, registry.deployment).apply(check)

    run()


@pulumi.runtime.test
def test_private_registry_pod_is_hardened_and_probed(monitor):
    registry = Registry("private", registry_args(settings_for(preStopSeconds="15")))

    def check(args):
        deployment, pdb = args
        spec = deployment["spec"]
        assert spec["strategy"]["rollingUpdate"] == {"maxUnavailable": 0, "maxSurge": 1}
        pod = spec["template"]["spec"]
        assert pod["enableServiceLinks"] is False and pod["automountServiceAccountToken"] is False
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        (container,) = pod["containers"]
        sc = container["securityContext"]
        assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
        assert sc["capabilities"] == {"drop": ["ALL"]}
        assert {m["mountPath"] for m in container["volumeMounts"]} == {"/etc/distribution", "/tmp"}
        assert container["args"] == ["serve", "/etc/distribution/config.yml"]
        assert container["readinessProbe"]["httpGet"] == {"path": "/", "port": "http"}
        assert container["livenessProbe"]["tcpSocket"] == {"port": "http"}
        assert container["lifecycle"]["preStop"]["exec"]["command"] == ["sleep", "15"]
        # SIGKILL only after the preStop sleep (15 s) and the drain (http.draintimeout 15s), plus 10 s to exit
        assert pod["terminationGracePeriodSeconds"] == 15 + 15 + 10
        assert container["resources"]["requests"] == {"cpu": "100m", "memory": "256Mi"}
        assert {p["containerPort"] for p in container["ports"]} == {5000, 5001}
        assert pdb["spec"]["maxUnavailable"] == 1

    return registered(monitor, registry.deployment, registry.pdb).apply(check)


@pytest.mark.parametrize(
    "provider, annotations",
    [
        ("aws", {"service.beta.kubernetes.io/aws-load-balancer-internal": "true", "service.beta.kubernetes.io/aws-load-balancer-scheme": "internal"}),
        ("gcp", {"networking.gke.io/load-balancer-type": "Internal", "cloud.google.com/load-balancer-type": "Internal"}),
        ("azure", {"service.beta.kubernetes.io/azure-load-balancer-internal": "true"}),
        ("metallb", {"metallb.universe.tf/address-pool": "internal"}),
        ("none", None),
    ],
)
def test_exposure_is_internal_per_provider_with_nodeport_30500(provider, annotations):
    monitor = use_mocks("staging")
    extra = {"metallbAddressPool": "internal"} if provider == "metallb" else {}

    @pulumi.runtime.test
    def run():
        registry = Registry("private", registry_args(settings_for(loadBalancerProvider=provider, **extra)))

        def check(args):
            service, metrics = args
            assert service["metadata"]["name"] == "docker-registry"
            assert service["metadata"].get("annotations") == annotations
            spec = service["spec"]
            assert spec["type"] == ("NodePort" if provider == "none" else "LoadBalancer")
            assert spec["ports"] == [{"name": "http", "port": 5000, "targetPort": "http", "protocol": "TCP", "nodePort": 30500}]
            assert spec["externalTrafficPolicy"] == "Cluster"
            assert "loadBalancerSourceRanges" not in spec  # unset: no restriction at the LB
            assert metrics["spec"]["type"] == "ClusterIP"
            assert [p["port"] for p in metrics["spec"]["ports"]] == [5001]

        return registered(monitor, registry.service, registry.metrics_service).apply(check)

    run()


@pulumi.runtime.test
def test_load_balancer_source_ranges_reach_the_service(monitor):
    ranges = '["10.20.0.0/16", "192.168.5.0/24"]'
    registry = Registry("private", registry_args(settings_for(loadBalancerSourceRanges=ranges)))

    def check(args):
        (service,) = args
        assert service["spec"]["type"] == "LoadBalancer"
        assert service["spec"]["loadBalancerSourceRanges"] == ["10.20.0.0/16", "192.168.5.0/24"]

    return registered(monitor, registry.service).apply(check)


@pulumi.runtime.test
def test_mirror_is_a_separate_proxy_workload(monitor):
    settings = load_settings(
        {"registry-ha:mirrors": '[{"name": "dockerhub", "host": "docker.io", "username": "neuralhive", "serviceName": "docker-registry-mirror"}]',
         "registry-ha:mirrorPasswords": '{"dockerhub": "dckr_pat_x"}'},
        "staging",
        secret_keys={"registry-ha:mirrorPasswords"},
    )
    mirror = Registry("dockerhub-cache", registry_args(settings, role="mirror", cache=settings.caches[0]))
    assert not hasattr(mirror, "pdb")

    def check(args):
        secret, deployment, service = args
        config = yaml.safe_load(secret["stringData"]["config.yml"])
        # proxy.exec (no upstream contact at startup): the helper prints the credentials from its file
        assert config["proxy"] == {
            "remoteurl": "https://registry-1.docker.io",
            "exec": {"command": "/etc/distribution/credential-helper"},
            "ttl": "168h",
        }
        assert json.loads(secret["stringData"]["upstream-credentials.json"]) == {"Username": "neuralhive", "Secret": "dckr_pat_x"}
        assert "dckr_pat_x" not in secret["stringData"]["credential-helper"]
        assert "registry-1.docker.io|docker.io|*.docker.io)" in secret["stringData"]["credential-helper"]
        volume = next(v for v in deployment["spec"]["template"]["spec"]["volumes"] if v["name"] == "config")
        assert volume["secret"]["items"] == [
            {"key": "config.yml", "path": "config.yml", "mode": 0o440},
            {"key": "credential-helper", "path": "credential-helper", "mode": 0o550},
            {"key": "upstream-credentials.json", "path": "upstream-credentials.json", "mode": 0o440},
        ]
        assert config["redis"]["db"] == 1
        assert config["storage"]["s3"]["rootdirectory"] == "/dockerhub-cache"
        assert secret["metadata"]["name"] == "docker-registry-mirror-config"
        assert deployment["spec"]["replicas"] == 1
        assert "dckr_pat_x" not in json.dumps(deployment)
        assert service["metadata"]["name"] == "docker-registry-mirror"
        assert service["spec"]["type"] == "ClusterIP" and [p["port"] for p in service["spec"]["ports"]] == [5000]
        assert "nodePort" not in service["spec"]["ports"][0] and "clusterIP" not in service["spec"]

    return registered(monitor, mirror.config_secret, mirror.deployment, mirror.service).apply(check)


@pulumi.runtime.test
def test_a_second_cache_has_its_own_objects_and_a_pinned_cluster_ip(monitor):
    settings = settings_for(mirrors=json.dumps([
        {"name": "dockerhub", "host": "docker.io", "serviceName": "docker-registry-mirror"},
        {"name": "ghcr", "host": "ghcr.io", "clusterIP": "10.43.0.61", "replicas": 2},
    ]))
    hub, ghcr = (Registry(c.component_name, registry_args(settings, "mirror", c)) for c in settings.caches)
    with pytest.raises(ValueError, match="needs its CacheSettings"):
        Registry("nameless-cache", registry_args(settings, "mirror"))

    def check(args):
        hub_secret, ghcr_secret, ghcr_deployment, ghcr_service, ghcr_metrics, ghcr_ip, hub_ip = args
        hub_config, ghcr_config = (yaml.safe_load(s["stringData"]["config.yml"]) for s in (hub_secret, ghcr_secret))
        assert ghcr_config["proxy"]["remoteurl"] == "https://ghcr.io"
        assert (hub_config["redis"]["db"], ghcr_config["redis"]["db"]) == (1, 2)
        assert ghcr_config["storage"]["s3"]["rootdirectory"] == "/ghcr-cache"
        assert "ghcr.io|ghcr.io|*.ghcr.io)" in ghcr_secret["stringData"]["credential-helper"]
        assert ghcr_secret["metadata"]["name"] == "ghcr-cache-config"
        assert ghcr_deployment["metadata"]["name"] == "ghcr-cache" and ghcr_deployment["spec"]["replicas"] == 2
        assert ghcr_deployment["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"] == "ghcr-cache"
        assert ghcr_service["spec"] == {
            "type": "ClusterIP",
            "selector": {"app.kubernetes.io/name": "ghcr-cache", "app.kubernetes.io/instance": "registry-ha-staging"},
            "ports": [{"name": "http", "port": 5000, "targetPort": "http", "protocol": "TCP"}],
            "clusterIP": "10.43.0.61",
        }
        assert ghcr_metrics["metadata"]["name"] == "ghcr-cache-metrics" and ghcr_metrics["spec"]["type"] == "ClusterIP"
        # what nodes dial: the pinned address, or the one the cluster allocated (the mocks' TEST-NET-2)
        assert ghcr_ip == "10.43.0.61" and hub_ip.startswith("198.51.100.")

    return pulumi.Output.all(
        registered(monitor, hub.config_secret, ghcr.config_secret, ghcr.deployment, ghcr.service, ghcr.metrics_service),
        ghcr.cluster_ip, hub.cluster_ip,
    ).apply(lambda v: check([*v[0], v[1], v[2]]))


@pulumi.runtime.test
def test_service_monitor_when_enabled(monitor):
    registry = Registry("private", registry_args(settings_for(serviceMonitor="true")))

    def check(args):
        (monitor_cr,) = args
        assert monitor_cr["kind"] == "ServiceMonitor" and monitor_cr["apiVersion"] == "monitoring.coreos.com/v1"
        assert monitor_cr["spec"]["endpoints"] == [{"port": "metrics", "path": "/metrics", "interval": "30s"}]

    return registered(monitor, registry.service_monitor).apply(check)


# --------------------------------------------------------------------------- namespace and network


@pulumi.runtime.test
def test_namespace_enforces_restricted_pod_security(monitor):
    namespace = RegistryNamespace("namespace", RegistryNamespaceArgs(settings=settings_for()))

    def check(args):
        (ns,) = args
        assert ns["metadata"]["name"] == "registry"
        assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"

    return registered(monitor, namespace.namespace).apply(check)


@pulumi.runtime.test
def test_network_policies(monitor):
    two_caches = json.dumps([{"name": "dockerhub", "host": "docker.io", "serviceName": "docker-registry-mirror"},
                             {"name": "ghcr", "host": "ghcr.io"}])
    network = NetworkPolicies("network", NetworkPoliciesArgs(settings=settings_for(mirrors=two_caches), namespace="registry"))
    names = ["default-deny-ingress", "registry-allow-clients", "redis-allow-registries", "metrics-allow-monitoring"]
    assert sorted(network.policies) == sorted(names)

    def check(policies):
        by_name = {p["metadata"]["name"]: p["spec"] for p in policies}
        assert by_name["default-deny-ingress"] == {"podSelector": {}, "policyTypes": ["Ingress"]}
        # this stack's registries only: another instance's pods (another stack in a shared namespace) stay out
        registries = {"matchExpressions": [
            {"key": "app.kubernetes.io/name", "operator": "In", "values": ["docker-registry", "docker-registry-mirror", "ghcr-cache"]},
            {"key": "app.kubernetes.io/instance", "operator": "In", "values": ["registry-ha-staging"]},
        ]}
        assert by_name["registry-allow-clients"]["podSelector"] == registries
        assert by_name["metrics-allow-monitoring"]["podSelector"] == registries
        redis_policy = by_name["redis-allow-registries"]
        assert redis_policy["podSelector"] == {"matchLabels": {"app.kubernetes.io/name": "registry-redis",
                                                               "app.kubernetes.io/instance": "registry-ha-staging"}}
        (redis_rule,) = redis_policy["ingress"]
        assert redis_rule["from"] == [{"podSelector": registries}]
        assert redis_rule["ports"] == [{"protocol": "TCP", "port": 6379}]
        (metrics_rule,) = by_name["metrics-allow-monitoring"]["ingress"]
        assert metrics_rule["from"] == [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}]
        assert metrics_rule["ports"] == [{"protocol": "TCP", "port": 5001}]
        # each cache is a registry pod: nodes and pods reach it, it reaches Redis, monitoring scrapes it
        for policy in ("registry-allow-clients", "metrics-allow-monitoring"):
            assert by_name[policy]["podSelector"] == registries
        (client_rule,) = by_name["registry-allow-clients"]["ingress"]
        assert client_rule["ports"] == [{"protocol": "TCP", "port": 5000}]
        assert {"namespaceSelector": {}} in client_rule["from"]
        assert {"ipBlock": {"cidr": "10.0.0.0/8"}} in client_rule["from"]

    return registered(monitor, *[network.policies[n] for n in names]).apply(check)


# --------------------------------------------------------------------------- node configurator


def configurator(settings):
    from components.nodes import NodeConfigurator, NodeConfiguratorArgs
    from registry_ha.containerd import cluster_endpoints, node_files

    files = node_files(settings, cluster_endpoints(settings, {"dockerhub": "10.43.0.50", "ghcr": "10.43.0.51"}))
    return NodeConfigurator("node-configurator", NodeConfiguratorArgs(settings=settings, files=pulumi.Output.from_input(files))), files


@pulumi.runtime.test
def test_node_configurator_writes_the_files_from_its_own_privileged_namespace(monitor):
    from registry_ha.nodes import script

    settings = settings_for(nodeConfigurator="on", mirrors=json.dumps([{"name": "dockerhub", "host": "docker.io"}, {"name": "ghcr", "host": "ghcr.io"}]))
    nodes, files = configurator(settings)

    def check(args):
        namespace, config_map, secret, daemonset = args
        labels = namespace["metadata"]["labels"]
        assert namespace["metadata"]["name"] == "registry-ha-nodes"
        # hostPath is forbidden by baseline and restricted: privileged is the least level that admits it
        assert {labels[f"pod-security.kubernetes.io/{m}"] for m in ("enforce", "audit", "warn")} == {"privileged"}
        assert config_map["metadata"]["namespace"] == "registry-ha-nodes"
        assert config_map["data"] == {"node-configurator.sh": script()}
        assert secret["metadata"]["name"] == "node-configurator-files" and secret["metadata"]["namespace"] == "registry-ha-nodes"
        assert {k: v for k, v in secret["stringData"].items()} == {
            "docker.io__hosts.toml": files.as_dict()["docker.io/hosts.toml"],
            "ghcr.io__hosts.toml": files.as_dict()["ghcr.io/hosts.toml"],
            "registry.neural-hive.local_5000__hosts.toml": files.as_dict()["registry.neural-hive.local:5000/hosts.toml"],
            "37.60.241.150_30500__hosts.toml": files.as_dict()["37.60.241.150:30500/hosts.toml"],
        }
        pod = daemonset["spec"]["template"]["spec"]
        volumes = {v["name"]: v for v in pod["volumes"]}
        assert [v for v in pod["volumes"] if "hostPath" in v] == [
            {"name": "certs-d", "hostPath": {"path": "/etc/containerd/certs.d", "type": "DirectoryOrCreate"}}
        ]
        assert volumes["desired"]["secret"]["items"] == [
            {"key": "docker.io__hosts.toml", "path": "docker.io/hosts.toml", "mode": 0o644},
            {"key": "ghcr.io__hosts.toml", "path": "ghcr.io/hosts.toml", "mode": 0o644},
            {"key": "registry.neural-hive.local_5000__hosts.toml", "path": "registry.neural-hive.local:5000/hosts.toml", "mode": 0o644},
            {"key": "37.60.241.150_30500__hosts.toml", "path": "37.60.241.150:30500/hosts.toml", "mode": 0o644},
        ]
        (container,) = pod["containers"]
        assert container["image"] == "busybox:1.37.0"
        assert container["args"] == ["sh", "/script/node-configurator.sh", "/desired", "/host/certs.d",
                                     "--interval", "30", "--ready", "/tmp/synced"]
        sc = container["securityContext"]
        assert sc["runAsUser"] == 0 and sc["allowPrivilegeEscalation"] is False and sc["privileged"] is False
        assert sc["readOnlyRootFilesystem"] is True and sc["capabilities"] == {"drop": ["ALL"]}
        assert not any(pod.get(k) for k in ("hostNetwork", "hostPID", "hostIPC"))
        assert pod["automountServiceAccountToken"] is False and pod["tolerations"] == [{"operator": "Exists"}]
        assert {m["mountPath"]: m.get("readOnly", False) for m in container["volumeMounts"]} == {
            "/script": True, "/host/certs.d": False, "/tmp": False, "/desired": True}
        assert container["readinessProbe"]["exec"]["command"] == ["test", "-f", "/tmp/synced"]

    return registered(monitor, nodes.namespace, nodes.script, nodes.files, nodes.daemonset).apply(check)


@pulumi.runtime.test
def test_node_configurator_remove_mode_deletes_what_it_wrote_and_mounts_nothing(monitor):
    nodes, _ = configurator(settings_for(nodeConfigurator="remove"))
    assert nodes.files is None  # no files Secret in remove mode

    def check(args):
        (daemonset,) = args
        pod = daemonset["spec"]["template"]["spec"]
        assert pod["containers"][0]["args"][-1] == "--remove"
        assert "desired" not in {v["name"] for v in pod["volumes"]}

    return registered(monitor, nodes.daemonset).apply(check)


# --------------------------------------------------------------------------- garbage collection report (gcSchedule)


def test_required_anti_affinity_never_surges_and_the_cache_still_does():
    from registry_ha.k8s import registry_deployment_spec

    production = settings_for("production")
    assert registry_deployment_spec(production, "private", "c")["strategy"]["rollingUpdate"] == {"maxUnavailable": 1, "maxSurge": 0}
    assert registry_deployment_spec(production, "mirror", "c")["strategy"]["rollingUpdate"] == {"maxUnavailable": 0, "maxSurge": 1}
    preferred = settings_for("production", antiAffinity="preferred")
    assert registry_deployment_spec(preferred, "private", "c")["strategy"]["rollingUpdate"] == {"maxUnavailable": 0, "maxSurge": 1}


@pulumi.runtime.test
def test_gc_schedule_adds_a_dry_run_report_cronjob_on_the_same_secret(monitor):
    settings = settings_for("staging", gcSchedule="0 3 * * 0")
    registry = Registry("private", registry_args(settings))

    def check(args):
        cronjob, secret, service = args
        spec = cronjob["spec"]
        assert spec["schedule"] == "0 3 * * 0" and spec["concurrencyPolicy"] == "Forbid"
        job = spec["jobTemplate"]["spec"]
        assert job["backoffLimit"] == 0
        pod = job["template"]["spec"]
        (container,) = pod["containers"]
        # a report: --dry-run deletes nothing, so no read-only switch is needed (registry_ha/gc_job.py)
        assert container["args"] == ["garbage-collect", "/etc/distribution/config.yml", "--dry-run"]
        assert container["image"] == "registry:3.1.1"
        (config,) = [v for v in pod["volumes"] if "secret" in v]
        assert config["secret"]["secretName"] == secret["metadata"]["name"] == "docker-registry-config"
        assert [i["key"] for i in config["secret"]["items"]] == ["config.yml"]
        assert pod["automountServiceAccountToken"] is False and pod["enableServiceLinks"] is False
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
        # the registry Service must never send clients to a GC pod
        selector = service["spec"]["selector"]
        pod_labels = job["template"]["metadata"]["labels"]
        assert not all(pod_labels.get(k) == v for k, v in selector.items())
        assert pod_labels["app.kubernetes.io/name"] == "docker-registry-gc"

    return registered(monitor, registry.gc_report, registry.config_secret, registry.service).apply(check)


def test_no_cronjob_without_a_schedule():
    from registry_ha.mock_engine import run_program

    for stack in ("staging", "production"):
        assert run_program(stack).of_type("kubernetes:batch/v1:CronJob") == []
