"""Small pieces shared by test-registry-ha.sh and push-with-fallback.sh.

- `parse_host_port`: validate HOST:PORT (REGISTRY_PRIMARY, --registry, ...), one-line errors.
- `probe_v2`: GET /v2/ with a short timeout, and a one-word reason when it fails
  (refused, timeout, dns, tls, auth, http-<code>), so callers can say why they skipped a target.
- `build_oci_layout`: a small multi-layer OCI image written on disk (no Docker daemon needed);
  `python -m registry_ha.imagetools oci-layout DIR [--tag TAG]` from a shell.
- `skopeo`: the real client, `--insecure-policy`, with its failures classified the same way.
- `RegistryAccess`: credentials and TLS trust for a registry with `authEnabled` / `tlsSecretName`,
  read from REGISTRY_USERNAME / REGISTRY_PASSWORD (or --password-stdin) and --tls-verify / --ca-cert.
  The password never reaches argv, output or logs: skopeo gets it in a 0600 temporary auth file.
- `http_request`: with `access`, the registry token flow (a 401 with a `Bearer realm=...` challenge:
  ask the realm for a token with the credentials, then repeat the request with it), or plain basic auth.

Only the standard library and skopeo: these run on operator machines and in CI.
"""
from __future__ import annotations

import base64
import contextlib
import gzip
import hashlib
import http.client
import io
import ipaddress
import json
import os
import re
import shutil
import socket
import ssl
import subprocess
import tarfile
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Mapping, Optional

_LABEL = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")
_REPO = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$")
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")

MANIFEST_ACCEPT = ", ".join([
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
])


class UsageError(ValueError):
    """A bad argument or environment value; the message is one line naming what is allowed."""


def parse_host_port(value: str, name: str) -> tuple[str, int]:
    """`host:port`, `1.2.3.4:port` or `[v6]:port`; the port is required."""
    allowed = f"{name}: HOST:PORT such as registry.neural-hive.local:5000 (got {value!r})"
    if not value or "/" in value or "://" in value:
        raise UsageError(allowed)
    if value.startswith("["):
        host, sep, port = value[1:].partition("]:")
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise UsageError(allowed) from None
    else:
        host, sep, port = value.rpartition(":")
        if not sep or not host:
            raise UsageError(allowed)
        try:
            ipaddress.IPv4Address(host)
        except ValueError:
            labels = host.split(".")
            if len(host) > 253 or not all(_LABEL.match(label) for label in labels):
                raise UsageError(allowed) from None
    if not sep or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise UsageError(allowed)
    return host, int(port)


def parse_name_tag(value: str) -> tuple[str, str]:
    """`repo/name:tag` (a tag is required; no registry host in it)."""
    name, sep, tag = value.rpartition(":")
    if not sep or not _REPO.match(name) or not _TAG.match(tag):
        raise UsageError(f"NAME:TAG such as team/app:1.2.3, lowercase repository path (got {value!r})")
    return name, tag


# --------------------------------------------------------------------------- credentials and TLS trust


@dataclass(frozen=True)
class RegistryAccess:
    """How to reach a registry: basic-auth credentials (optional) and TLS verification (optional)."""

    username: Optional[str] = None
    password: Optional[str] = field(default=None, repr=False)  # never printed
    tls_verify: bool = False  # True: HTTPS only, certificate verified (against ca_cert, else the system store)
    ca_cert: Optional[str] = None

    @property
    def has_credentials(self) -> bool:
        return self.username is not None

    def authorization(self) -> Optional[str]:
        if not self.has_credentials:
            return None
        token = base64.b64encode(f"{self.username}:{self.password}".encode()).decode()
        return f"Basic {token}"

    def ssl_context(self) -> ssl.SSLContext:
        if self.tls_verify:
            return ssl.create_default_context(cafile=self.ca_cert)
        return ssl._create_unverified_context()  # internal registries without a trusted certificate

    def without_tls_verify(self) -> "RegistryAccess":
        return RegistryAccess(self.username, self.password, False, None)

    def describe(self) -> str:
        parts = [f"user {self.username}" if self.has_credentials else "anonymous"]
        if self.tls_verify:
            parts.append(f"TLS verified against {self.ca_cert}" if self.ca_cert else "TLS verified (system CAs)")
        return ", ".join(parts)


ANONYMOUS = RegistryAccess()


def access_from(environ: Mapping[str, str], username: Optional[str] = None, password_stdin: Optional[str] = None,
                tls_verify: bool = False, ca_cert: Optional[str] = None) -> RegistryAccess:
    """Credentials from --username / REGISTRY_USERNAME and REGISTRY_PASSWORD or --password-stdin (a
    password is never accepted on the command line: argv is visible in `ps` and shell history), and TLS
    trust from --tls-verify / --ca-cert / REGISTRY_CA_CERT. One-line UsageError naming what is wrong."""
    username = username if username is not None else (environ.get("REGISTRY_USERNAME") or None)
    password = password_stdin if password_stdin is not None else environ.get("REGISTRY_PASSWORD")
    if username is not None:
        if not username or ":" in username or any(c.isspace() for c in username):
            raise UsageError(f"REGISTRY_USERNAME/--username: a user name without ':' or spaces (got {username!r})")
        if not password:
            raise UsageError("REGISTRY_PASSWORD: required with a user name (or pipe it to --password-stdin)")
    elif password:
        raise UsageError("REGISTRY_USERNAME/--username: required when a password is given")
    ca_cert = ca_cert or environ.get("REGISTRY_CA_CERT") or None
    if ca_cert is not None:
        path = Path(ca_cert)
        if not path.is_file():
            raise UsageError(f"--ca-cert/REGISTRY_CA_CERT: a PEM CA certificate file (got {ca_cert!r}: no such file)")
        try:
            ssl.create_default_context(cafile=str(path))
        except (ssl.SSLError, ValueError):
            raise UsageError(f"--ca-cert/REGISTRY_CA_CERT: a PEM CA certificate file (got {ca_cert!r}: not PEM certificates)") from None
        ca_cert, tls_verify = str(path.resolve()), True
    return RegistryAccess(username, password if username is not None else None, tls_verify, ca_cert)


def add_access_arguments(parser) -> None:
    """The command-line half of `access_from`, shared by both scripts."""
    parser.add_argument("--username", help="registry user (default $REGISTRY_USERNAME); the password comes from "
                        "$REGISTRY_PASSWORD or --password-stdin, never from the command line")
    parser.add_argument("--password-stdin", action="store_true", help="read the registry password from stdin")
    parser.add_argument("--tls-verify", action="store_true",
                        help="HTTPS only, with the certificate verified (system CAs, or --ca-cert)")
    parser.add_argument("--ca-cert", help="PEM CA certificate to verify the registry with (implies --tls-verify; "
                        "default $REGISTRY_CA_CERT)")


def access_from_args(args, environ: Mapping[str, str], stdin=None) -> RegistryAccess:
    password = None
    if args.password_stdin:
        import sys

        password = (stdin or sys.stdin).readline().rstrip("\r\n")
    return access_from(environ, args.username, password, args.tls_verify, args.ca_cert)


@contextlib.contextmanager
def skopeo_access(access: RegistryAccess, address: str) -> Iterator[dict]:
    """skopeo arguments for `access` towards ADDRESS, as keyword arguments of `skopeo_copy` for one side
    ("authfile", "cert_dir"): a 0600 auth file and a directory holding only the CA, removed afterwards."""
    work = Path(tempfile.mkdtemp(prefix="registry-access-"))  # 0700
    try:
        options: dict = {}
        if access.has_credentials:
            authfile = work / "auth.json"
            fd = os.open(authfile, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as fh:
                token = base64.b64encode(f"{access.username}:{access.password}".encode()).decode()
                json.dump({"auths": {address: {"auth": token}}}, fh)
            options["authfile"] = str(authfile)
        if access.ca_cert:
            # skopeo reads every *.crt of --cert-dir as a CA (and *.cert/*.key as a client pair)
            cert_dir = work / "certs"
            cert_dir.mkdir()
            shutil.copyfile(access.ca_cert, cert_dir / "ca.crt")
            options["cert_dir"] = str(cert_dir)
        options["tls_verify"] = access.tls_verify
        yield options
    finally:
        shutil.rmtree(work, ignore_errors=True)


# --------------------------------------------------------------------------- HTTP


@dataclass
class Probe:
    ok: bool
    reason: str  # "ok", "auth", "refused", "timeout", "dns", "tls", "http-<code>", "error"
    detail: str
    scheme: str = "http"
    status: Optional[int] = None
    seconds: float = 0.0


def _classify_exception(exc: BaseException) -> tuple[str, str]:
    inner = getattr(exc, "reason", exc)
    text = str(inner)
    if isinstance(inner, (socket.timeout, TimeoutError)) or "timed out" in text:
        return "timeout", "no answer before the timeout"
    if isinstance(inner, ConnectionRefusedError) or "refused" in text:
        return "refused", "connection refused"
    if isinstance(inner, socket.gaierror) or "Name or service not known" in text or "nodename nor servname" in text:
        return "dns", f"the name does not resolve ({text})"
    if isinstance(inner, ssl.SSLError):
        return "tls", f"TLS error ({text})"
    if isinstance(inner, (ConnectionResetError, BrokenPipeError)):
        return "refused", "connection reset"
    return "error", text or type(inner).__name__


def _send(url: str, method: str, headers: dict, timeout: float, data: Optional[bytes],
          access: RegistryAccess) -> tuple[int, dict, bytes]:
    request = urllib.request.Request(url, method=method, headers=headers, data=data)
    context = access.ssl_context() if url.startswith("https") else None
    try:
        with urllib.request.urlopen(request, timeout=timeout, context=context) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers or {}), exc.read() if exc.fp else b""


_CHALLENGE_PARAM = re.compile(r'(\w+)="([^"]*)"')


def bearer_challenge(headers: Mapping[str, str]) -> Optional[dict[str, str]]:
    """The parameters of a `WWW-Authenticate: Bearer realm="...",service="...",scope="...",error="..."`
    answer (the registry token protocol), or None for any other challenge."""
    value = next((v for k, v in headers.items() if k.lower() == "www-authenticate"), "")
    if not value.lower().startswith("bearer "):
        return None
    return dict(_CHALLENGE_PARAM.findall(value))


def fetch_token(challenge: Mapping[str, str], access: RegistryAccess, timeout: float = 5.0) -> Optional[str]:
    """A token from the challenge's realm, for its service and scope, with `access`'s credentials (or
    anonymously); None when the realm refuses. TLS verification applies to the realm as to the registry,
    and with --tls-verify a plain-http realm is refused (the credentials would travel in clear)."""
    realm = challenge.get("realm", "")
    if not realm.startswith(("http://", "https://")) or (access.tls_verify and not realm.startswith("https://")):
        return None
    query = urllib.parse.urlencode({k: challenge[k] for k in ("service", "scope") if challenge.get(k)})
    headers = {"Authorization": access.authorization()} if access.has_credentials else {}
    status, _, body = _send(realm + ("?" + query if query else ""), "GET", headers, timeout, None, access)
    if status != 200:
        return None
    try:
        answer = json.loads(body)
    except ValueError:
        return None
    return answer.get("token") or answer.get("access_token")


def http_request(url: str, method: str = "GET", headers: Optional[dict] = None, timeout: float = 5.0,
                 data: Optional[bytes] = None, access: Optional[RegistryAccess] = None) -> tuple[int, dict, bytes]:
    """(status, headers, body); HTTP errors are answers, not exceptions. Network errors raise.
    With `access`: basic auth, or a token when the registry answers with a Bearer challenge (token
    auth); and its TLS verification for https URLs. A refusal stays the registry's own answer: its
    status, and its WWW-Authenticate (`error="insufficient_scope"` when the identity may not)."""
    headers = dict(headers or {})
    access = access or ANONYMOUS
    if access.has_credentials:
        headers["Authorization"] = access.authorization()
    status, response_headers, body = _send(url, method, headers, timeout, data, access)
    challenge = bearer_challenge(response_headers) if status == 401 else None
    if challenge is None or challenge.get("error"):  # an error: the token we could get would not do either
        return status, response_headers, body
    token = fetch_token(challenge, access, timeout)
    if token is None:
        return status, response_headers, body
    headers["Authorization"] = f"Bearer {token}"
    return _send(url, method, headers, timeout, data, access)


def plain_request(address: str, method: str, path: str, body: Optional[bytes] = None,
                  headers: Optional[dict] = None, timeout: float = 30.0) -> tuple[int, dict, bytes]:
    """(status, lower-cased headers, body) of one plain-HTTP request to HOST:PORT over http.client:
    no proxy from the environment, no redirects followed, no credentials (tests and benchmarks)."""
    host, _, port = address.rpartition(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        data = resp.read()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data
    finally:
        conn.close()


def probe_v2(address: str, timeout: float = 3.0, access: Optional[RegistryAccess] = None) -> Probe:
    """Does a registry answer at ADDRESS? Plain http first (the internal registry), then https; only
    https when `access.tls_verify` (no downgrade). The scheme is found anonymously, so credentials are
    never sent to the plain-http port of a TLS registry; then, with credentials, a 401 means rejected."""
    access = access or ANONYMOUS
    anonymous = RegistryAccess(tls_verify=access.tls_verify, ca_cert=access.ca_cert)
    start = time.monotonic()
    result = None
    for scheme in (("https",) if access.tls_verify else ("http", "https")):
        url = f"{scheme}://{address}/v2/"
        try:
            status, _, body = http_request(url, timeout=timeout, access=anonymous)
            if status in (200, 401) and access.has_credentials:
                status, _, body = http_request(url, timeout=timeout, access=access)
        except (urllib.error.URLError, OSError) as exc:
            reason, detail = _classify_exception(exc)
            result = Probe(False, reason, detail, scheme, seconds=time.monotonic() - start)
            if scheme == "http" and isinstance(getattr(exc, "reason", exc), (ConnectionResetError, http.client.RemoteDisconnected)):
                continue  # a TLS-only port (an auth proxy ending TLS) hangs up on plain HTTP
            if reason in ("refused", "timeout", "dns"):
                break  # the other scheme would fail the same way, only slower
            continue
        elapsed = time.monotonic() - start
        if status == 400 and b"HTTPS" in body.upper() and scheme == "http":
            continue  # "Client sent an HTTP request to an HTTPS server"
        if status == 200 and access.has_credentials:
            return Probe(True, "ok", f"{url} answered 200 ({access.describe()})", scheme, status, elapsed)
        if status == 200:
            return Probe(True, "ok", f"{url} answered 200", scheme, status, elapsed)
        if status == 401 and access.has_credentials:
            return Probe(False, "auth", f"{url} answered 401: the credentials of user {access.username} "
                         "were rejected", scheme, status, elapsed)
        if status == 401:
            return Probe(True, "auth", f"{url} answered 401 (credentials required)", scheme, status, elapsed)
        result = Probe(False, f"http-{status}", f"{url} answered {status}", scheme, status, elapsed)
        break
    assert result is not None
    return result


def manifest_digest(address: str, repository: str, reference: str, scheme: str = "http",
                    timeout: float = 10.0, auth: Optional[str] = None,
                    access: Optional[RegistryAccess] = None) -> tuple[int, Optional[str]]:
    headers = {"Accept": MANIFEST_ACCEPT}
    if auth:
        headers["Authorization"] = auth
    status, response_headers, body = http_request(
        f"{scheme}://{address}/v2/{repository}/manifests/{reference}", "GET", headers, timeout, access=access)
    lowered = {k.lower(): v for k, v in response_headers.items()}
    digest = lowered.get("docker-content-digest")
    if status == 200 and not digest:
        digest = "sha256:" + hashlib.sha256(body).hexdigest()
    return status, digest if status == 200 else None


# --------------------------------------------------------------------------- OCI image on disk


@dataclass
class OciImage:
    layout: Path
    tag: str
    manifest_digest: str
    layer_digests: list[str] = field(default_factory=list)
    config_digest: str = ""
    manifest: bytes = b""  # the manifest exactly as stored: a registry must serve these bytes back

    @property
    def reference(self) -> str:
        return f"oci:{self.layout}:{self.tag}"

    ref = reference

    @property
    def blob_digests(self) -> tuple[str, ...]:
        return (self.config_digest, *self.layer_digests)


def _payload(size: int, seed: Optional[bytes], index: int) -> bytes:
    """Incompressible content: random, or reproducible from `seed`."""
    if seed is None:
        return os.urandom(size)
    stream = bytearray()
    counter = 0
    while len(stream) < size:
        stream += hashlib.sha256(seed + b"/%d/%d" % (index, counter)).digest()
        counter += 1
    return bytes(stream[:size])


def _layer(name: str, payload: bytes) -> tuple[bytes, str]:
    """A gzip'd tar holding one file; returns (compressed, diff_id)."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo(name)
        info.size, info.mode, info.mtime = len(payload), 0o644, 0
        tar.addfile(info, io.BytesIO(payload))
    uncompressed = raw.getvalue()
    return gzip.compress(uncompressed, mtime=0), "sha256:" + hashlib.sha256(uncompressed).hexdigest()


def build_oci_layout(directory: Path, tag: str = "v1", layer_sizes: tuple[int, ...] = (16 * 1024, 256 * 1024, 1024 * 1024),
                     seed: Optional[bytes] = None) -> OciImage:
    """Write a multi-layer image as TAG into an OCI image layout (created, or extended with another tag).

    Layers hold random content, unique per call unless `seed` makes them reproducible."""
    directory = Path(directory)
    blobs = directory / "blobs" / "sha256"
    blobs.mkdir(parents=True, exist_ok=True)

    def put(data: bytes) -> str:
        digest = hashlib.sha256(data).hexdigest()
        (blobs / digest).write_bytes(data)
        return f"sha256:{digest}"

    layers, diff_ids = [], []
    for index, size in enumerate(layer_sizes):
        compressed, diff_id = _layer(f"data/layer-{index}.bin", _payload(size, seed, index))
        layers.append({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": put(compressed),
                       "size": len(compressed)})
        diff_ids.append(diff_id)
    config = json.dumps({
        "architecture": "amd64", "os": "linux",
        "config": {"Labels": {"org.opencontainers.image.title": "registry-ha test image"}},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }, sort_keys=True).encode()
    config_digest = put(config)
    manifest = json.dumps({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": len(config)},
        "layers": layers,
    }, sort_keys=True).encode()
    manifest_digest = put(manifest)
    (directory / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
    index_path = directory / "index.json"
    index = json.loads(index_path.read_text()) if index_path.exists() else {"schemaVersion": 2, "manifests": []}
    index["manifests"] = [m for m in index["manifests"]
                          if (m.get("annotations") or {}).get("org.opencontainers.image.ref.name") != tag]
    index["manifests"].append({"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": manifest_digest,
                               "size": len(manifest), "annotations": {"org.opencontainers.image.ref.name": tag}})
    index_path.write_text(json.dumps(index))
    return OciImage(directory, tag, manifest_digest, [l["digest"] for l in layers], config_digest, manifest)


def read_oci_layout(directory: Path, tag: str) -> tuple[str, list[str]]:
    """(manifest digest, layer digests) of TAG in an OCI layout that skopeo wrote."""
    directory = Path(directory)
    index = json.loads((directory / "index.json").read_text())
    for entry in index.get("manifests", []):
        if (entry.get("annotations") or {}).get("org.opencontainers.image.ref.name") == tag:
            digest = entry["digest"]
            manifest = json.loads((directory / "blobs" / "sha256" / digest.split(":", 1)[1]).read_text())
            return digest, [layer["digest"] for layer in manifest.get("layers", [])]
    raise FileNotFoundError(f"tag {tag} not in {directory}/index.json")


def push_plain(image: OciImage, address: str, repository: str, timeout: float = 30.0) -> None:
    """Push an OCI layout's image to a plain-HTTP, anonymous registry with the distribution API alone
    (blob uploads, then the manifest). For the sandbox's own use, where skopeo may be missing."""
    blobs = Path(image.layout) / "blobs" / "sha256"
    for digest in image.blob_digests:
        if plain_request(address, "HEAD", f"/v2/{repository}/blobs/{digest}", timeout=timeout)[0] == 200:
            continue
        status, headers, body = plain_request(address, "POST", f"/v2/{repository}/blobs/uploads/", timeout=timeout)
        if status != 202:
            raise OSError(f"POST blob upload to {address}/{repository}: HTTP {status} {body[:200]!r}")
        location = urllib.parse.urlsplit(headers["location"])
        query = f"{location.query}&digest={digest}" if location.query else f"digest={digest}"
        data = (blobs / digest.split(":", 1)[1]).read_bytes()
        status, _, body = plain_request(address, "PUT", f"{location.path}?{query}", body=data,
                                        headers={"Content-Type": "application/octet-stream"}, timeout=timeout)
        if status != 201:
            raise OSError(f"PUT blob {digest} to {address}/{repository}: HTTP {status} {body[:200]!r}")
    status, _, body = plain_request(address, "PUT", f"/v2/{repository}/manifests/{image.tag}", body=image.manifest,
                                    headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"},
                                    timeout=timeout)
    if status != 201:
        raise OSError(f"PUT manifest {repository}:{image.tag} to {address}: HTTP {status} {body[:200]!r}")


def main(argv: Optional[list[str]] = None) -> int:
    """`python -m registry_ha.imagetools oci-layout DIR [--tag TAG]`: a small image on disk to push."""
    import argparse
    import sys

    parser = argparse.ArgumentParser(prog="python -m registry_ha.imagetools",
                                     description="Write a small 3-layer OCI image into an OCI layout directory.")
    parser.add_argument("command", choices=("oci-layout",))
    parser.add_argument("directory", type=Path, help="the layout directory (created, or given another tag)")
    parser.add_argument("--tag", default="v1", help="the image's tag in the layout (default v1)")
    args = parser.parse_args(argv)
    if not _TAG.match(args.tag):
        parser.error(f"--tag: a tag of letters, digits, '_', '.', '-' (got {args.tag!r})")
    try:
        image = build_oci_layout(args.directory, args.tag)
    except OSError as exc:
        sys.stderr.write(f"error: cannot write {args.directory}: {exc.strerror or exc}\n")
        return 1
    print(image.reference)
    return 0


# --------------------------------------------------------------------------- skopeo


def skopeo_binary() -> Optional[str]:
    return shutil.which("skopeo")


@dataclass
class SkopeoResult:
    ok: bool
    reason: str
    detail: str
    seconds: float


def classify_skopeo_error(stderr: str) -> tuple[str, str]:
    text = stderr.strip()
    last = text.splitlines()[-1] if text else "no output"
    lowered = text.lower()
    if "unauthorized" in lowered or "authentication required" in lowered or "denied" in lowered:
        reason = "auth"
    elif "connection refused" in lowered or "connection reset" in lowered:
        reason = "refused"
    elif "timeout" in lowered or "deadline exceeded" in lowered or "timed out" in lowered:
        reason = "timeout"
    elif "no such host" in lowered or "server misbehaving" in lowered:
        reason = "dns"
    elif "x509" in lowered or "tls" in lowered:
        reason = "tls"
    else:
        reason = "error"
    last = re.sub(r"\s+", " ", last)
    return reason, last[-300:]


def skopeo_copy(source: str, destination: str, *, src_tls_verify: bool = False, dest_tls_verify: bool = False,
                dest_authfile: Optional[str] = None, timeout: float = 300.0, env: Optional[dict] = None,
                src_authfile: Optional[str] = None, src_cert_dir: Optional[str] = None,
                dest_cert_dir: Optional[str] = None) -> SkopeoResult:
    """`skopeo copy`; `*_cert_dir` holds the CA(s) a registry's certificate is verified against."""
    binary = skopeo_binary()
    if binary is None:
        return SkopeoResult(False, "missing", "skopeo is not installed (apt-get install skopeo)", 0.0)
    command = [binary, "--insecure-policy", "copy", "--retry-times", "0",
               f"--src-tls-verify={str(src_tls_verify).lower()}", f"--dest-tls-verify={str(dest_tls_verify).lower()}"]
    if dest_authfile:
        command += ["--dest-authfile", dest_authfile]
    if src_authfile:
        command += ["--src-authfile", src_authfile]
    if src_cert_dir:
        command += ["--src-cert-dir", src_cert_dir]
    if dest_cert_dir:
        command += ["--dest-cert-dir", dest_cert_dir]
    command += [source, destination]
    start = time.monotonic()
    try:
        proc = subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL, env=env)
    except subprocess.TimeoutExpired:
        return SkopeoResult(False, "timeout", f"skopeo copy took longer than {timeout:.0f}s", time.monotonic() - start)
    elapsed = time.monotonic() - start
    if proc.returncode == 0:
        return SkopeoResult(True, "ok", "", elapsed)
    reason, detail = classify_skopeo_error(proc.stderr)
    return SkopeoResult(False, reason, detail, elapsed)


if __name__ == "__main__":
    import sys

    sys.exit(main())
