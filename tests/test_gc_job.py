"""The garbage-collect Job `deploy-registry-ha.sh gc` creates (registry_ha/gc_job.py): a Job the API server
admits (schema, restricted Pod Security Standard) on the registry's own config Secret, never selected by
the registry Service; and the summary line of `registry garbage-collect` read back as numbers."""
from __future__ import annotations

import kubernetes_validate
import pytest

from registry_ha import gc_job, pss
from registry_ha.k8s import registry_service_spec
from tests.mocking import settings_for


@pytest.mark.parametrize("stack", ["staging", "production"])
@pytest.mark.parametrize("dry_run, delete_untagged", [(False, False), (False, True), (True, False)])
def test_job_is_admitted_and_hardened(stack, dry_run, delete_untagged):
    settings = settings_for(stack)
    job = gc_job.gc_job(settings, "registry", "docker-registry-gc-20261128t0300", dry_run, delete_untagged)
    kubernetes_validate.validate(job, kubernetes_validate.latest_version(), strict=True)
    assert pss.manifest_violations(job) == []
    pod = job["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    flags = container["args"][2:]
    assert container["args"][:2] == ["garbage-collect", "/etc/distribution/config.yml"]
    assert ("--dry-run" in flags, "--delete-untagged" in flags) == (dry_run, delete_untagged)
    assert pod["restartPolicy"] == "Never" and job["spec"]["backoffLimit"] == 0
    assert job["spec"]["activeDeadlineSeconds"] == gc_job.DEFAULT_DEADLINE_SECONDS
    assert pod["automountServiceAccountToken"] is False
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    (config,) = [v["secret"] for v in pod["volumes"] if "secret" in v]
    assert config["secretName"] == "docker-registry-config" and [i["key"] for i in config["items"]] == ["config.yml"]
    assert container["resources"]["limits"]["memory"] == settings.registry.resources.memory_limit
    selector = registry_service_spec(settings)["selector"]
    pod_labels = job["spec"]["template"]["metadata"]["labels"]
    assert any(pod_labels.get(k) != v for k, v in selector.items()), "the registry Service would select the GC pod"
    assert job["metadata"]["labels"]["app.kubernetes.io/component"] == "gc"


def test_a_28_image_gets_its_config_path():
    settings = settings_for("staging", image="registry:2.8.3")
    pod = gc_job.gc_pod_spec(settings, dry_run=False, delete_untagged=False)
    assert pod["containers"][0]["args"] == ["garbage-collect", "/etc/docker/registry/config.yml"]
    assert pod["containers"][0]["volumeMounts"][0]["mountPath"] == "/etc/docker/registry"


def test_summary_line_is_read_back():
    output = "repo-a\nrepo-a: marking manifest sha256:1 \n\n12 blobs marked, 3 blobs and 1 manifests eligible for deletion\nblob eligible for deletion: sha256:2\n"
    assert gc_job.parse_summary(output) == {"blobs_marked": 12, "blobs_eligible": 3, "manifests_eligible": 1}
    assert gc_job.parse_summary("failed to garbage collect: boom") is None


def test_the_report_needs_a_schedule():
    with pytest.raises(ValueError):
        gc_job.gc_report_cronjob_spec(settings_for("staging"))
