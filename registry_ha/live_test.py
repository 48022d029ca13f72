"""`scripts/test-registry-ha.sh`: prove that a live registry works.

    test-registry-ha.sh [--registry HOST:PORT] [--mirror HOST:PORT[=IMAGE] ...] [--metrics HOST:PORT ...]
                        [--namespace NS] [--selector LABELS] [--no-kubectl] [--timeout SECONDS]
                        [--username USER] [--password-stdin] [--tls-verify] [--ca-cert FILE]

A registry with authEnabled: REGISTRY_USERNAME and REGISTRY_PASSWORD (or --username and the
password on stdin with --password-stdin; never on the command line); the token realm the registry
names is asked for tokens with them. A push identity passes push and pull; only an admin deletes. With tlsSecretName:
--tls-verify (HTTPS only, certificate verified) and --ca-cert FILE or REGISTRY_CA_CERT for a
private CA. The password goes to skopeo in a 0600 temporary auth file and is never printed.

Checks, each printed as one `PASS|FAIL|SKIP <check> <detail>` line:
  v2          GET /v2/ answers (200, or 401 when the registry wants credentials)
  push        a small 3-layer OCI image built on disk, pushed with skopeo
  pull        pulled back with skopeo; manifest and layer digests equal what was pushed
  pods        (kubectl with a current context) every registry pod is Ready
  pod-pull    (kubectl) the image pulled once from each pod through `kubectl port-forward`
  metrics     each configured metrics address (--metrics, $REGISTRY_METRICS, and each pod's
              :5001 through the port-forward) serves Prometheus `registry_*` series
  mirror      (--mirror, one per cache) a small public image pulled twice through the cache (IMAGE,
              default --mirror-image, a Docker Hub image); the second pull is served from the
              cache (the repository is in the cache's catalog)
  delete      the pushed manifest deleted, and a GET of it answers 404 (SKIP when token auth says
              the identity may not delete: only admin identities may)
Exit 0 when nothing failed, 1 when a check failed, 2 on usage errors. A dead address fails
the `v2` check within --timeout seconds and the rest are not attempted.
"""
from __future__ import annotations

import argparse
import json
import os
import select
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Optional

from registry_ha import imagetools
from registry_ha.imagetools import UsageError

DEFAULT_PRIMARY = "registry.neural-hive.local:5000"
TEST_REPOSITORY = "registry-ha-smoke/test"
DEFAULT_MIRROR_IMAGE = "library/hello-world:latest"
POD_SELECTOR = "app.kubernetes.io/name=docker-registry"


class Report:
    def __init__(self, out=None):
        self.out = out or sys.stdout
        self.counts = {"PASS": 0, "FAIL": 0, "SKIP": 0}

    def line(self, status: str, check: str, detail: str) -> bool:
        self.counts[status] += 1
        self.out.write(f"{status}  {check:<10} {detail}\n")
        self.out.flush()
        return status != "FAIL"

    def passed(self, check, detail):
        return self.line("PASS", check, detail)

    def failed(self, check, detail):
        return self.line("FAIL", check, detail)

    def skipped(self, check, detail):
        return self.line("SKIP", check, detail)

    def summary(self) -> int:
        c = self.counts
        self.out.write(f"RESULT {'FAIL' if c['FAIL'] else 'PASS'}: {c['PASS']} passed, {c['FAIL']} failed, {c['SKIP']} skipped\n")
        return 1 if c["FAIL"] else 0


# --------------------------------------------------------------------------- checks


def check_pull(report: Report, check: str, address: str, reference: str, expected, work: Path, timeout: float,
               access: imagetools.RegistryAccess = imagetools.ANONYMOUS) -> bool:
    """Pull ADDRESS/REFERENCE into a fresh OCI layout and compare digests with `expected` (an OciImage)."""
    target = work / f"pull-{uuid.uuid4().hex[:8]}"
    with imagetools.skopeo_access(access, address) as opts:
        result = imagetools.skopeo_copy(f"docker://{address}/{reference}", f"oci:{target}:pulled", timeout=timeout,
                                        src_tls_verify=opts["tls_verify"], src_authfile=opts.get("authfile"),
                                        src_cert_dir=opts.get("cert_dir"))
    if not result.ok:
        return report.failed(check, f"skopeo pull of {address}/{reference} failed ({result.reason}): {result.detail}")
    digest, layers = imagetools.read_oci_layout(target, "pulled")
    shutil.rmtree(target, ignore_errors=True)
    if digest != expected.manifest_digest:
        return report.failed(check, f"{address}: manifest digest {digest} != pushed {expected.manifest_digest}")
    if layers != expected.layer_digests:
        return report.failed(check, f"{address}: layer digests differ from what was pushed")
    return report.passed(check, f"{address}: manifest {digest[:19]}... and {len(layers)} layers match ({result.seconds:.2f}s)")


def check_metrics(report: Report, address: str, timeout: float, label: Optional[str] = None) -> bool:
    url = f"http://{address}/metrics"
    try:
        status, _, body = imagetools.http_request(url, timeout=timeout)
    except OSError as exc:
        reason, detail = imagetools._classify_exception(exc)
        return report.failed("metrics", f"{label or url}: {reason} ({detail})")
    text = body.decode(errors="replace")
    series = sorted({line.split("{")[0].split(" ")[0] for line in text.splitlines()
                     if line.startswith("registry_")})
    if status != 200 or not series:
        return report.failed("metrics", f"{label or url}: answered {status} without registry_* series")
    return report.passed("metrics", f"{label or url}: {len(series)} registry_* series (e.g. {series[0]})")


def check_mirror(report: Report, mirror: str, image: str, work: Path, timeout: float) -> None:
    probe = imagetools.probe_v2(mirror, timeout=min(timeout, 5.0))
    if not probe.ok:
        report.failed("mirror", f"{mirror}: {probe.reason} ({probe.detail})")
        return
    repository = image.rsplit(":", 1)[0] if ":" in image.split("/")[-1] else image
    times = []
    digests = []
    for attempt in (1, 2):
        target = work / f"mirror-{attempt}"
        result = imagetools.skopeo_copy(f"docker://{mirror}/{image}", f"oci:{target}:m", timeout=timeout * 20)
        if not result.ok:
            report.failed("mirror", f"pull {attempt} of {mirror}/{image} failed ({result.reason}): {result.detail}")
            return
        times.append(result.seconds)
        digests.append(imagetools.read_oci_layout(target, "m")[0])
        if attempt == 1:
            # The cache commits the blobs a few ms after the client has the last byte.
            cached = _wait_for_catalog(mirror, repository, timeout=3.0, scheme=probe.scheme)
    if digests[0] != digests[1]:
        report.failed("mirror", f"the two pulls of {image} gave different manifests ({digests[0]} / {digests[1]})")
        return
    if not cached:
        report.failed("mirror", f"{repository} is not in {mirror}'s catalog after a pull: the cache did not store it")
        return
    report.passed("mirror", f"{mirror}/{image}: pull 1 {times[0]:.2f}s, pull 2 {times[1]:.2f}s served from the cache "
                            f"({repository} in its catalog, same digest {digests[0][:19]}...)")


def _wait_for_catalog(address: str, repository: str, timeout: float, scheme: str = "http") -> bool:
    deadline = time.monotonic() + timeout
    while True:
        try:
            status, _, body = imagetools.http_request(f"{scheme}://{address}/v2/_catalog?n=1000", timeout=5)
            if status == 200 and repository in json.loads(body or b"{}").get("repositories", []):
                return True
        except (OSError, ValueError):
            pass
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)


def delete_manifest(report: Report, address: str, digest: str, scheme: str, timeout: float,
                    access: imagetools.RegistryAccess = imagetools.ANONYMOUS) -> None:
    url = f"{scheme}://{address}/v2/{TEST_REPOSITORY}/manifests/{digest}"
    try:
        status, headers, body = imagetools.http_request(url, "DELETE", timeout=timeout, access=access)
        challenge = imagetools.bearer_challenge(headers) if status == 401 else None
        if challenge and challenge.get("error") == "insufficient_scope":
            # token auth: only an admin identity may delete; a push identity (CI) may not, by design
            who = access.username or "an anonymous client"
            report.skipped("delete", f"{who} may not delete (401 insufficient_scope): {TEST_REPOSITORY}@{digest[:19]}... "
                                     "stays; run as an admin identity to clean up")
            return
        if status not in (200, 202):
            hint = " (deletion is disabled: storage.delete.enabled)" if status == 405 else ""
            report.failed("delete", f"DELETE {TEST_REPOSITORY}@{digest[:19]}... answered {status}{hint}")
            return
        after, _ = imagetools.manifest_digest(address, TEST_REPOSITORY, digest, scheme, timeout, access=access)
    except OSError as exc:
        report.failed("delete", f"{address}: {imagetools._classify_exception(exc)[1]}")
        return
    if after != 404:
        report.failed("delete", f"DELETE answered {status} but the manifest still answers {after}")
        return
    report.passed("delete", f"{TEST_REPOSITORY}@{digest[:19]}... deleted (now 404; blobs go with garbage-collect)")


# --------------------------------------------------------------------------- kubectl


def kubectl_context(kubectl: Optional[str]) -> Optional[str]:
    if kubectl is None:
        return None
    proc = subprocess.run([kubectl, "config", "current-context"], capture_output=True, text=True, timeout=10)
    return proc.stdout.strip() if proc.returncode == 0 and proc.stdout.strip() else None


def _port_forward(kubectl: str, namespace: str, pod: str, ports: list[int], timeout: float):
    """Start `kubectl port-forward` on random local ports; returns (process, {remote: local})."""
    proc = subprocess.Popen(
        [kubectl, "port-forward", "-n", namespace, f"pod/{pod}", *[f":{p}" for p in ports]],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
    )
    mapping: dict[int, int] = {}
    deadline = time.monotonic() + timeout
    buffer = ""
    fd = proc.stdout.fileno()  # raw reads: a buffered readline would hide lines from select()
    while len(mapping) < len(ports) and time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.2)
        if not ready:
            if proc.poll() is not None:
                break
            continue
        chunk = os.read(fd, 4096)
        if not chunk:
            break
        buffer += chunk.decode(errors="replace")
        for line in buffer.splitlines():
            # "Forwarding from 127.0.0.1:41235 -> 5000"
            if line.startswith("Forwarding from 127.0.0.1:") and "->" in line:
                local, remote = line[len("Forwarding from 127.0.0.1:"):].split("->")
                mapping[int(remote.strip())] = int(local.strip())
    if len(mapping) < len(ports):
        stop(proc)
        raise RuntimeError(buffer.strip().splitlines()[-1] if buffer.strip() else "no Forwarding line")
    return proc, mapping


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if proc.stdout is not None:
        proc.stdout.close()


def check_kubernetes(report: Report, args, image, work: Path) -> None:
    kubectl = shutil.which("kubectl")
    if args.no_kubectl or kubectl is None:
        report.skipped("pods", "kubectl not used" if args.no_kubectl else "kubectl is not installed")
        return
    context = kubectl_context(kubectl)
    if context is None:
        report.skipped("pods", "kubectl has no current context")
        return
    proc = subprocess.run([kubectl, "get", "pods", "-n", args.namespace, "-l", args.selector, "-o", "json"],
                          capture_output=True, text=True, timeout=30)
    if proc.returncode != 0:
        report.failed("pods", f"kubectl get pods -n {args.namespace} failed: {proc.stderr.strip()[-200:]}")
        return
    pods = json.loads(proc.stdout).get("items", [])
    if not pods:
        report.failed("pods", f"no pods match {args.selector} in namespace {args.namespace} (context {context})")
        return
    not_ready = []
    for pod in pods:
        conditions = {c.get("type"): c.get("status") for c in pod.get("status", {}).get("conditions", [])}
        if conditions.get("Ready") != "True":
            not_ready.append(pod["metadata"]["name"])
    if not_ready:
        report.failed("pods", f"{len(not_ready)}/{len(pods)} not Ready: {', '.join(not_ready)}")
    else:
        report.passed("pods", f"{len(pods)}/{len(pods)} Ready in {args.namespace} (context {context})")
    if image is None:
        return
    for pod in pods:
        name = pod["metadata"]["name"]
        try:
            forward, ports = _port_forward(kubectl, args.namespace, name, [5000, 5001], timeout=args.timeout * 3)
        except RuntimeError as exc:
            report.failed("pod-pull", f"{name}: kubectl port-forward failed: {exc}")
            continue
        try:
            # through the tunnel the address is 127.0.0.1, not a name the certificate carries: the
            # credentials still apply, certificate verification cannot
            check_pull(report, "pod-pull", f"127.0.0.1:{ports[5000]}", f"{TEST_REPOSITORY}@{image.manifest_digest}",
                       image, work, args.timeout * 20, args.access.without_tls_verify())
            check_metrics(report, f"127.0.0.1:{ports[5001]}", args.timeout, label=f"{name}:5001/metrics")
        finally:
            stop(forward)


# --------------------------------------------------------------------------- main


def parse_args(argv: list[str]):
    parser = argparse.ArgumentParser(prog="test-registry-ha.sh", description="Prove that a live registry works.")
    parser.add_argument("--registry", help="HOST:PORT to test (default: $REGISTRY_PRIMARY, else registry.neural-hive.local:5000)")
    parser.add_argument("--mirror", action="append", default=[], metavar="HOST:PORT[=IMAGE]",
                        help="a cache to test, and the image to pull through it (repeatable; ghcr.io's cache: =ORG/IMAGE:TAG)")
    parser.add_argument("--mirror-image", default=DEFAULT_MIRROR_IMAGE, help=f"image pulled through a cache given without one (default {DEFAULT_MIRROR_IMAGE})")
    parser.add_argument("--metrics", action="append", default=[], help="HOST:PORT serving /metrics (repeatable; also $REGISTRY_METRICS, comma-separated)")
    parser.add_argument("--namespace", default="registry")
    parser.add_argument("--selector", default=POD_SELECTOR)
    parser.add_argument("--no-kubectl", action="store_true", help="skip the Kubernetes checks")
    parser.add_argument("--timeout", type=float, default=3.0, help="connect timeout in seconds (default 3)")
    imagetools.add_access_arguments(parser)
    args = parser.parse_args(argv)
    if args.registry is None:
        args.registry = os.environ.get("REGISTRY_PRIMARY") or DEFAULT_PRIMARY
        source = "REGISTRY_PRIMARY"
    else:
        source = "--registry"
    imagetools.parse_host_port(args.registry, source)
    mirrors = []
    for value in args.mirror:
        mirror, _, image = value.partition("=")
        imagetools.parse_host_port(mirror, "--mirror")
        mirrors.append((mirror, image or args.mirror_image))
    args.mirror = mirrors
    env_metrics = [m.strip() for m in os.environ.get("REGISTRY_METRICS", "").split(",") if m.strip()]
    for value in env_metrics:
        imagetools.parse_host_port(value, "REGISTRY_METRICS")
    for value in args.metrics:
        imagetools.parse_host_port(value, "--metrics")
    args.metrics = args.metrics + env_metrics
    if not 0 < args.timeout <= 60:
        raise UsageError("--timeout: seconds, more than 0 and at most 60")
    args.access = imagetools.access_from_args(args, os.environ)
    return args


def run(args, report: Report) -> int:
    address = args.registry
    access = args.access
    report.out.write(f"testing {address} ({access.describe()})\n")
    probe = imagetools.probe_v2(address, timeout=args.timeout, access=access)
    if not probe.ok:
        report.failed("v2", f"{address}: {probe.reason} ({probe.detail}, {probe.seconds:.1f}s); other checks not run")
        return report.summary()
    report.passed("v2", f"{probe.detail} in {probe.seconds:.2f}s")
    if imagetools.skopeo_binary() is None:
        report.failed("push", "skopeo is not installed (apt-get install skopeo)")
        return report.summary()

    work = Path(tempfile.mkdtemp(prefix="registry-ha-test-"))
    pushed = None
    try:
        tag = f"t-{time.strftime('%Y%m%d%H%M%S')}-{uuid.uuid4().hex[:6]}"
        image = imagetools.build_oci_layout(work / "image", tag)
        with imagetools.skopeo_access(access, address) as opts:
            result = imagetools.skopeo_copy(image.reference, f"docker://{address}/{TEST_REPOSITORY}:{tag}",
                                            timeout=args.timeout * 40, dest_tls_verify=opts["tls_verify"],
                                            dest_authfile=opts.get("authfile"), dest_cert_dir=opts.get("cert_dir"))
        if result.ok:
            pushed = image
            report.passed("push", f"{TEST_REPOSITORY}:{tag} ({len(image.layer_digests)} layers) in {result.seconds:.2f}s")
            check_pull(report, "pull", address, f"{TEST_REPOSITORY}:{tag}", image, work, args.timeout * 40, access)
        else:
            report.failed("push", f"{TEST_REPOSITORY}:{tag} failed ({result.reason}): {result.detail}")

        check_kubernetes(report, args, pushed, work)
        if args.metrics:
            for metrics in args.metrics:
                check_metrics(report, metrics, args.timeout)
        else:
            report.skipped("metrics", "no metrics address configured (--metrics or REGISTRY_METRICS)")
        for mirror, mirror_image in args.mirror:
            check_mirror(report, mirror, mirror_image, work, args.timeout)
        if not args.mirror:
            report.skipped("mirror", "no --mirror given")
    finally:
        if pushed is not None:
            delete_manifest(report, address, pushed.manifest_digest, probe.scheme, max(args.timeout, 10), access)
        shutil.rmtree(work, ignore_errors=True)
    return report.summary()


def main(argv: Optional[list[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = parse_args(argv)
    except UsageError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 2
    try:
        return run(args, Report())
    except KeyboardInterrupt:
        sys.stderr.write("error: interrupted\n")
        return 130


if __name__ == "__main__":
    sys.exit(main())
