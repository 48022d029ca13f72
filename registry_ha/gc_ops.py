"""`deploy-registry-ha.sh gc <stack> [--dry-run] [--delete-untagged]`: garbage collection on the cluster.

Distribution's mark-and-sweep deletes every blob no manifest references when it looks. A layer pushed
while it runs is such a blob until its manifest arrives, so the sweep must run while no replica
accepts pushes; and it leaves Redis holding descriptors of the blobs it deleted, which the replicas
then answer 200 for. The safe sequence, each step through the tool that owns it:

  1. readOnly on: `pulumi config set registry-ha:readOnly true` + `pulumi up` (the config Secret gets
     storage.maintenance.readonly, the checksum annotation rolls the pods), then wait until
     `kubectl rollout status` is done and every pod, terminating ones included, carries the new
     checksum: no replica that accepts pushes is left.
  2. `registry garbage-collect` as a Job on the registry's own config Secret (registry_ha/gc_job.py).
  3. FLUSHDB of the private registry's Redis db only (the caches' dbs stay), through
     `kubectl exec` into the Redis pod (redis-cli reads the password from its REDISCLI_AUTH).
  4. readOnly off (`pulumi config rm` + `pulumi up`), always: also when a step above failed or was
     interrupted. If that fails, the exact commands to finish it are printed.

It refuses to start from a state it does not know: readOnly already on (an interrupted run), a stack
without outputs (never deployed), changes `pulumi preview` would deploy besides readOnly, no registry
Deployment, or a GC Job still running. `--dry-run` only reports (nothing is deleted, so nothing goes
read-only and Redis keeps everything). The pull-through caches are never collected: their own
expiry (proxy.ttl) deletes what they no longer need, under their own root directories.
"""
from __future__ import annotations

import datetime as dt
import json
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

from registry_ha import gc_job
from registry_ha.k8s import CHECKSUM_ANNOTATION, Names
from registry_ha.pulumi_ops import (
    OpsError,
    _parser,
    _pulumi,
    _pulumi_json,
    _run_main,
    _up,
    check_ready,
    confirm,
    policy_args,
    project_dir,
)
from registry_ha.settings import PROJECT, Settings, SettingsError, load_settings
from registry_ha.stacks import read_stack_file

READ_ONLY_KEY = f"{PROJECT}:readOnly"
POLL_SECONDS = 2.0
DEFAULT_ROLLOUT_TIMEOUT = 900


# --------------------------------------------------------------------------- kubectl


class Kubectl:
    """kubectl against the stack's own cluster (`kubernetes:context` of its stack file) and namespace."""

    def __init__(self, context: Optional[str], namespace: str):
        binary = shutil.which("kubectl")
        if binary is None:
            raise OpsError("kubectl is not on PATH; install it (https://kubernetes.io/docs/tasks/tools/)")
        self.binary, self.context, self.namespace = binary, context, namespace

    def run(self, args: list[str], stdin: Optional[str] = None, check: bool = True,
            timeout: Optional[float] = None) -> subprocess.CompletedProcess:
        cmd = [self.binary, *(["--context", self.context] if self.context else []), "-n", self.namespace, *args]
        try:
            proc = subprocess.run(cmd, input=stdin, capture_output=True, text=True, timeout=timeout,
                                  stdin=None if stdin is not None else subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            raise OpsError(f"`kubectl {' '.join(args)}` did not finish within {timeout:.0f}s") from None
        if check and proc.returncode != 0:
            detail = (proc.stderr or proc.stdout).strip().splitlines()
            raise OpsError(f"`kubectl {' '.join(args)}` failed: {detail[-1] if detail else 'exit ' + str(proc.returncode)}")
        return proc

    def json(self, args: list[str]) -> Any:
        proc = self.run([*args, "-o", "json"])
        try:
            return json.loads(proc.stdout)
        except json.JSONDecodeError:
            raise OpsError(f"`kubectl {' '.join(args)} -o json` did not return JSON") from None


def _selector(match_labels: dict) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(match_labels.items()))


def template_checksum(deployment: dict) -> str:
    return ((deployment["spec"]["template"]["metadata"].get("annotations") or {}).get(CHECKSUM_ANNOTATION, ""))


def _pod_ready(pod: dict) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in (pod.get("status") or {}).get("conditions") or [])


def pods_off_config(pods: list[dict], checksum: str, replicas: int) -> list[str]:
    """Why the pods do not all run `checksum` yet (empty: every pod does, Ready, and no other pod exists)."""
    problems = []
    for pod in pods:
        name = pod["metadata"]["name"]
        theirs = (pod["metadata"].get("annotations") or {}).get(CHECKSUM_ANNOTATION, "")
        if theirs != checksum:
            state = "terminating" if pod["metadata"].get("deletionTimestamp") else "running"
            problems.append(f"{name} ({state}) runs config {theirs[:12] or '?'}")
        elif not _pod_ready(pod):
            problems.append(f"{name} not Ready")
    if len(pods) != replicas and not problems:
        problems.append(f"{len(pods)} pods, want {replicas}")
    return problems


def wait_for_config(kube: Kubectl, deployment_name: str, timeout: float) -> str:
    """Wait until the rollout is done and every pod of the Deployment runs its template's config.
    Returns that config's checksum."""
    kube.run(["rollout", "status", f"deployment/{deployment_name}", f"--timeout={int(timeout)}s"], timeout=timeout + 30)
    deployment = kube.json(["get", "deployment", deployment_name])
    checksum = template_checksum(deployment)
    replicas = int(deployment["spec"].get("replicas", 1))
    selector = _selector(deployment["spec"]["selector"]["matchLabels"])
    deadline = time.monotonic() + timeout
    while True:
        pods = kube.json(["get", "pods", "-l", selector]).get("items", [])
        problems = pods_off_config(pods, checksum, replicas)
        if not problems:
            sys.stderr.write(f"  {replicas}/{replicas} pods of {deployment_name} run config {checksum[:12]}\n")
            return checksum
        if time.monotonic() >= deadline:
            raise OpsError(f"pods of {deployment_name} did not all run config {checksum[:12]} within "
                           f"{int(timeout)}s: {'; '.join(problems)}")
        time.sleep(POLL_SECONDS)


# --------------------------------------------------------------------------- the stack


@dataclass
class Target:
    stack: str
    cwd: Path
    settings: Settings
    context: Optional[str]
    namespace: str
    deployment: str


def load_target(stack: str, cwd: Path) -> Target:
    """The stack's settings from its stack file, and where it runs (kubernetes:context, namespace)."""
    try:
        config, secret_keys = read_stack_file(stack, cwd)
        settings = load_settings(config, stack, secret_keys, aws_region=config.get("aws:region"))
    except SettingsError as exc:
        raise OpsError(str(exc), code=2) from None
    outputs = _pulumi_json(["stack", "output", "--json", "--stack", stack, "--non-interactive"], cwd, "outputs") or {}
    missing = [key for key in ("namespace", "bucketName") if not outputs.get(key)]
    if missing:
        raise OpsError(f"stack {stack!r} has no output {', '.join(missing)}: it was never deployed "
                       f"(or its last update failed); deploy it first: deploy-registry-ha.sh deploy {stack}")
    return Target(stack, cwd, settings, config.get("kubernetes:context"), outputs["namespace"],
                  Names.for_registry(settings, "private").app)


def read_only_recovery(stack: str) -> str:
    return (f"pulumi config rm {READ_ONLY_KEY} --stack {stack} && ./scripts/deploy-registry-ha.sh deploy {stack} --yes")


def refuse_unknown_state(target: Target, kube: Kubectl, dry_run: bool) -> None:
    stack = target.stack
    if target.settings.registry.read_only and not dry_run:
        raise OpsError(
            f"stack {stack!r} already has readOnly: true in Pulumi.{stack}.yaml (a gc that was interrupted?). "
            f"If no gc Job is running (kubectl get jobs -n {target.namespace} -l app.kubernetes.io/component=gc), "
            f"return to read-write with `{read_only_recovery(stack)}`, then run gc again"
        )
    deployment = kube.run(["get", "deployment", target.deployment, "-o", "json"], check=False)
    if deployment.returncode != 0:
        raise OpsError(f"no Deployment {target.deployment} in namespace {target.namespace}"
                       f"{' (context ' + target.context + ')' if target.context else ''}: "
                       f"is stack {stack!r} deployed to this cluster?")
    app = gc_job.gc_app(target.settings)
    jobs = kube.json(["get", "jobs", "-l", f"app.kubernetes.io/name={app}"]).get("items", [])
    running = [j["metadata"]["name"] for j in jobs if (j.get("status") or {}).get("active")]
    if running:
        raise OpsError(f"a garbage-collect Job is still running ({', '.join(running)}); wait for it "
                       f"(kubectl logs -f job/{running[0]} -n {target.namespace})")
    if dry_run:
        return
    preview = _pulumi(["preview", "--expect-no-changes", "--stack", stack, "--non-interactive",
                       *policy_args(target.cwd)], target.cwd, capture=True)
    if preview.returncode != 0:
        raise OpsError(
            f"stack {stack!r} is not what is deployed (`pulumi preview --expect-no-changes` failed): deploy or "
            f"revert those changes first (deploy-registry-ha.sh preview {stack}), so that gc's `pulumi up` "
            "changes nothing but readOnly"
        )


# --------------------------------------------------------------------------- the steps


def set_read_only(target: Target, on: bool, rollout_timeout: float) -> str:
    stack = target.stack
    if on:
        args = ["config", "set", READ_ONLY_KEY, "true", "--stack", stack, "--non-interactive"]
    else:
        args = ["config", "rm", READ_ONLY_KEY, "--stack", stack, "--non-interactive"]
    proc = _pulumi(args, target.cwd, capture=True)
    if proc.returncode != 0:
        raise OpsError(f"`pulumi {' '.join(args)}` failed: {(proc.stderr or proc.stdout).strip()[-300:]}")
    _up(stack, target.cwd, message=f"gc: readOnly {'on' if on else 'off'}")
    return wait_for_config(Kubectl(target.context, target.namespace), target.deployment, rollout_timeout)


def job_name(settings: Settings, now: Optional[dt.datetime] = None) -> str:
    now = now or dt.datetime.now(dt.timezone.utc)
    return f"{gc_job.gc_app(settings)}-{now:%Y%m%d%H%M%S}"


def run_job(target: Target, kube: Kubectl, dry_run: bool, delete_untagged: bool, deadline: int,
            created: list[str]) -> tuple[bool, str]:
    """Create the GC Job (its name appended to `created`), wait for it, return (succeeded, its log)."""
    name = job_name(target.settings)
    body = gc_job.gc_job(target.settings, target.namespace, name, dry_run, delete_untagged, deadline)
    kube.run(["create", "-f", "-"], stdin=json.dumps(body))
    created.append(name)
    sys.stderr.write(f"  job {name} created (kubectl logs -f job/{name} -n {target.namespace})\n")
    wait_until = time.monotonic() + deadline + 120
    while True:
        status = kube.json(["get", "job", name]).get("status") or {}
        conditions = {c.get("type"): c for c in status.get("conditions") or [] if c.get("status") == "True"}
        if status.get("succeeded") or "Complete" in conditions:
            succeeded = True
            break
        if status.get("failed") or "Failed" in conditions:
            failed = conditions.get("Failed") or {}
            sys.stderr.write(f"  job {name} failed: {failed.get('reason', '')} {failed.get('message', '')}".rstrip() + "\n")
            succeeded = False
            break
        if time.monotonic() >= wait_until:
            sys.stderr.write(f"  job {name} still not finished after {deadline}s\n")
            succeeded = False
            break
        time.sleep(POLL_SECONDS)
    logs = kube.run(["logs", f"job/{name}", "--tail=-1"], check=False).stdout
    return succeeded, logs


def job_active(kube: Kubectl, name: str) -> bool:
    status = kube.json(["get", "job", name]).get("status") or {}
    return bool(status.get("active")) or not (status.get("succeeded") or status.get("failed"))


def stop_job(kube: Kubectl, name: str) -> None:
    """Delete an unfinished GC Job and wait for its pod to be gone: it must not sweep once pushes are back."""
    kube.run(["delete", "job", name, "--cascade=foreground", "--wait=true", "--timeout=300s"], timeout=330)


def flush_registry_db(target: Target, kube: Kubectl) -> None:
    db = target.settings.redis.registry_db
    proc = kube.run(["exec", f"deploy/{Names.for_redis().app}", "-c", "redis", "--",
                     "redis-cli", "-n", str(db), "FLUSHDB"])
    if proc.stdout.strip() != "OK":
        raise OpsError(f"redis-cli -n {db} FLUSHDB answered {proc.stdout.strip()[:80]!r}, not OK")


def format_summary(summary: Optional[dict], dry_run: bool) -> str:
    if summary is None:
        return "garbage-collect printed no summary line; see the Job's log\n"
    verb = "would delete" if dry_run else "deleted"
    return (f"{summary['blobs_marked']} blobs in use; {verb} {summary['blobs_eligible']} blobs and "
            f"{summary['manifests_eligible']} untagged manifests\n")


# --------------------------------------------------------------------------- the command


def _gc(argv: list[str]) -> int:
    parser = _parser("gc", "Garbage-collect the private registry: read-only, garbage-collect Job, FLUSHDB, read-write.")
    parser.add_argument("--dry-run", action="store_true",
                        help="only report what would be deleted (no read-only window, nothing deleted)")
    parser.add_argument("--delete-untagged", action="store_true",
                        help="also delete manifests no tag points at (and the blobs only they use)")
    parser.add_argument("--yes", "-y", action="store_true", help="do not ask before switching the registry read-only")
    parser.add_argument("--timeout", type=int, default=gc_job.DEFAULT_DEADLINE_SECONDS, metavar="SECONDS",
                        help=f"the Job's deadline, which bounds the read-only window (default {gc_job.DEFAULT_DEADLINE_SECONDS})")
    parser.add_argument("--rollout-timeout", type=int, default=DEFAULT_ROLLOUT_TIMEOUT, metavar="SECONDS",
                        help=f"how long each switch may take to reach every pod (default {DEFAULT_ROLLOUT_TIMEOUT})")
    args = parser.parse_args(argv)
    if args.timeout < 60 or args.rollout_timeout < 30:
        raise OpsError("--timeout: at least 60 seconds; --rollout-timeout: at least 30 seconds", code=2)
    cwd = project_dir()
    check_ready(args.stack, cwd)
    target = load_target(args.stack, cwd)
    kube = Kubectl(target.context, target.namespace)
    refuse_unknown_state(target, kube, args.dry_run)
    err = sys.stderr
    mode = " --delete-untagged" if args.delete_untagged else ""

    if args.dry_run:
        err.write(f"gc {args.stack}: garbage-collect --dry-run{mode} (the registry stays writable)\n")
        succeeded, logs = run_job(target, kube, True, args.delete_untagged, args.timeout, [])
        sys.stdout.write(format_summary(gc_job.parse_summary(logs), dry_run=True))
        return 0 if succeeded else 1

    confirm(f"Switch stack {args.stack!r} read-only (pushes refused) for garbage-collect{mode}?", args.yes)
    started = read_only_at = time.monotonic()
    created: list[str] = []
    logs = ""
    failure: Optional[str] = None
    try:
        err.write(f"gc {args.stack}: 1/4 readOnly on (pulumi up), waiting for every replica\n")
        set_read_only(target, True, args.rollout_timeout)
        read_only_at = time.monotonic()
        err.write(f"gc {args.stack}: 2/4 garbage-collect{mode}\n")
        succeeded, logs = run_job(target, kube, False, args.delete_untagged, args.timeout, created)
        if not succeeded:
            failure = "the garbage-collect Job failed"
    except (OpsError, KeyboardInterrupt) as exc:
        failure = str(exc) or "interrupted"
    finally:
        restored = _finish(target, kube, created, args.rollout_timeout)
    if not restored:
        return 1
    summary = gc_job.parse_summary(logs)
    sys.stdout.write(format_summary(summary, dry_run=False))
    window = time.monotonic() - read_only_at if created else 0.0
    err.write(f"gc {args.stack}: done in {time.monotonic() - started:.0f}s ({window:.0f}s read-only after the switch)\n")
    if failure:
        raise OpsError(f"gc {args.stack}: {failure}; the registry is writable again")
    return 0


def _finish(target: Target, kube: Kubectl, created: list[str], rollout_timeout: int) -> bool:
    """Steps 3 and 4, whatever happened before: stop a Job still sweeping, FLUSHDB once the sweep may have
    deleted anything, and back to read-write. Returns False (after printing how to finish by hand)
    when that failed; the registry then stays read-only rather than writable beside a running sweep."""
    err, stack = sys.stderr, target.stack
    ok = True
    for name in created:
        try:
            if job_active(kube, name):
                err.write(f"gc {stack}: stopping job {name}, which is still running\n")
                stop_job(kube, name)
        except OpsError as exc:
            err.write(f"error: gc {stack}: job {name} may still be sweeping ({exc}); staying read-only. "
                      f"Delete it (kubectl delete job {name} -n {target.namespace} --wait), then: "
                      f"{read_only_recovery(stack)}\n")
            return False
    if created:
        err.write(f"gc {stack}: 3/4 FLUSHDB of Redis db {target.settings.redis.registry_db} (the registry's descriptors)\n")
        try:
            flush_registry_db(target, kube)
        except OpsError as exc:
            ok = False
            err.write(f"error: gc {stack}: {exc}; replicas may answer 200 for deleted blobs until you run: "
                      f"kubectl -n {target.namespace} exec deploy/{Names.for_redis().app} -c redis -- "
                      f"redis-cli -n {target.settings.redis.registry_db} FLUSHDB\n")
    err.write(f"gc {stack}: 4/4 readOnly off (pulumi up), waiting for every replica\n")
    for attempt in (1, 2):
        try:
            set_read_only(target, False, rollout_timeout)
            return ok
        except (OpsError, KeyboardInterrupt) as exc:
            err.write(f"error: gc {stack}: returning to read-write failed (attempt {attempt}): {exc}\n")
    err.write(f"error: gc {stack}: the registry still refuses pushes; finish by hand: {read_only_recovery(stack)}\n")
    return False


def gc_main(argv: Sequence[str]) -> int:
    return _run_main(_gc, argv)
