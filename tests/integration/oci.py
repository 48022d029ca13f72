"""A small OCI image-layout writer and the registry client helpers the integration tests share."""
from __future__ import annotations

import gzip
import hashlib
import http.client
import io
import json
import os
import subprocess
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json"
LAYER_TYPE = "application/vnd.oci.image.layer.v1.tar+gzip"
CONFIG_TYPE = "application/vnd.oci.image.config.v1+json"


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class Image:
    layout: Path
    tag: str
    manifest: bytes
    manifest_digest: str
    config_digest: str
    layer_digests: tuple[str, ...]

    @property
    def blob_digests(self) -> tuple[str, ...]:
        return (self.config_digest, *self.layer_digests)

    @property
    def ref(self) -> str:
        return f"oci:{self.layout}:{self.tag}"


def _layer(size: int, seed: bytes, index: int) -> tuple[bytes, bytes]:
    """A gzip'd tar with one file of `size` pseudo-random (incompressible) bytes: (tar, tar.gz)."""
    content = bytearray()
    counter = 0
    while len(content) < size:
        content += hashlib.sha256(seed + b"/%d/%d" % (index, counter)).digest()
        counter += 1
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo(f"layer{index}/data.bin")
        info.size = size
        info.mtime = 0
        tar.addfile(info, io.BytesIO(bytes(content[:size])))
    tar_bytes = raw.getvalue()
    return tar_bytes, gzip.compress(tar_bytes, mtime=0)


def build_image(layout: Path, tag: str = "v1", layer_sizes=(64 * 1024, 1024 * 1024), seed: Optional[bytes] = None) -> Image:
    """Write a multi-layer image into an OCI layout directory (created or extended)."""
    seed = seed if seed is not None else os.urandom(16)
    blobs_dir = layout / "blobs" / "sha256"
    blobs_dir.mkdir(parents=True, exist_ok=True)

    def put(data: bytes) -> str:
        digest = sha256(data)
        (blobs_dir / digest.split(":", 1)[1]).write_bytes(data)
        return digest

    layers, diff_ids = [], []
    for index, size in enumerate(layer_sizes):
        tar_bytes, gz = _layer(size, seed, index)
        layers.append({"mediaType": LAYER_TYPE, "digest": put(gz), "size": len(gz)})
        diff_ids.append(sha256(tar_bytes))
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": {"Labels": {"seed": seed.hex()}},
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
        },
        sort_keys=True,
    ).encode()
    config_digest = put(config)
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": MANIFEST_TYPE,
            "config": {"mediaType": CONFIG_TYPE, "digest": config_digest, "size": len(config)},
            "layers": layers,
        },
        sort_keys=True,
    ).encode()
    manifest_digest = put(manifest)
    (layout / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    index_path = layout / "index.json"
    index = json.loads(index_path.read_text()) if index_path.exists() else {"schemaVersion": 2, "manifests": []}
    index["manifests"] = [m for m in index["manifests"] if m.get("annotations", {}).get("org.opencontainers.image.ref.name") != tag]
    index["manifests"].append(
        {
            "mediaType": MANIFEST_TYPE,
            "digest": manifest_digest,
            "size": len(manifest),
            "annotations": {"org.opencontainers.image.ref.name": tag},
        }
    )
    index_path.write_text(json.dumps(index))
    return Image(layout, tag, manifest, manifest_digest, config_digest, tuple(l["digest"] for l in layers))


# --------------------------------------------------------------------------- skopeo


def skopeo(binary: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": os.environ.get("HOME", "/tmp")}
    return subprocess.run(
        [binary, "--insecure-policy", *args], capture_output=True, text=True, timeout=timeout, env=env
    )


def push(binary: str, image: Image, address: str, repo: str, tag: Optional[str] = None) -> subprocess.CompletedProcess:
    return skopeo(binary, "copy", "--dest-tls-verify=false", image.ref, f"docker://{address}/{repo}:{tag or image.tag}")


def pull_dir(binary: str, address: str, ref: str, dest: Path) -> subprocess.CompletedProcess:
    """skopeo copy docker://address/ref dir:dest (ref is repo:tag or repo@digest)."""
    return skopeo(binary, "copy", "--src-tls-verify=false", f"docker://{address}/{ref}", f"dir:{dest}")


def dir_digests(dest: Path) -> dict:
    """Digests of what `skopeo copy ... dir:` wrote: the manifest and every blob (by content)."""
    manifest = (dest / "manifest.json").read_bytes()
    blobs = {}
    for f in dest.iterdir():
        if f.name not in ("manifest.json", "version"):
            blobs[f.name] = sha256(f.read_bytes())
    return {"manifest": sha256(manifest), "blobs": blobs}


def assert_dir_matches(dest: Path, image: Image) -> None:
    got = dir_digests(dest)
    assert got["manifest"] == image.manifest_digest, (got["manifest"], image.manifest_digest)
    for digest in image.blob_digests:
        name = digest.split(":", 1)[1]
        assert got["blobs"].get(name) == digest, f"blob {digest} missing or corrupt in {dest}"


# --------------------------------------------------------------------------- raw HTTP (no proxies)


def request(address: str, method: str, path: str, body: Optional[bytes] = None, headers: Optional[dict] = None, timeout: float = 30):
    """(status, headers, body) of one plain-HTTP request to host:port."""
    host, _, port = address.rpartition(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        data = resp.read()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data
    finally:
        conn.close()


def get_manifest(address: str, repo: str, ref: str):
    return request(address, "GET", f"/v2/{repo}/manifests/{ref}", headers={"Accept": MANIFEST_TYPE})


def get_blob(address: str, repo: str, digest: str):
    return request(address, "GET", f"/v2/{repo}/blobs/{digest}")
