"""The CrossGuard validators in policy/policies.py: each on a passing and a violating resource,
then every validator over everything the program declares for staging and production.

policy/__main__.py is never imported: constructing a PolicyPack starts a gRPC server and blocks.
"""
from __future__ import annotations

import copy
import json
import sys

import pytest
from pulumi_policy import PolicyResource, ResourceValidationArgs, StackValidationArgs

from registry_ha import mock_engine
from registry_ha.mock_engine import load_stack_config, normalize, run_program, unwrap_secrets

from conftest import REPO_ROOT

sys.path.insert(0, str(REPO_ROOT / "policy"))
import policies  # noqa: E402

BUCKET_ARN = "arn:aws:s3:::neural-hive-registry-staging-abc"


def run_validator(validator, resource_type: str, props: dict, name: str = "r") -> list[str]:
    violations: list[str] = []
    args = ResourceValidationArgs(resource_type, props, f"urn:pulumi:s::p::{resource_type}::{name}", name, None, None)
    validator(args, lambda message, urn=None: violations.append(message))
    return violations


def stack_resource(resource_type: str, props: dict, name: str, property_dependencies=None) -> PolicyResource:
    return PolicyResource(
        resource_type, props, f"urn:pulumi:s::p::{resource_type}::{name}", name, None, None, None, [],
        property_dependencies or {},
    )


def run_stack_validator(validator, resources: list[PolicyResource]) -> list[tuple[str, str]]:
    violations: list[tuple[str, str]] = []
    validator(StackValidationArgs(resources), lambda message, urn=None: violations.append((message, urn)))
    return violations


# --------------------------------------------------------------------------- fixtures: good resources

TLS_POLICY = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Sid": "DenyInsecureTransport",
            "Effect": "Deny",
            "Principal": "*",
            "Action": "s3:*",
            "Resource": [BUCKET_ARN, f"{BUCKET_ARN}/*"],
            "Condition": {"Bool": {"aws:SecureTransport": "false"}},
        }
    ],
}
USER_POLICY = {
    "Version": "2012-10-17",
    "Statement": [
        {"Sid": "RegistryBucket", "Effect": "Allow", "Action": ["s3:ListBucket"], "Resource": BUCKET_ARN},
        {"Sid": "RegistryObjects", "Effect": "Allow", "Action": ["s3:GetObject", "s3:PutObject"], "Resource": f"{BUCKET_ARN}/*"},
        {"Sid": "DenyOther", "Effect": "Deny", "Action": "s3:*", "Resource": "*"},  # Deny may be broad
    ],
}


def good_deployment() -> dict:
    container = {
        "name": "registry",
        "image": "registry:3.1.1",
        "resources": {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"memory": "512Mi"}},
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": 1000,
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "docker-registry", "namespace": "registry"},
        "spec": {
            "replicas": 3,
            "selector": {"matchLabels": {"app": "r"}},
            "template": {
                "metadata": {"labels": {"app": "r"}},
                "spec": {
                    "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
                    "containers": [container],
                    "volumes": [{"name": "tmp", "emptyDir": {}}],
                },
            },
        },
    }


def with_container(change) -> dict:
    deployment = good_deployment()
    change(deployment["spec"]["template"]["spec"]["containers"][0])
    return deployment


def service(type_: str, ports: list[dict], annotations: dict | None = None) -> dict:
    metadata = {"name": "docker-registry", "namespace": "registry"}
    if annotations is not None:
        metadata["annotations"] = annotations
    return {"apiVersion": "v1", "kind": "Service", "metadata": metadata, "spec": {"type": type_, "ports": ports}}


HTTP_PORT = {"name": "http", "port": 5000, "targetPort": "http", "protocol": "TCP", "nodePort": 30500}
DEBUG_PORT = {"name": "metrics", "port": 5001, "targetPort": "debug", "protocol": "TCP"}
AWS_INTERNAL = {"service.beta.kubernetes.io/aws-load-balancer-internal": "true"}

# (validator, resource type, passing props, violating props, words the violation must contain)
def configurator_daemonset(change=None) -> dict:
    """The node configurator's DaemonSet as the program builds it (registry_ha.nodes)."""
    from registry_ha.containerd import cluster_endpoints, node_files
    from registry_ha.k8s import labels
    from registry_ha.nodes import APP, COMPONENT, daemonset_spec
    from registry_ha.settings import load_settings

    settings = load_settings({"registry-ha:nodeConfigurator": "on"}, "staging")
    files = node_files(settings, cluster_endpoints(settings, {"dockerhub": "10.43.0.50"}))
    manifest = {"metadata": {"name": APP, "namespace": "registry-ha-nodes", "labels": labels(APP, COMPONENT, "staging")},
                "spec": daemonset_spec(settings, files)}
    if change:
        change(manifest)
    return manifest


def _pod(manifest: dict) -> dict:
    return manifest["spec"]["template"]["spec"]


CASES = [
    (
        "sse-aes256",
        policies.s3_bucket_encryption,
        policies.SSE_CONFIG,
        {"bucket": "b", "rules": [{"applyServerSideEncryptionByDefault": {"sseAlgorithm": "AES256"}}]},
        {"bucket": "b", "rules": [{"applyServerSideEncryptionByDefault": {"sseAlgorithm": "none"}}]},
        "'none'",
    ),
    (
        "sse-kms-vs-no-rules",
        policies.s3_bucket_encryption,
        policies.SSE_CONFIG,
        {"bucket": "b", "rules": [{"applyServerSideEncryptionByDefault": {"sseAlgorithm": "aws:kms", "kmsMasterKeyId": "k"}}]},
        {"bucket": "b", "rules": []},
        "no rules",
    ),
    (
        "public-access-block",
        policies.s3_public_access_blocked,
        policies.PUBLIC_ACCESS_BLOCK,
        {"bucket": "b", **{flag: True for flag in policies.PUBLIC_ACCESS_FLAGS}},
        {"bucket": "b", **{flag: True for flag in policies.PUBLIC_ACCESS_FLAGS}, "restrictPublicBuckets": False},
        "restrictPublicBuckets",
    ),
    (
        "public-access-block-missing-flag",
        policies.s3_public_access_blocked,
        policies.PUBLIC_ACCESS_BLOCK,
        {"bucket": "b", **{flag: True for flag in policies.PUBLIC_ACCESS_FLAGS}},
        {"bucket": "b", "blockPublicAcls": True, "blockPublicPolicy": True, "ignorePublicAcls": True},
        "restrictPublicBuckets",
    ),
    (
        "tls-only-policy",
        policies.s3_tls_only_policy,
        policies.BUCKET_POLICY,
        {"bucket": "b", "policy": json.dumps(TLS_POLICY)},
        {"bucket": "b", "policy": json.dumps({**TLS_POLICY, "Statement": [{**TLS_POLICY["Statement"][0], "Effect": "Allow"}]})},
        "aws:SecureTransport",
    ),
    (
        "tls-only-policy-objects-uncovered",
        policies.s3_tls_only_policy,
        policies.BUCKET_POLICY,
        {"bucket": "b", "policy": TLS_POLICY},  # a map works as well as JSON text
        {"bucket": "b", "policy": json.dumps({**TLS_POLICY, "Statement": [{**TLS_POLICY["Statement"][0], "Resource": BUCKET_ARN}]})},
        "/*",
    ),
    (
        "iam-wildcard-action",
        policies.iam_least_privilege,
        policies.USER_POLICY,
        {"user": "u", "policy": json.dumps(USER_POLICY)},
        {"user": "u", "policy": json.dumps({"Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": f"{BUCKET_ARN}/*"}]})},
        "wildcard action s3:*",
    ),
    (
        "iam-partial-wildcard-action",
        policies.iam_least_privilege,
        policies.USER_POLICY,
        {"user": "u", "policy": json.dumps(USER_POLICY)},
        {"user": "u", "policy": json.dumps({"Statement": [{"Sid": "X", "Effect": "Allow", "Action": ["s3:Get*"], "Resource": BUCKET_ARN}]})},
        "s3:Get*",
    ),
    (
        "iam-star-resource",
        policies.iam_least_privilege,
        policies.USER_POLICY,
        {"user": "u", "policy": json.dumps(USER_POLICY)},
        {"user": "u", "policy": json.dumps({"Statement": [{"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}]})},
        "every resource",
    ),
    (
        "iam-every-bucket-arn",
        policies.iam_least_privilege,
        policies.USER_POLICY,
        {"user": "u", "policy": json.dumps(USER_POLICY)},
        {"user": "u", "policy": json.dumps({"Statement": [{"Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::*"}]})},
        "arn:aws:s3:::*",
    ),
    (
        "iam-not-action",
        policies.iam_least_privilege,
        policies.USER_POLICY,
        {"user": "u", "policy": json.dumps(USER_POLICY)},
        {"user": "u", "policy": json.dumps({"Statement": [{"Effect": "Allow", "NotAction": "iam:*", "Resource": BUCKET_ARN}]})},
        "NotAction",
    ),
    (
        "iam-aws-managed-attachment",
        policies.iam_least_privilege,
        policies.USER_POLICY_ATTACHMENT,
        {"user": "u", "policyArn": "arn:aws:iam::123456789012:policy/registry-s3"},
        {"user": "u", "policyArn": "arn:aws:iam::aws:policy/AmazonS3FullAccess"},
        "AmazonS3FullAccess",
    ),
    (
        "lb-internal-aws",
        policies.service_internal_lb,
        policies.SERVICE,
        service("LoadBalancer", [HTTP_PORT], AWS_INTERNAL),
        service("LoadBalancer", [HTTP_PORT]),
        "no internal annotation",
    ),
    (
        "lb-internal-metallb-pool",
        policies.service_internal_lb,
        policies.SERVICE,
        service("LoadBalancer", [HTTP_PORT], {"metallb.universe.tf/address-pool": "internal"}),
        service("LoadBalancer", [HTTP_PORT], {"service.beta.kubernetes.io/aws-load-balancer-internal": "false"}),
        "no internal annotation",
    ),
    (
        "lb-internal-metallb-ip",
        policies.service_internal_lb,
        policies.SERVICE,
        service("LoadBalancer", [HTTP_PORT], {"metallb.universe.tf/loadBalancerIPs": "10.0.0.50"}),
        service("LoadBalancer", [HTTP_PORT], {"metallb.universe.tf/loadBalancerIPs": "37.60.241.150"}),
        "no internal annotation",
    ),
    (
        "lb-internal-gcp",
        policies.service_internal_lb,
        policies.SERVICE,
        service("LoadBalancer", [HTTP_PORT], {"networking.gke.io/load-balancer-type": "Internal"}),
        service("LoadBalancer", [HTTP_PORT], {"networking.gke.io/load-balancer-type": "External"}),
        "no internal annotation",
    ),
    (
        "debug-port-lb",
        policies.service_no_debug_port,
        policies.SERVICE,
        service("ClusterIP", [DEBUG_PORT]),  # the metrics Service: cluster-internal
        service("LoadBalancer", [HTTP_PORT, DEBUG_PORT], AWS_INTERNAL),
        "debug port (5001 -> debug)",
    ),
    (
        "debug-port-nodeport-by-target",
        policies.service_no_debug_port,
        policies.SERVICE,
        service("NodePort", [HTTP_PORT]),
        service("NodePort", [HTTP_PORT, {"name": "x", "port": 8080, "targetPort": 5001, "nodePort": 30501}]),
        "8080 -> 5001",
    ),
    (
        "workload-root",
        policies.workload_hardened,
        "kubernetes:apps/v1:Deployment",
        good_deployment(),
        with_container(lambda c: c["securityContext"].update(runAsNonRoot=False)),
        "runAsNonRoot",
    ),
    (
        "workload-writable-rootfs",
        policies.workload_hardened,
        "kubernetes:apps/v1:Deployment",
        good_deployment(),
        with_container(lambda c: c["securityContext"].pop("readOnlyRootFilesystem")),
        "readOnlyRootFilesystem",
    ),
    (
        "workload-escalation",
        policies.workload_hardened,
        "kubernetes:apps/v1:Deployment",
        good_deployment(),
        with_container(lambda c: c["securityContext"].update(allowPrivilegeEscalation=True)),
        "allowPrivilegeEscalation",
    ),
    (
        "workload-capabilities",
        policies.workload_hardened,
        "kubernetes:apps/v1:Deployment",
        good_deployment(),
        with_container(lambda c: c["securityContext"].update(capabilities={"drop": ["NET_RAW"]})),
        "capabilities.drop",
    ),
    (
        "workload-resources",
        policies.workload_hardened,
        "kubernetes:apps/v1:Deployment",
        good_deployment(),
        with_container(lambda c: c["resources"].pop("limits")),
        "resources.limits.memory",
    ),
    (
        "workload-latest",
        policies.workload_hardened,
        "kubernetes:apps/v1:Deployment",
        with_container(lambda c: c.update(image="registry@sha256:" + "a" * 64)),
        with_container(lambda c: c.update(image="registry:latest")),
        "'registry:latest'",
    ),
    (
        "workload-untagged",
        policies.workload_hardened,
        "kubernetes:apps/v1:Deployment",
        good_deployment(),
        with_container(lambda c: c.update(image="redis")),
        "'redis'",
    ),
    (
        "workload-pss-hostpath",
        policies.workload_pod_security_restricted,
        "kubernetes:apps/v1:Deployment",
        good_deployment(),
        {**good_deployment(), "spec": {**good_deployment()["spec"], "template": {"spec": {
            **good_deployment()["spec"]["template"]["spec"], "volumes": [{"name": "h", "hostPath": {"path": "/"}}]}}}},
        "hostPath is not allowed",
    ),
    (
        "node-configurator-only-certs-d",
        policies.workload_pod_security_restricted,
        "kubernetes:apps/v1:DaemonSet",
        configurator_daemonset(),
        configurator_daemonset(lambda m: _pod(m)["volumes"].append({"name": "root", "hostPath": {"path": "/"}})),
        "hostPath only /etc/containerd/certs.d (got '/')",
    ),
    (
        "node-configurator-not-privileged",
        policies.workload_pod_security_restricted,
        "kubernetes:apps/v1:DaemonSet",
        configurator_daemonset(),
        configurator_daemonset(lambda m: _pod(m)["containers"][0]["securityContext"].update(privileged=True)),
        "privileged must be unset or false",
    ),
    (
        "node-configurator-no-host-network",
        policies.workload_pod_security_restricted,
        "kubernetes:apps/v1:DaemonSet",
        configurator_daemonset(),
        configurator_daemonset(lambda m: _pod(m).update(hostNetwork=True)),
        "spec.hostNetwork must be unset or false",
    ),
    (
        "node-configurator-no-capabilities",
        policies.workload_pod_security_restricted,
        "kubernetes:apps/v1:DaemonSet",
        configurator_daemonset(),
        configurator_daemonset(lambda m: _pod(m)["containers"][0]["securityContext"].update(capabilities={"add": ["SYS_ADMIN"]})),
        "capabilities.drop must include ALL",
    ),
    (
        "node-configurator-label-is-no-pass-for-a-deployment",
        policies.workload_pod_security_restricted,
        "kubernetes:apps/v1:DaemonSet",
        configurator_daemonset(),
        configurator_daemonset(),
        "the node configurator is a DaemonSet (got Deployment)",
    ),
    (
        "root-only-for-the-node-configurator",
        policies.workload_hardened,
        "kubernetes:apps/v1:DaemonSet",
        configurator_daemonset(),
        configurator_daemonset(lambda m: m["metadata"]["labels"].update({"app.kubernetes.io/component": "mirror"})),
        "runAsNonRoot true and a non-zero runAsUser",
    ),
    (
        "namespace-privileged-only-for-the-node-configurator",
        policies.namespace_enforces_restricted,
        policies.NAMESPACE,
        {"metadata": {"name": "registry-ha-nodes", "labels": {"app.kubernetes.io/component": "node-configurator",
                                                               "pod-security.kubernetes.io/enforce": "privileged"}}},
        {"metadata": {"name": "registry-ha-nodes", "labels": {"pod-security.kubernetes.io/enforce": "privileged"}}},
        "enforce: restricted",
    ),
    (
        "namespace-restricted",
        policies.namespace_enforces_restricted,
        policies.NAMESPACE,
        {"metadata": {"name": "registry", "labels": {"pod-security.kubernetes.io/enforce": "restricted"}}},
        {"metadata": {"name": "registry", "labels": {"pod-security.kubernetes.io/enforce": "baseline"}}},
        "enforce: restricted",
    ),
    (
        "configmap-password-key",
        policies.configmap_no_secrets,
        policies.CONFIG_MAP,
        {"metadata": {"name": "c"}, "data": {"log-level": "info", "config.yml": "version: 0.1\nlog:\n  level: info\n"}},
        {"metadata": {"name": "c"}, "data": {"REDIS_PASSWORD": "hunter2"}},
        "'REDIS_PASSWORD' is named like a secret",
    ),
    (
        "configmap-aws-key",
        policies.configmap_no_secrets,
        policies.CONFIG_MAP,
        {"metadata": {"name": "c"}, "data": {"region": "us-east-1"}},
        {"metadata": {"name": "c"}, "data": {"env": "AWS_ID=AKIAABCDEFGHIJKLMNOP"}},
        "AWS access key id",
    ),
    (
        "configmap-embedded-config",
        policies.configmap_no_secrets,
        policies.CONFIG_MAP,
        {"metadata": {"name": "c"}, "data": {"config.yml": "storage:\n  s3:\n    region: us-east-1\n"}},
        {"metadata": {"name": "c"}, "data": {"config.yml": "storage:\n  s3:\n    secretkey: abc123\n"}},
        "sets 'secretkey'",
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_validator_passes_good_and_rejects_bad(case):
    name, validator, resource_type, good, bad, expected = case
    assert run_validator(validator, resource_type, copy.deepcopy(good)) == []
    bad_type = "kubernetes:apps/v1:Deployment" if name == "node-configurator-label-is-no-pass-for-a-deployment" else resource_type
    violations = run_validator(validator, bad_type, copy.deepcopy(bad))
    assert violations, "the violating resource was accepted"
    assert any(expected in v for v in violations), violations


def test_every_resource_validator_has_a_case():
    covered = {case[1] for case in CASES}
    assert {validate for _, validate in policies.RESOURCE_VALIDATORS.values()} <= covered


def test_validators_ignore_other_types():
    for _, validator in policies.RESOURCE_VALIDATORS.values():
        assert run_validator(validator, "aws:sqs/queue:Queue", {"policy": "{}", "spec": {"type": "LoadBalancer"}}) == []


def test_image_pinning():
    assert policies.image_is_pinned("registry:3.1.1")
    assert policies.image_is_pinned("ghcr.io/x/registry:3.1.1@sha256:" + "0" * 64)
    assert not policies.image_is_pinned("registry:latest")
    assert not policies.image_is_pinned("registry")
    assert not policies.image_is_pinned("localhost:5000/registry")  # a port is not a tag


# --------------------------------------------------------------------------- the stack policy


def _bucket_set(name: str, *, sse=True, pab=True, tls=True, by_dependency=True) -> list[PolicyResource]:
    bucket = stack_resource(policies.BUCKET, {"bucketPrefix": f"{name}-"}, name)  # auto-named: no name known
    deps = {"bucket": [bucket]} if by_dependency else {}
    props_bucket = {} if by_dependency else {"bucket": name}
    if not by_dependency:
        bucket.props = {"bucket": name}
    resources = [bucket]
    if sse:
        resources.append(stack_resource(policies.SSE_CONFIG, {**props_bucket, "rules": []}, f"{name}-sse", deps))
    if pab:
        resources.append(stack_resource(policies.PUBLIC_ACCESS_BLOCK, dict(props_bucket), f"{name}-pab", deps))
    if tls:
        resources.append(
            stack_resource(policies.BUCKET_POLICY, {**props_bucket, "policy": json.dumps(TLS_POLICY)}, f"{name}-tls", deps)
        )
    return resources


def test_stack_policy_passes_a_guarded_bucket():
    assert run_stack_validator(policies.s3_buckets_guarded, _bucket_set("a")) == []
    assert run_stack_validator(policies.s3_buckets_guarded, _bucket_set("b", by_dependency=False)) == []


@pytest.mark.parametrize(
    "missing, words",
    [
        ({"sse": False}, "lacks: server-side encryption configuration."),
        ({"pab": False}, "lacks: public access block."),
        ({"tls": False}, "lacks: TLS-only bucket policy."),
    ],
)
def test_stack_policy_names_what_a_bucket_lacks(missing, words):
    resources = _bucket_set("guarded") + _bucket_set("naked", **missing)
    violations = run_stack_validator(policies.s3_buckets_guarded, resources)
    assert len(violations) == 1, violations
    message, urn = violations[0]
    assert message == f"S3 bucket 'naked' {words}"
    assert urn.endswith("::naked")


def test_stack_policy_does_not_count_another_buckets_guards():
    guarded = _bucket_set("guarded")
    lonely = stack_resource(policies.BUCKET, {"bucketPrefix": "lonely-"}, "lonely")
    violations = run_stack_validator(policies.s3_buckets_guarded, guarded + [lonely])
    assert [urn for _, urn in violations] == [lonely.urn]
    assert "encryption" in violations[0][0] and "public access block" in violations[0][0] and "TLS-only" in violations[0][0]


def test_stack_policy_rejects_a_non_tls_bucket_policy():
    resources = _bucket_set("a", tls=False)
    resources.append(
        stack_resource(
            policies.BUCKET_POLICY,
            {"policy": json.dumps({"Statement": [{"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", "Resource": "*"}]})},
            "a-public",
            {"bucket": [resources[0]]},
        )
    )
    violations = run_stack_validator(policies.s3_buckets_guarded, resources)
    assert len(violations) == 1 and "TLS-only" in violations[0][0]


# --------------------------------------------------------------------------- the program itself


class DependencyRecordingMonitor(mock_engine.RecordingMonitor):
    """Also keeps each registration's property dependencies, as the engine hands them to the analyzer."""

    dependencies: dict[str, dict[str, list[str]]] = {}

    def RegisterResource(self, request):
        response = super().RegisterResource(request)
        DependencyRecordingMonitor.dependencies[response.urn] = {
            key: list(value.urns) for key, value in request.propertyDependencies.items()
        }
        return response


def evaluate(stack: str, config=None, secret_keys=None):
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(mock_engine, "RecordingMonitor", DependencyRecordingMonitor)
        DependencyRecordingMonitor.dependencies = {}
        run = run_program(stack, config=config, secret_keys=secret_keys)
        return run, dict(DependencyRecordingMonitor.dependencies)


@pytest.fixture(scope="module", params=["staging", "production"])
def program(request):
    return (request.param, *evaluate(request.param))


def program_violations(run, dependencies) -> dict[str, list[str]]:
    """policy name -> violations, over every custom resource the program registered."""
    found: dict[str, list[str]] = {}
    custom = [r for r in run.resources if r.custom]
    for resource in custom:
        props = normalize(unwrap_secrets(resource.inputs))
        for name, (_, validator) in policies.RESOURCE_VALIDATORS.items():
            for message in run_validator(validator, resource.type, props, resource.name):
                found.setdefault(name, []).append(f"{resource.name}: {message}")
    stack_resources = {r.urn: stack_resource(r.type, normalize(unwrap_secrets(r.inputs)), r.name) for r in custom}
    for urn, resource in stack_resources.items():
        resource.urn = urn
        resource.property_dependencies = {
            key: [stack_resources[u] for u in urns if u in stack_resources]
            for key, urns in dependencies.get(urn, {}).items()
        }
    for name, (_, validator) in policies.STACK_VALIDATORS.items():
        for message, _ in run_stack_validator(validator, list(stack_resources.values())):
            found.setdefault(name, []).append(message)
    return found


def test_program_registers_what_the_policies_look_at(program):
    stack, run, dependencies = program
    types = {r.type for r in run.resources}
    for type_ in (
        policies.BUCKET, policies.SSE_CONFIG, policies.PUBLIC_ACCESS_BLOCK, policies.BUCKET_POLICY,
        policies.USER_POLICY, policies.SERVICE, policies.NAMESPACE, "kubernetes:apps/v1:Deployment",
    ):
        assert type_ in types, f"{stack}: the program no longer registers {type_}; the policy test proves nothing"
    bucket = run.one(policies.BUCKET, "storage-bucket")
    sse = run.one(policies.SSE_CONFIG, "storage-encryption")
    assert dependencies[sse.urn]["bucket"] == [bucket.urn]  # the stack policy links by this


@pytest.mark.parametrize("policy_name", [*policies.RESOURCE_VALIDATORS, *policies.STACK_VALIDATORS])
def test_program_is_compliant(program, policy_name):
    stack, run, dependencies = program
    assert program_violations(run, dependencies).get(policy_name, []) == []


def test_default_stacks_have_no_finding(program):
    """MetalLB takes the registry's IP from the `internal` pool by default: nothing to report."""
    stack, run, dependencies = program
    assert program_violations(run, dependencies) == {}


@pytest.mark.parametrize("stack", ["staging", "production"])
@pytest.mark.parametrize(
    "extra",
    [
        {"registry-ha:metallbAddressPool": "internal-pool"},
        {"registry-ha:loadBalancerIP": "10.20.0.50"},
        {"registry-ha:loadBalancerProvider": "aws"},
        {"registry-ha:loadBalancerProvider": "none"},
        {"registry-ha:authEnabled": "true", "registry-ha:pullSecretNamespaces": '["apps"]', "registry-ha:tlsSecretName": "registry-tls"},
        {"registry-ha:nodeConfigurator": "on",
         "registry-ha:mirrors": '[{"name": "dockerhub", "host": "docker.io"}, {"name": "ghcr", "host": "ghcr.io"}]'},
        {"registry-ha:nodeConfigurator": "remove"},
    ],
    ids=["metallb-pool", "metallb-ip", "aws", "nodeport-only", "auth+tls", "node-configurator", "node-configurator-remove"],
)
def test_program_is_fully_compliant_one_key_away(stack, extra):
    config, secret_keys = load_stack_config(stack)
    run, dependencies = evaluate(stack, {**config, **extra}, secret_keys)
    assert program_violations(run, dependencies) == {}


def test_program_with_sse_kms_key_arn_and_docker_hub_credentials_is_compliant():
    config, secret_keys = load_stack_config("production")
    config.update(
        {
            "registry-ha:kmsKeyArn": "arn:aws:kms:us-east-1:123456789012:key/abcd-1234",
            "registry-ha:mirrors": '[{"name": "dockerhub", "host": "docker.io", "username": "neuralhive"}]',
            "registry-ha:mirrorPasswords": '{"dockerhub": "dckr_pat_example"}',
            "registry-ha:metallbAddressPool": "internal-pool",
            "registry-ha:serviceMonitor": "true",
        }
    )
    run, dependencies = evaluate("production", config, secret_keys | {"registry-ha:mirrorPasswords"})
    assert program_violations(run, dependencies) == {}
    policy = json.loads(run.one(policies.USER_POLICY, "storage-registry-policy").inputs["policy"])
    assert any(s["Sid"] == "RegistryKmsKey" for s in policy["Statement"])  # the KMS statement was checked too


# --------------------------------------------------------------------------- preview: unknown values


def test_workload_checks_run_in_preview_with_unknown_values():
    """In preview the checksum annotation is unknown; the SDK proxy raises on reading it. The
    workload checks must still run (not be skipped as "can't run during preview")."""
    from pulumi_policy.proxy import UNKNOWN_STRING_VALUE, unknown_checking_proxy

    deployment = good_deployment()
    deployment["spec"]["template"]["metadata"]["annotations"] = {"checksum/config": UNKNOWN_STRING_VALUE}
    props = unknown_checking_proxy(deployment)
    assert run_validator(policies.workload_hardened, "kubernetes:apps/v1:Deployment", props) == []
    assert run_validator(policies.workload_pod_security_restricted, "kubernetes:apps/v1:Deployment", props) == []
    bad = with_container(lambda c: c.update(image=UNKNOWN_STRING_VALUE))  # unknown never passes
    violations = run_validator(policies.workload_hardened, "kubernetes:apps/v1:Deployment", unknown_checking_proxy(bad))
    assert violations and "pinned" in violations[0]


def test_stack_policy_in_preview_defers_an_unknown_policy_document():
    from pulumi_policy.proxy import UNKNOWN_STRING_VALUE, unknown_checking_proxy

    resources = _bucket_set("a", tls=False)
    resources.append(
        stack_resource(
            policies.BUCKET_POLICY,
            unknown_checking_proxy({"bucket": UNKNOWN_STRING_VALUE, "policy": UNKNOWN_STRING_VALUE}),
            "a-tls",
            {"bucket": [resources[0]]},
        )
    )
    assert run_stack_validator(policies.s3_buckets_guarded, resources) == []
    # ...but a bucket with no policy resource at all is still reported in preview
    assert len(run_stack_validator(policies.s3_buckets_guarded, _bucket_set("b", tls=False))) == 1
