"""The benchmark's registry client: plain http.client (no proxies, no retries), bodies streamed
into a reused buffer and dropped (the /dev/null of a pull), an optional single redirect hop.

A *pull* here is what a container runtime does for a one-platform image: GET the manifest,
GET the config blob, GET every layer blob, each over a fresh connection.
"""
from __future__ import annotations

import gzip
import hashlib
import http.client
import io
import json
import os
import tarfile
import time
from dataclasses import dataclass
from typing import Optional
from urllib.parse import urlsplit

from registry_ha.imagetools import plain_request as request

MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json"
LAYER_TYPE = "application/vnd.oci.image.layer.v1.tar+gzip"
CONFIG_TYPE = "application/vnd.oci.image.config.v1+json"
CHUNK = 1 << 20
TIMEOUT = 30.0


class PullError(IOError):
    pass


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


# --------------------------------------------------------------------------- HTTP


@dataclass
class Fetched:
    status: int
    nbytes: int
    seconds: float
    digest: Optional[str] = None
    redirected: bool = False
    body: bytes = b""


def _split(url: str) -> tuple[str, int, str]:
    parts = urlsplit(url)
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    return parts.hostname or "127.0.0.1", parts.port or 80, path


def fetch(url: str, headers: Optional[dict] = None, verify: bool = False, keep_body: bool = False,
          follow: int = 1, timeout: float = TIMEOUT) -> Fetched:
    """GET `url`, streaming the body into a reused 1 MiB buffer; follow at most `follow` redirects."""
    t0 = time.perf_counter()
    redirected = False
    for _hop in range(follow + 1):
        host, port, path = _split(url)
        conn = http.client.HTTPConnection(host, port, timeout=timeout)
        try:
            conn.request("GET", path, headers=headers or {})
            resp = conn.getresponse()
            if resp.status in (301, 302, 303, 307, 308) and _hop < follow:
                location = resp.getheader("Location") or ""
                resp.read()
                if location.startswith("/"):
                    location = f"http://{host}:{port}{location}"
                url, redirected, headers = location, True, {}
                continue
            hasher = hashlib.sha256() if verify else None
            body = io.BytesIO() if keep_body else None
            buf = bytearray(CHUNK)
            view = memoryview(buf)
            total = 0
            while True:
                n = resp.readinto(view)
                if not n:
                    break
                total += n
                if hasher is not None:
                    hasher.update(view[:n])
                if body is not None:
                    body.write(view[:n])
            return Fetched(
                resp.status,
                total,
                time.perf_counter() - t0,
                "sha256:" + hasher.hexdigest() if hasher else None,
                redirected,
                body.getvalue() if body is not None else b"",
            )
        finally:
            conn.close()
    raise PullError(f"more than {follow} redirect(s) from {url}")


# --------------------------------------------------------------------------- images


@dataclass(frozen=True)
class Image:
    manifest: bytes
    manifest_digest: str
    config: bytes
    config_digest: str
    layers: tuple[bytes, ...]
    layer_digests: tuple[str, ...]

    @property
    def layer_bytes(self) -> int:
        return sum(len(layer) for layer in self.layers)

    @property
    def total_bytes(self) -> int:
        return len(self.manifest) + len(self.config) + self.layer_bytes


def _layer(size: int, index: int) -> tuple[bytes, bytes]:
    """(tar, tar.gz) of one file of `size` random (incompressible) bytes."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo(f"layer{index}/data.bin")
        info.size = size
        info.mtime = 0
        tar.addfile(info, io.BytesIO(os.urandom(size)))
    tar_bytes = raw.getvalue()
    return tar_bytes, gzip.compress(tar_bytes, compresslevel=1, mtime=0)


def build_image(layer_sizes: tuple[int, ...], label: str = "") -> Image:
    layers, diff_ids = [], []
    for index, size in enumerate(layer_sizes):
        tar_bytes, gz = _layer(size, index)
        layers.append(gz)
        diff_ids.append(sha256(tar_bytes))
    config = json.dumps(
        {"architecture": "amd64", "os": "linux", "config": {"Labels": {"bench": label or os.urandom(8).hex()}},
         "rootfs": {"type": "layers", "diff_ids": diff_ids}},
        sort_keys=True,
    ).encode()
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": MANIFEST_TYPE,
            "config": {"mediaType": CONFIG_TYPE, "digest": sha256(config), "size": len(config)},
            "layers": [{"mediaType": LAYER_TYPE, "digest": sha256(l), "size": len(l)} for l in layers],
        },
        sort_keys=True,
    ).encode()
    return Image(manifest, sha256(manifest), config, sha256(config), tuple(layers), tuple(sha256(l) for l in layers))


def push(address: str, repo: str, tag: str, image: Image) -> None:
    """Monolithic blob uploads (POST, then PUT ?digest= with the whole body) and the manifest PUT."""
    for data in (image.config, *image.layers):
        digest = sha256(data)
        status, _, _ = request(address, "HEAD", f"/v2/{repo}/blobs/{digest}")
        if status == 200:
            continue
        status, headers, body = request(address, "POST", f"/v2/{repo}/blobs/uploads/")
        if status != 202:
            raise PullError(f"push {repo}: POST upload {status} {body[:200]!r}")
        location = headers["location"]
        host, port, path = _split(location if "://" in location else f"http://{address}{location}")
        sep = "&" if "?" in path else "?"
        status, _, body = request(
            f"{host}:{port}", "PUT", f"{path}{sep}digest={digest}", body=data,
            headers={"Content-Type": "application/octet-stream", "Content-Length": str(len(data))}, timeout=120,
        )
        if status != 201:
            raise PullError(f"push {repo}: PUT blob {status} {body[:200]!r}")
    status, _, body = request(address, "PUT", f"/v2/{repo}/manifests/{tag}", body=image.manifest,
                              headers={"Content-Type": MANIFEST_TYPE})
    if status != 201:
        raise PullError(f"push {repo}: PUT manifest {status} {body[:200]!r}")


@dataclass
class Pull:
    seconds: float  # manifest + every blob
    layer_seconds: float  # the layer GET(s) alone (incl. a redirect hop)
    nbytes: int
    redirected: bool


def pull(address: str, repo: str, ref: str, image: Image, verify: bool = False, follow: int = 1,
         timeout: float = TIMEOUT) -> Pull:
    """Manifest + config + layers, each a fresh connection; raises PullError on any bad status/size."""
    t0 = time.perf_counter()
    base = f"http://{address}/v2/{repo}"
    m = fetch(f"{base}/manifests/{ref}", headers={"Accept": MANIFEST_TYPE}, keep_body=True, follow=0, timeout=timeout)
    if m.status != 200 or sha256(m.body) != image.manifest_digest:
        raise PullError(f"manifest {repo}:{ref} -> {m.status}")
    total, layer_seconds, redirected = m.nbytes, 0.0, False
    for digest, data in ((image.config_digest, image.config), *zip(image.layer_digests, image.layers)):
        b = fetch(f"{base}/blobs/{digest}", verify=verify, follow=follow, timeout=timeout)
        if b.status != 200 or b.nbytes != len(data) or (verify and b.digest != digest):
            raise PullError(f"blob {digest[:19]} -> {b.status}, {b.nbytes}/{len(data)} bytes")
        total += b.nbytes
        redirected = redirected or b.redirected
        if digest != image.config_digest:
            layer_seconds += b.seconds
    return Pull(time.perf_counter() - t0, layer_seconds, total, redirected)


def blob_key(rootdirectory: str, digest: str) -> str:
    """The S3 key Distribution stores a blob under."""
    hexd = digest.split(":", 1)[1]
    return f"{rootdirectory.strip('/')}/docker/registry/v2/blobs/sha256/{hexd[:2]}/{hexd}/data"
