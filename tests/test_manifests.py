"""The manifests the program renders are ones a current cluster admits: they validate against the
Kubernetes OpenAPI schema (PyPI kubernetes-validate, newest release it ships, strict: unknown
fields are errors) and every pod template meets the restricted Pod Security Standard, in a
namespace that enforces it.

Custom resources (the Prometheus-operator ServiceMonitor, only rendered when serviceMonitor is on)
have no schema in kubernetes-validate: they are skipped by API group, and only that group.
"""
from __future__ import annotations

import copy
import json

import kubernetes_validate
import pytest
import yaml
from packaging.version import Version

from registry_ha import pss
from registry_ha.mock_engine import load_stack_config, run_program
from registry_ha.render import main as render_main
from registry_ha.render import write_render

K8S_VERSION = kubernetes_validate.latest_version()
CRD_GROUPS = ("monitoring.coreos.com/",)  # custom resources: no upstream schema to validate against
RESTRICTED = "restricted"


def test_schema_version_is_a_current_release():
    assert Version(K8S_VERSION) >= Version("1.33.0"), f"kubernetes-validate only ships {K8S_VERSION}; upgrade it"


def _service_monitor_config(stack: str):
    config, secret_keys = load_stack_config(stack)
    return {**config, "registry-ha:serviceMonitor": "true"}, secret_keys


HARDENED = {
    "registry-ha:authEnabled": "true",
    "registry-ha:authUsers": '["ci:push", "node:pull", "ops:admin"]',
    "registry-ha:pullSecretNamespaces": '["apps"]',
    "registry-ha:tlsSecretName": "registry-tls",
}


def _hardened_config(stack: str):
    config, secret_keys = load_stack_config(stack)
    return {**config, **HARDENED}, secret_keys


def _gc_schedule_config(stack: str):
    config, secret_keys = load_stack_config(stack)
    return {**config, "registry-ha:gcSchedule": "0 3 * * 0"}, secret_keys


VARIANTS = {
    "staging": lambda: run_program("staging"),
    "production": lambda: run_program("production"),
    "production+serviceMonitor": lambda: run_program("production", *_service_monitor_config("production")),
    # token auth (the auth proxy and token server in each registry pod, pull secrets) with TLS on top
    "staging+auth+tls": lambda: run_program("staging", *_hardened_config("staging")),
    "production+auth+tls": lambda: run_program("production", *_hardened_config("production")),
    # the opt-in garbage-collect report CronJob
    "production+gcSchedule": lambda: run_program("production", *_gc_schedule_config("production")),
}


@pytest.fixture(scope="module", params=list(VARIANTS))
def variant(request):
    run = VARIANTS[request.param]()
    return request.param, run


@pytest.fixture(scope="module")
def rendered(variant, tmp_path_factory) -> tuple[str, list[dict]]:
    """The documents `render` writes to disk, read back from the YAML files."""
    name, run = variant
    out = tmp_path_factory.mktemp(name.replace("+", "-"))
    write_render(run, out)
    documents = []
    for path in sorted(out.glob("*.yaml")):
        documents.extend(d for d in yaml.safe_load_all(path.read_text()) if d)
    return name, documents


def _is_crd(manifest: dict) -> bool:
    return manifest.get("apiVersion", "").startswith(CRD_GROUPS)


def schema_errors(manifest: dict) -> list[str]:
    try:
        kubernetes_validate.validate(manifest, K8S_VERSION, strict=True)
    except kubernetes_validate.ValidationError as error:
        where = "/".join(str(p) for p in error.path)
        return [f"{manifest.get('kind')} {manifest.get('metadata', {}).get('name')}: {where}: {error.message}"]
    return []


# --------------------------------------------------------------------------- schema


def test_rendered_manifests_validate_against_the_kubernetes_schema(rendered):
    name, documents = rendered
    kinds = sorted({d["kind"] for d in documents})
    assert {"Namespace", "Deployment", "Service", "Secret", "NetworkPolicy", "PodDisruptionBudget"} <= set(kinds)
    skipped = [d for d in documents if _is_crd(d)]
    checked = [d for d in documents if not _is_crd(d)]
    errors = [e for d in checked for e in schema_errors(d)]
    assert errors == []
    assert len(checked) >= 17
    # CRDs are skipped only where present: the ServiceMonitors and the PrometheusRule, which
    # production's stack file turns on (serviceMonitor, prometheusRule)
    if name.startswith("production"):
        assert sorted((d["kind"], d["metadata"]["name"]) for d in skipped) == [
            ("PrometheusRule", "docker-registry-alerts"),
            ("ServiceMonitor", "docker-registry"),
            ("ServiceMonitor", "docker-registry-mirror"),
        ]
    else:
        assert skipped == []


def test_program_manifests_with_real_secret_values_validate(variant):
    """manifests() unwraps secrets (render redacts them): validate the unredacted form as well."""
    _, run = variant
    manifests = [m for m in run.manifests() if not _is_crd(m)]
    assert [e for m in manifests for e in schema_errors(m)] == []
    secrets = [m for m in manifests if m["kind"] == "Secret"]
    assert secrets and all(isinstance(v, str) and v for s in secrets for v in s["stringData"].values())


@pytest.mark.parametrize(
    "kind, mutate, expected",
    [
        ("Deployment", lambda m: m["spec"].update(replicas="3"), "is not of type 'integer'"),
        ("Deployment", lambda m: m["spec"]["template"]["spec"]["containers"][0].update(securityContex={}), "securityContex"),
        ("Service", lambda m: m["spec"]["ports"][0].update(port="http"), "'http' is not of type 'integer'"),
        ("Service", lambda m: m["spec"]["ports"][0].pop("port"), "'port' is a required property"),
        ("NetworkPolicy", lambda m: m["spec"].update(policyTypes="Ingress"), "is not of type 'array'"),
    ],
)
def test_schema_validation_catches_broken_manifests(variant, kind, mutate, expected):
    _, run = variant
    manifest = copy.deepcopy(next(m for m in run.manifests() if m["kind"] == kind))
    mutate(manifest)
    errors = schema_errors(manifest)
    assert errors and expected in errors[0], errors


def test_render_command_writes_valid_manifests(tmp_path, capsys):
    assert render_main(["staging", "--out", str(tmp_path)]) == 0
    assert capsys.readouterr().out.splitlines()[0] == f"rendered staging: 17 Kubernetes objects, 9 AWS resources -> {tmp_path}"
    documents = [d for p in sorted(tmp_path.glob("*.yaml")) for d in yaml.safe_load_all(p.read_text()) if d]
    assert len(documents) == 17
    assert [e for d in documents for e in schema_errors(d)] == []
    aws = json.loads((tmp_path / "aws.json").read_text())
    assert sorted((r["component"], r["type"].rsplit(":", 1)[1], r["name"]) for r in aws) == [
        ("storage", "AccessKey", "storage-registry-key"),
        ("storage", "Bucket", "storage-bucket"),
        ("storage", "BucketLifecycleConfiguration", "storage-lifecycle"),
        ("storage", "BucketOwnershipControls", "storage-ownership"),
        ("storage", "BucketPolicy", "storage-tls-only"),
        ("storage", "BucketPublicAccessBlock", "storage-public-access-block"),
        ("storage", "BucketServerSideEncryptionConfiguration", "storage-encryption"),
        ("storage", "User", "storage-registry-user"),
        ("storage", "UserPolicy", "storage-registry-policy"),
    ]
    inputs = {r["name"]: r["inputs"] for r in aws}
    assert inputs["storage-bucket"]["bucketPrefix"] == "neural-hive-registry-staging-"
    assert inputs["storage-encryption"]["rules"][0]["applyServerSideEncryptionByDefault"] == {"sseAlgorithm": "AES256"}
    bucket_arn = f"arn:aws:s3:::{inputs['storage-encryption']['bucket']}"
    statements = {s["Sid"]: s for s in json.loads(inputs["storage-registry-policy"]["policy"])["Statement"]}
    assert (statements["RegistryBucket"]["Resource"], statements["RegistryObjects"]["Resource"]) == (bucket_arn, f"{bucket_arn}/*")
    outputs = json.loads((tmp_path / "outputs.json").read_text())
    assert outputs["bucketName"] == inputs["storage-encryption"]["bucket"] and outputs["iamUserName"] == "registry-ha-staging-registry"


# --------------------------------------------------------------------------- restricted Pod Security Standard


def test_namespace_enforces_restricted(rendered):
    _, documents = rendered
    namespaces = [d for d in documents if d["kind"] == "Namespace"]
    assert len(namespaces) == 1
    labels = namespaces[0]["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == RESTRICTED
    assert labels.get("pod-security.kubernetes.io/audit") == RESTRICTED
    assert labels.get("pod-security.kubernetes.io/warn") == RESTRICTED
    # every namespaced object lives in that namespace, but the Grafana dashboard (Grafana's sidecar
    # collects it from the monitoring namespace) and the pull secrets pullSecretNamespaces asks for
    name = namespaces[0]["metadata"]["name"]
    dashboards = [d for d in documents if d["metadata"].get("labels", {}).get("grafana_dashboard") == "1"]
    assert {(d["kind"], d["metadata"]["namespace"]) for d in dashboards} <= {("ConfigMap", "monitoring")}
    others = [d for d in documents if d["kind"] != "Namespace" and d not in dashboards]
    elsewhere = [d for d in others if d["metadata"].get("namespace") != name]
    assert [(d["kind"], d["type"], d["metadata"]["name"], d["metadata"]["namespace"]) for d in elsewhere] == (
        [("Secret", "kubernetes.io/dockerconfigjson", "registry-pull", "apps")] if "auth" in rendered[0] else [])


def test_every_workload_meets_restricted(rendered):
    name, documents = rendered
    workloads = [d for d in documents if pss.workload_pod(d) is not None]
    assert sorted(d["metadata"]["name"] for d in workloads) == sorted([
        "docker-registry", "docker-registry-mirror", "registry-redis",
        *(["docker-registry-gc-report"] if name.endswith("gcSchedule") else []),
    ])
    assert {d["metadata"]["name"]: pss.manifest_violations(d) for d in workloads} == {
        d["metadata"]["name"]: [] for d in workloads
    }


def test_workloads_are_hardened_beyond_restricted(rendered):
    """What the issue asks on top of PSS: read-only root, resources, no service-account token."""
    _, documents = rendered
    for workload in (d for d in documents if pss.workload_pod(d) is not None):
        pod, _ = pss.workload_pod(workload)
        assert pod["automountServiceAccountToken"] is False
        for container in pod["containers"]:
            assert container["securityContext"]["readOnlyRootFilesystem"] is True
            assert container["resources"]["requests"]["cpu"] and container["resources"]["limits"]["memory"]
            assert container["securityContext"]["runAsUser"] > 10000  # checkov CKV_K8S_40


def restricted_pod() -> dict:
    return {
        "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [
            {
                "name": "c",
                "image": "registry:3.1.1",
                "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
            }
        ],
        "volumes": [{"name": "v", "secret": {"secretName": "s"}}],
    }


def _container(pod: dict) -> dict:
    return pod["containers"][0]


def _sc(pod: dict) -> dict:
    return pod["containers"][0]["securityContext"]


# (id, mutation of a restricted pod, words of the expected violation) -- from the official PSS table
PSS_VIOLATIONS = [
    ("hostNetwork", lambda p: p.update(hostNetwork=True), "spec.hostNetwork"),
    ("hostPID", lambda p: p.update(hostPID=True), "spec.hostPID"),
    ("hostIPC", lambda p: p.update(hostIPC=True), "spec.hostIPC"),
    ("hostProcess", lambda p: _sc(p).update(windowsOptions={"hostProcess": True}), "hostProcess"),
    ("privileged", lambda p: _sc(p).update(privileged=True), "privileged"),
    ("hostPort", lambda p: _container(p).update(ports=[{"containerPort": 80, "hostPort": 80}]), "hostPort 80"),
    ("hostPath", lambda p: p["volumes"].append({"name": "h", "hostPath": {"path": "/var/run"}}), "hostPath is not allowed"),
    ("nfs-volume", lambda p: p["volumes"].append({"name": "n", "nfs": {"server": "x", "path": "/"}}), "nfs is not allowed"),
    ("procMount", lambda p: _sc(p).update(procMount="Unmasked"), "procMount"),
    ("unsafe-sysctl", lambda p: p["securityContext"].update(sysctls=[{"name": "kernel.msgmax", "value": "1"}]), "kernel.msgmax"),
    ("selinux-user", lambda p: _sc(p).update(seLinuxOptions={"user": "system_u"}), "seLinuxOptions.user"),
    ("selinux-type", lambda p: _sc(p).update(seLinuxOptions={"type": "spc_t"}), "'spc_t'"),
    ("apparmor-unconfined", lambda p: _sc(p).update(appArmorProfile={"type": "Unconfined"}), "appArmorProfile"),
    ("escalation-unset", lambda p: _sc(p).pop("allowPrivilegeEscalation"), "allowPrivilegeEscalation must be false"),
    ("escalation-true", lambda p: _sc(p).update(allowPrivilegeEscalation=True), "allowPrivilegeEscalation must be false"),
    ("non-root-unset", lambda p: p["securityContext"].pop("runAsNonRoot"), "runAsNonRoot must be true"),
    ("non-root-false-in-container", lambda p: _sc(p).update(runAsNonRoot=False), "runAsNonRoot must be true"),
    ("uid-0", lambda p: _sc(p).update(runAsUser=0), "runAsUser must not be 0"),
    ("pod-uid-0", lambda p: p["securityContext"].update(runAsUser=0), "spec.securityContext.runAsUser"),
    ("seccomp-unset", lambda p: p["securityContext"].pop("seccompProfile"), "seccompProfile.type must be"),
    ("seccomp-unconfined", lambda p: _sc(p).update(seccompProfile={"type": "Unconfined"}), "'Unconfined'"),
    ("caps-not-dropped", lambda p: _sc(p).update(capabilities={"drop": ["NET_RAW"]}), "drop must include ALL"),
    ("caps-added", lambda p: _sc(p)["capabilities"].update(add=["SYS_ADMIN"]), "SYS_ADMIN"),
    (
        "init-container",
        lambda p: p.update(initContainers=[{"name": "init", "image": "busybox:1.36"}]),
        "initContainers[init].securityContext.allowPrivilegeEscalation",
    ),
]


def test_restricted_pod_has_no_violations():
    assert pss.restricted_violations(restricted_pod()) == []


@pytest.mark.parametrize("mutate, expected", [c[1:] for c in PSS_VIOLATIONS], ids=[c[0] for c in PSS_VIOLATIONS])
def test_pss_checker_rejects(mutate, expected):
    pod = restricted_pod()
    mutate(pod)
    violations = pss.restricted_violations(pod)
    assert any(expected in v for v in violations), violations


@pytest.mark.parametrize(
    "mutate",
    [
        lambda p: _sc(p)["capabilities"].update(add=["NET_BIND_SERVICE"]),
        lambda p: p["securityContext"].update(sysctls=[{"name": "net.ipv4.ip_unprivileged_port_start", "value": "0"}]),
        lambda p: _sc(p).update(seccompProfile={"type": "Localhost", "localhostProfile": "x.json"}),
        lambda p: p["volumes"].extend([{"name": "e", "emptyDir": {}}, {"name": "c", "configMap": {"name": "c"}},
                                       {"name": "pr", "projected": {"sources": []}}, {"name": "pvc", "persistentVolumeClaim": {"claimName": "x"}}]),
        lambda p: (p["securityContext"].pop("runAsNonRoot"), _sc(p).update(runAsNonRoot=True)),
        lambda p: _sc(p).update(seLinuxOptions={"type": "container_t", "level": "s0:c1,c2"}),
    ],
    ids=["NET_BIND_SERVICE", "safe-sysctl", "seccomp-localhost", "allowed-volumes", "non-root-per-container", "selinux-level"],
)
def test_pss_checker_allows_what_restricted_allows(mutate):
    pod = restricted_pod()
    mutate(pod)
    assert pss.restricted_violations(pod) == []


def test_pss_finds_pod_templates_of_every_workload_kind():
    pod = restricted_pod()
    pod["hostNetwork"] = True
    for manifest in (
        {"kind": "Pod", "spec": pod},
        {"kind": "StatefulSet", "spec": {"template": {"spec": pod}}},
        {"kind": "CronJob", "spec": {"jobTemplate": {"spec": {"template": {"spec": pod}}}}},
    ):
        assert pss.manifest_violations(manifest) == ["spec.hostNetwork must be unset or false"]
    assert pss.manifest_violations({"kind": "Service", "spec": {"hostNetwork": True}}) == []
