"""Garbage collection as Kubernetes objects (plain data, camelCase, like registry_ha.k8s).

- `gc_job`: the Job `deploy-registry-ha.sh gc` creates while every private replica is read-only.
- `gc_report_cronjob_spec`: the opt-in CronJob (`gcSchedule`). It runs `garbage-collect --dry-run`
  only: a report of what `gc` would delete, never a deletion. A scheduled sweep would run while the
  replicas accept pushes, and Distribution's mark-and-sweep then deletes layers uploaded during the
  mark phase; switching the replicas read-only from inside the cluster would need a service account
  allowed to rewrite the Pulumi-owned config Secret (drift on the next `pulumi up`, and a namespace
  token that can change the registry's credentials). The operator-run `gc` does the switch with
  Pulumi instead.

Both mount the private registry's own config Secret (only its config.yml): the storage section the
replicas use, nothing copied. `registry garbage-collect` reads only the storage and log sections;
it opens no Redis connection and serves no port. Their pods carry their own app label, so the
registry Service never selects them, and they meet the restricted Pod Security Standard.
"""
from __future__ import annotations

import re
from typing import Optional

from registry_ha.k8s import (
    REGISTRY_UID,
    Names,
    container_security_context,
    labels,
    metadata,
    pod_security_context,
    resources,
)
from registry_ha.registry_config import CONFIG_KEY, CONFIG_PATHS
from registry_ha.settings import Settings

COMPONENT = "gc"
JOB_TTL_SECONDS = 7 * 86400  # a finished Job (and its pod's log) stays a week
DEFAULT_DEADLINE_SECONDS = 4 * 3600  # bounds the read-only window if the sweep hangs
REPORT_SUFFIX = "gc-report"


def gc_app(settings: Settings) -> str:
    """app.kubernetes.io/name of the GC pods: never the registry's own (its Service selects that)."""
    return f"{settings.registry.service_name}-gc"


def report_name(settings: Settings) -> str:
    return f"{settings.registry.service_name}-{REPORT_SUFFIX}"


def gc_args(settings: Settings, dry_run: bool, delete_untagged: bool) -> list[str]:
    # Both the 3.x image (ENTRYPOINT registry) and 2.8's entrypoint.sh run `registry garbage-collect ...`.
    args = ["garbage-collect", CONFIG_PATHS[settings.registry.schema]]
    if dry_run:
        args.append("--dry-run")
    if delete_untagged:
        args.append("--delete-untagged")
    return args


def gc_pod_spec(settings: Settings, dry_run: bool, delete_untagged: bool) -> dict:
    config_dir = CONFIG_PATHS[settings.registry.schema].rsplit("/", 1)[0]
    registry = settings.registry
    return {
        "restartPolicy": "Never",
        "enableServiceLinks": False,
        "automountServiceAccountToken": False,
        "securityContext": pod_security_context(REGISTRY_UID),
        "containers": [
            {
                "name": "garbage-collect",
                "image": registry.image,
                "imagePullPolicy": "IfNotPresent",
                "args": gc_args(settings, dry_run, delete_untagged),
                "env": [{"name": "OTEL_TRACES_EXPORTER", "value": "none"}],
                # The mark set of every blob digest lives in memory: the replicas' sizing.
                "resources": resources(
                    registry.resources.cpu_request, registry.resources.memory_request, registry.resources.memory_limit
                ),
                "securityContext": container_security_context(REGISTRY_UID),
                "volumeMounts": [
                    {"name": "config", "mountPath": config_dir, "readOnly": True},
                    {"name": "tmp", "mountPath": "/tmp"},
                ],
            }
        ],
        "volumes": [
            {
                "name": "config",
                "secret": {
                    "secretName": Names.for_registry(settings, "private").config_secret,
                    "defaultMode": 0o440,
                    "items": [{"key": CONFIG_KEY, "path": CONFIG_KEY, "mode": 0o440}],
                },
            },
            {"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}},
        ],
    }


def gc_job_spec(settings: Settings, dry_run: bool, delete_untagged: bool,
                deadline_seconds: Optional[int] = DEFAULT_DEADLINE_SECONDS) -> dict:
    spec: dict = {
        "backoffLimit": 0,  # a failed sweep is reported, not retried blindly
        "ttlSecondsAfterFinished": JOB_TTL_SECONDS,
        "template": {
            "metadata": {"labels": labels(gc_app(settings), COMPONENT, settings.stack)},
            "spec": gc_pod_spec(settings, dry_run, delete_untagged),
        },
    }
    if deadline_seconds:
        spec["activeDeadlineSeconds"] = deadline_seconds
    return spec


def gc_job(settings: Settings, namespace: str, name: str, dry_run: bool, delete_untagged: bool,
           deadline_seconds: Optional[int] = DEFAULT_DEADLINE_SECONDS) -> dict:
    """The whole Job object, as `kubectl create -f -` takes it."""
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": metadata(name, namespace, gc_app(settings), COMPONENT, settings.stack),
        "spec": gc_job_spec(settings, dry_run, delete_untagged, deadline_seconds),
    }


def gc_report_cronjob_spec(settings: Settings) -> dict:
    """gcSchedule: a scheduled `garbage-collect --dry-run` (see the module docstring for why not more)."""
    if not settings.registry.gc_schedule:
        raise ValueError("gc_report_cronjob_spec needs gcSchedule")
    return {
        "schedule": settings.registry.gc_schedule,
        "concurrencyPolicy": "Forbid",  # runs alone: a slow report is never joined by the next one
        "startingDeadlineSeconds": 3600,
        "successfulJobsHistoryLimit": 3,
        "failedJobsHistoryLimit": 3,
        "jobTemplate": {
            "metadata": {"labels": labels(gc_app(settings), COMPONENT, settings.stack)},
            "spec": gc_job_spec(settings, dry_run=True, delete_untagged=False),
        },
    }


SUMMARY_PATTERN = r"(\d+) blobs marked, (\d+) blobs and (\d+) manifests eligible for deletion"


def parse_summary(output: str) -> Optional[dict]:
    """The last summary line of `registry garbage-collect` (3.1.1 and 2.8.2 print the same one) as numbers."""
    matches = re.findall(SUMMARY_PATTERN, output)
    if not matches:
        return None
    marked, blobs, manifests = (int(x) for x in matches[-1])
    return {"blobs_marked": marked, "blobs_eligible": blobs, "manifests_eligible": manifests}
