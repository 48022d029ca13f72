"""Registry processes: the private replicas and the pull-through caches, from the program's config.

Each config is `build_registry_config` for the stack's settings with only addresses, endpoints
and credentials replaced (the program's S3 bucket -> SeaweedFS, the Redis Service -> 127.0.0.1).
The upstream stand-in is not part of the program: a plain filesystem registry on 127.0.0.1 that
every cache proxies unless `--upstream NAME=URL` or `--real-upstreams` says otherwise, so
`local up` never reaches off the machine by itself. It logs every request (the access log), so
tests can tell the caches' requests (Go-http-client) from a client's.
"""
from __future__ import annotations

import dataclasses
import textwrap
from typing import TYPE_CHECKING, Optional

from registry_ha.k8s import REGISTRY_ENV
from registry_ha import imagetools
from registry_ha.registry_config import (
    CREDENTIAL_HELPER_KEY,
    UPSTREAM_CREDENTIALS_KEY,
    build_registry_config,
    credential_helper_script,
    dump_config,
    secret_files,
    upstream_credentials_json,
)
from registry_ha.sandbox import front, procs, token
from registry_ha.sandbox.secrets import write_private

if TYPE_CHECKING:
    from registry_ha.sandbox.core import Sandbox


def role_of(sb: "Sandbox", name: str) -> str:
    return "mirror" if sb.components[name].role == "mirror" else "private"


def cache_of(sb: "Sandbox", name: str):
    return sb.cache_of(name) if role_of(sb, name) == "mirror" else None


def config(sb: "Sandbox", name: str, credentials=None) -> dict:
    """The rendered config of one registry process (a replica or a cache)."""
    comp = sb.components[name]
    role = role_of(sb, name)
    cache = cache_of(sb, name)
    endpoints = dataclasses.replace(
        sb.endpoints(comp.address, sb.debug_address(name), cache=cache),
        config_dir=str(sb.config_dir / name),
    )
    if role == "private" and sb.auth:
        # Behind the auth proxy, which owns the replica's address (and ends TLS), as in the pod.
        endpoints = dataclasses.replace(endpoints, listen_net="unix", listen_addr=str(front.socket_path(sb, name)))
    elif role == "private" and sb.tls:  # as in the program: the caches stay anonymous plain HTTP
        endpoints = dataclasses.replace(
            endpoints,
            tls_certificate=str(sb.tls_dir / "server.crt"),
            tls_key=str(sb.tls_dir / "server.key"),
        )
    document = build_registry_config(sb.settings, role, endpoints, credentials or sb.credentials(), cache=cache)
    if sb.settings.registry.schema == "v2":
        seaweedfs_workaround_v2(document)
    return document


def seaweedfs_workaround_v2(document: dict) -> dict:
    """The compat lane's one semantic deviation, forced by SeaweedFS: Distribution 2.8.2's upload purger
    walks `_uploads` at a random 0-59 min after start, and its S3 Walk panicked on a SeaweedFS listing
    (`index out of range [0] with length 0` in s3-aws doWalk), killing the replica. 3.1.1 purges cleanly
    against SeaweedFS; AWS S3 (and moto) listings do not trigger it. The program keeps purging on."""
    document["storage"]["maintenance"]["uploadpurging"]["enabled"] = False
    return document


def write_configs(sb: "Sandbox") -> None:
    for name, comp in sb.components.items():
        if comp.role not in ("registry", "mirror"):
            continue
        directory = sb.config_dir / name
        directory.mkdir(parents=True, exist_ok=True)
        write_private(directory / "config.yml", dump_config(config(sb, name)))
        cache = cache_of(sb, name)
        files = secret_files(sb.settings, role_of(sb, name), cache=cache)
        if role_of(sb, name) == "private" and sb.auth:
            for file_name, text in token.trust_files(sb).items():
                write_private(directory / file_name, text)
        if CREDENTIAL_HELPER_KEY in files:
            endpoints = dataclasses.replace(sb.endpoints(comp.address, "", cache=cache), config_dir=str(directory))
            write_private(directory / CREDENTIAL_HELPER_KEY,
                          credential_helper_script(cache, "v3", endpoints), mode=0o700)
        if UPSTREAM_CREDENTIALS_KEY in files:
            password = sb.upstream_password(cache)
            if password is not None:
                write_private(directory / UPSTREAM_CREDENTIALS_KEY, upstream_credentials_json(cache.username, password))
    if sb.upstream_stand_in:
        data = sb.state_dir / "upstream"
        address = sb.components["upstream"].address
        write_private(sb.config_dir / "upstream.yml", textwrap.dedent(f"""\
            # Not part of the program: a local stand-in for the caches' upstream (Docker Hub, ...).
            version: 0.1
            log: {{level: warn, accesslog: {{disabled: false}}}}
            storage: {{filesystem: {{rootdirectory: {data}}}, delete: {{enabled: true}}}}
            http: {{addr: {address}}}
            """))


def extra_env(sb: "Sandbox", name: str) -> dict:
    """What the program's Deployment sets in the container's environment (no trace export)."""
    return dict(REGISTRY_ENV)


# What the stand-in holds from the start: the image test-registry-ha.sh pulls through a cache by default
# (--mirror-image), so `test-registry-ha.sh --mirror <cache>` works offline. A small made-up image,
# not Docker's hello-world.
STAND_IN_IMAGE = ("library/hello-world", "latest")


def after_start(sb: "Sandbox", name: str) -> None:
    if name != "upstream":
        return
    repository, tag = STAND_IN_IMAGE
    image = imagetools.build_oci_layout(sb.state_dir / "upstream-seed", tag, (4096,), seed=b"registry-ha stand-in")
    imagetools.push_plain(image, sb.components[name].address, repository)


def argv(sb: "Sandbox", name: str, binaries: dict[str, str]) -> list[str]:
    if name == "upstream":
        return [binaries["registry"], "serve", str(sb.config_dir / "upstream.yml")]
    return [binaries["registry"], "serve", str(sb.config_dir / name / "config.yml")]


def healthy(sb: "Sandbox", name: str) -> bool:
    comp = sb.components[name]
    if name == "upstream":
        return procs.http_status(comp.address, "/v2/") == 200
    if sb.auth and comp.role == "registry":
        # on a unix socket behind the proxy: the storage health check on its debug port
        return procs.http_status(sb.debug_address(name), "/debug/health") == 200
    if sb.tls and comp.role == "registry":
        # GET / is Distribution's unauthenticated health check, also with auth on
        return procs.http_status(comp.address, "/", ca_file=str(sb.ca_cert)) == 200
    return procs.http_status(comp.address, "/") == 200


def panic_line(sb: "Sandbox", name: str) -> Optional[str]:
    try:
        lines = sb.log_path(name).read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return None
    panics = [line for line in lines if line.startswith("panic:")]
    return panics[-1][:300] if panics else None
