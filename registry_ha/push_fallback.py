"""`scripts/push-with-fallback.sh SOURCE NAME:TAG`: the primary registry, then the secondary, then ECR.

Tries, in order, and stops at the first that takes the image:
  1. primary    $REGISTRY_PRIMARY    (default registry.neural-hive.local:5000, the LoadBalancer)
  2. secondary  $REGISTRY_SECONDARY  (default 37.60.241.150:30500, the NodePort)
  3. ECR        in $AWS_REGION       (default us-east-1): boto3 `get_authorization_token`, the
                repository created when missing, then the push with that token

Each registry is probed first (GET /v2/, --timeout seconds) so a dead address is skipped in
seconds, not after skopeo's retries; the skip reason (refused, timeout, dns, auth, http-5xx)
is printed. Exit 0 when one target took the image, 1 when all failed, 2 on bad arguments.

SOURCE: an image in the local Docker daemon (exported once with `docker save`), an OCI layout
directory, an OCI or docker archive file, or any skopeo reference (oci:DIR:TAG, docker-daemon:IMG).
The pushes use skopeo, so they need no daemon-side insecure-registries entry and no credentials
written to ~/.docker/config.json (the ECR token goes to a 0600 temporary auth file).

Registries with authEnabled / tlsSecretName (the primary and the secondary are the same registry,
so one set applies to both; ECR uses its own token): REGISTRY_USERNAME and REGISTRY_PASSWORD (or
--username and --password-stdin; a password is never taken from the command line), --tls-verify and
--ca-cert FILE / REGISTRY_CA_CERT. The password reaches skopeo only in a 0600 temporary auth file.

Test hooks (not for production use):
  AWS_ENDPOINT_URL_ECR     boto3's standard per-service endpoint override (moto in the tests)
  REGISTRY_HA_ECR_REGISTRY HOST:PORT pushed to instead of the token's proxyEndpoint, over plain
                           http / without TLS verification (a local registry with basic auth)
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Optional
from urllib.parse import urlparse

from registry_ha import imagetools
from registry_ha.imagetools import UsageError
from registry_ha.settings import is_region

DEFAULT_PRIMARY = "registry.neural-hive.local:5000"
DEFAULT_SECONDARY = "37.60.241.150:30500"
DEFAULT_REGION = "us-east-1"
TRANSPORTS = ("oci:", "oci-archive:", "docker-archive:", "docker-daemon:", "dir:", "docker://", "containers-storage:")


@dataclass
class Attempt:
    target: str
    address: str
    ok: bool
    reason: str
    detail: str


def log(message: str) -> None:
    sys.stderr.write(message + "\n")
    sys.stderr.flush()


def env_address(name: str, default: str) -> str:
    value = os.environ.get(name) or default
    imagetools.parse_host_port(value, name)
    return value


def resolve_source(source: str, work: Path) -> str:
    """A skopeo source reference for SOURCE."""
    if source.startswith(TRANSPORTS):
        return source
    path = Path(source)
    if path.is_dir():
        if (path / "oci-layout").is_file():
            return f"oci:{path.resolve()}"
        raise UsageError(f"SOURCE {source}: a directory but not an OCI image layout (no oci-layout file)")
    if path.is_file():
        try:
            with tarfile.open(path) as tar:
                names = set(tar.getnames())
        except tarfile.TarError:
            raise UsageError(f"SOURCE {source}: a file but not a tar archive") from None
        if "oci-layout" in names or "./oci-layout" in names:
            return f"oci-archive:{path.resolve()}"
        if "manifest.json" in names:
            return f"docker-archive:{path.resolve()}"
        raise UsageError(f"SOURCE {source}: a tar archive with neither oci-layout nor manifest.json")
    # Otherwise an image in the local Docker daemon, exported once for all the attempts.
    docker = shutil.which("docker")
    if docker is None:
        raise UsageError(f"SOURCE {source}: no such file, and the docker CLI is not installed")
    inspect = subprocess.run([docker, "image", "inspect", source], capture_output=True, text=True, timeout=60)
    if inspect.returncode != 0:
        detail = (inspect.stderr.strip().splitlines() or ["not found"])[-1]
        raise UsageError(f"SOURCE {source}: not a file and not an image in the local Docker daemon ({detail})")
    archive = work / "source.tar"
    save = subprocess.run([docker, "save", "-o", str(archive), source], capture_output=True, text=True, timeout=600)
    if save.returncode != 0:
        raise UsageError(f"SOURCE {source}: docker save failed ({save.stderr.strip()[-200:]})")
    return f"docker-archive:{archive}"


def push_registry(label: str, address: str, source: str, name: str, tag: str, timeout: float,
                  access: imagetools.RegistryAccess = imagetools.ANONYMOUS) -> Attempt:
    probe = imagetools.probe_v2(address, timeout=timeout, access=access)
    if not probe.ok:
        return Attempt(label, address, False, probe.reason, probe.detail)
    tls = probe.scheme == "https"
    with imagetools.skopeo_access(access, address) as opts:
        result = imagetools.skopeo_copy(source, f"docker://{address}/{name}:{tag}", dest_tls_verify=opts["tls_verify"],
                                        dest_authfile=opts.get("authfile"), dest_cert_dir=opts.get("cert_dir"),
                                        timeout=timeout * 100)
    if not result.ok:
        return Attempt(label, address, False, result.reason, result.detail)
    return Attempt(label, address, True, "ok", f"{'https' if tls else 'http'} push in {result.seconds:.1f}s")


def push_ecr(source: str, name: str, tag: str, region: str, timeout: float) -> Attempt:
    import boto3
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError, NoCredentialsError

    label = "ecr"
    address = f"ECR {region}"
    config = Config(connect_timeout=timeout, read_timeout=max(timeout, 30), retries={"max_attempts": 2})
    try:
        ecr = boto3.client("ecr", region_name=region, config=config)
        try:
            ecr.describe_repositories(repositoryNames=[name])
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "RepositoryNotFoundException":
                raise
            ecr.create_repository(repositoryName=name, imageScanningConfiguration={"scanOnPush": True})
            log(f"ecr       created repository {name} in {region}")
        data = ecr.get_authorization_token()["authorizationData"][0]
    except NoCredentialsError:
        return Attempt(label, address, False, "auth", "no AWS credentials (AWS_PROFILE or AWS_ACCESS_KEY_ID/...)")
    except EndpointConnectionError as exc:
        return Attempt(label, address, False, "refused", f"cannot reach the ECR API ({exc})")
    except ClientError as exc:
        error = exc.response.get("Error", {})
        code = error.get("Code", "error")
        reason = "auth" if code in ("AccessDeniedException", "UnrecognizedClientException", "InvalidSignatureException",
                                    "ExpiredTokenException") else "error"
        return Attempt(label, address, False, reason, f"{code}: {error.get('Message', '')}"[:200])
    except BotoCoreError as exc:
        reason = "timeout" if "timeout" in str(exc).lower() else "error"
        return Attempt(label, address, False, reason, str(exc)[:200])

    override = os.environ.get("REGISTRY_HA_ECR_REGISTRY")  # validated in parse_args
    if override:
        host, tls_verify = override, False
    else:
        host, tls_verify = urlparse(data["proxyEndpoint"]).netloc, True
    address = host
    fd, authfile = tempfile.mkstemp(prefix="ecr-auth-", suffix=".json")
    try:
        with os.fdopen(fd, "w") as fh:  # mkstemp: mode 0600; the token never reaches argv or output
            json.dump({"auths": {host: {"auth": data["authorizationToken"]}}}, fh)
        result = imagetools.skopeo_copy(source, f"docker://{host}/{name}:{tag}", dest_tls_verify=tls_verify,
                                        dest_authfile=authfile, timeout=timeout * 100)
    finally:
        os.unlink(authfile)
    if not result.ok:
        return Attempt(label, address, False, result.reason, result.detail)
    return Attempt(label, address, True, "ok", f"push in {result.seconds:.1f}s")


def parse_args(argv: list[str]):
    parser = argparse.ArgumentParser(
        prog="push-with-fallback.sh",
        description="Push to REGISTRY_PRIMARY, else REGISTRY_SECONDARY, else ECR in AWS_REGION.",
    )
    parser.add_argument("source", metavar="SOURCE", help="Docker daemon image, OCI layout dir, archive, or skopeo reference")
    parser.add_argument("image", metavar="NAME:TAG", help="where to push, without a registry host (team/app:1.0)")
    parser.add_argument("--timeout", type=float, default=5.0, help="connect timeout per registry in seconds (default 5)")
    parser.add_argument("--no-ecr", action="store_true", help="stop after the two cluster registries")
    imagetools.add_access_arguments(parser)
    args = parser.parse_args(argv)
    args.name, args.tag = imagetools.parse_name_tag(args.image)
    args.primary = env_address("REGISTRY_PRIMARY", DEFAULT_PRIMARY)
    args.secondary = env_address("REGISTRY_SECONDARY", DEFAULT_SECONDARY)
    args.region = os.environ.get("AWS_REGION") or DEFAULT_REGION
    if not is_region(args.region):
        raise UsageError(f"AWS_REGION: an AWS region such as us-east-1 (got {args.region!r})")
    if os.environ.get("REGISTRY_HA_ECR_REGISTRY"):
        imagetools.parse_host_port(os.environ["REGISTRY_HA_ECR_REGISTRY"], "REGISTRY_HA_ECR_REGISTRY")
    if not 0 < args.timeout <= 120:
        raise UsageError("--timeout: seconds, more than 0 and at most 120")
    args.access = imagetools.access_from_args(args, os.environ)
    return args


def run(args) -> int:
    if imagetools.skopeo_binary() is None:
        log("error: skopeo is not installed; apt-get install skopeo")
        return 1
    work = Path(tempfile.mkdtemp(prefix="push-fallback-"))
    attempts: list[Attempt] = []
    try:
        try:
            source = resolve_source(args.source, work)
        except UsageError as exc:
            log(f"error: {exc}")
            return 2
        for label, address in (("primary", args.primary), ("secondary", args.secondary)):
            attempt = push_registry(label, address, source, args.name, args.tag, args.timeout, args.access)
            attempts.append(attempt)
            if attempt.ok:
                break
            log(f"{label:<9} {address}: skipped ({attempt.reason}: {attempt.detail})")
        else:
            if args.no_ecr:
                attempts.append(Attempt("ecr", f"ECR {args.region}", False, "disabled", "--no-ecr"))
            else:
                attempt = push_ecr(source, args.name, args.tag, args.region, args.timeout)
                attempts.append(attempt)
                if not attempt.ok:
                    log(f"ecr       {attempt.address}: failed ({attempt.reason}: {attempt.detail})")
    finally:
        shutil.rmtree(work, ignore_errors=True)

    skipped = "; ".join(f"{a.target} {a.address} skipped: {a.reason}" for a in attempts if not a.ok)
    final = attempts[-1]
    if final.ok:
        print(f"pushed {args.name}:{args.tag} to {final.target} {final.address}/{args.name}:{args.tag} "
              f"({final.detail}){'; ' + skipped if skipped else ''}")
        return 0
    print(f"FAILED: {args.name}:{args.tag} was not pushed anywhere ({skipped})")
    return 1


def main(argv: Optional[list[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = parse_args(argv)
    except UsageError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 2
    try:
        return run(args)
    except KeyboardInterrupt:
        log("error: interrupted")
        return 130


if __name__ == "__main__":
    sys.exit(main())
