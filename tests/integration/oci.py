"""Registry client helpers the integration tests share (the OCI writer is registry_ha.imagetools')."""
from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path
from typing import Optional
from urllib.parse import urlsplit

from registry_ha.imagetools import OciImage, build_oci_layout
from registry_ha.imagetools import plain_request as request

MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json"


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


# One OCI layout writer for the whole project (the scripts use it too).
build_image = build_oci_layout


# --------------------------------------------------------------------------- skopeo


def skopeo(binary: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": os.environ.get("HOME", "/tmp")}
    return subprocess.run(
        [binary, "--insecure-policy", *args], capture_output=True, text=True, timeout=timeout, env=env
    )


def push(binary: str, image: OciImage, address: str, repo: str, tag: Optional[str] = None) -> subprocess.CompletedProcess:
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


def assert_dir_matches(dest: Path, image: OciImage) -> None:
    got = dir_digests(dest)
    assert got["manifest"] == image.manifest_digest, (got["manifest"], image.manifest_digest)
    for digest in image.blob_digests:
        name = digest.split(":", 1)[1]
        assert got["blobs"].get(name) == digest, f"blob {digest} missing or corrupt in {dest}"


# --------------------------------------------------------------------------- raw HTTP (no proxies)


def get_manifest(address: str, repo: str, ref: str):
    return request(address, "GET", f"/v2/{repo}/manifests/{ref}", headers={"Accept": MANIFEST_TYPE})


def get_blob(address: str, repo: str, digest: str):
    return request(address, "GET", f"/v2/{repo}/blobs/{digest}")


# --------------------------------------------------------------------------- chunked uploads across replicas


class UploadFailed(AssertionError):
    def __init__(self, step: str, status: int, body: bytes):
        super().__init__(f"{step} -> {status} {body[:200]!r}")
        self.step, self.status, self.body = step, status, body


def _path(location: str) -> str:
    parts = urlsplit(location)
    return parts.path + (f"?{parts.query}" if parts.query else "")


def chunked_upload(targets: list[str], repo: str, blob: bytes, chunk: int) -> list[str]:
    """POST to targets[0], each PATCH and the PUT to the next target in turn. Returns who got what."""
    route = iter(targets * 100)
    seen = []
    address = next(route)
    status, headers, body = request(address, "POST", f"/v2/{repo}/blobs/uploads/")
    seen.append(f"POST {address}")
    if status != 202:
        raise UploadFailed(f"POST {address}", status, body)
    location = _path(headers["location"])
    for start in range(0, len(blob), chunk):
        part = blob[start : start + chunk]
        address = next(route)
        status, headers, body = request(
            address,
            "PATCH",
            location,
            body=part,
            headers={"Content-Type": "application/octet-stream", "Content-Range": f"{start}-{start + len(part) - 1}"},
        )
        seen.append(f"PATCH {address}")
        if status != 202:
            raise UploadFailed(f"PATCH {address}", status, body)
        location = _path(headers["location"])
    address = next(route)
    sep = "&" if "?" in location else "?"
    status, headers, body = request(address, "PUT", f"{location}{sep}digest={sha256(blob)}", body=b"")
    seen.append(f"PUT {address}")
    if status != 201:
        raise UploadFailed(f"PUT {address}", status, body)
    return seen
