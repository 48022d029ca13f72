"""What nodes need to pull through the caches and from the private registry, as data.

containerd reads `<config_path>/<registry name>/hosts.toml` on every pull (no restart): the
directory is the registry's name as it appears in image references (`docker.io`, `ghcr.io`,
`registry.neural-hive.local:5000`); the addresses dialled are whatever the file says. Each file
lists hosts in the order containerd tries them, then `server` last:

- an upstream (docker.io, ghcr.io, ...): its cache first (pull and resolve only: a proxy refuses
  pushes), the upstream itself as `server`, the fallback while the cache is down;
- the private registry, under both names clients use: the name's own address first, the other
  address as `server` (so no address is listed twice and a dead one costs one attempt).

Every file has at least one `[host]` table: containerd 1.6.x and 1.7.0-1.7.31 reject a file
without one and silently fall back to https://<name>.

The addresses come in as NodeEndpoints: the program fills them with the caches' ClusterIPs and the
cluster's addresses, the local sandbox with its 127.0.0.1 ports (the same files, other addresses).
"""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Mapping, Optional

from registry_ha.auth import basic_authorization  # noqa: F401  (the header value node_files takes)
from registry_ha.settings import REGISTRY_PORT, Settings

CERTS_D = "/etc/containerd/certs.d"  # containerd's config_path on the nodes (one directory: 2.1+ takes no list)
CA_FILE = "ca.crt"  # next to the private registry's hosts.toml; containerd resolves it relative to that dir
PULL_ONLY = ("pull", "resolve")
PULL_AND_PUSH = ("pull", "resolve", "push")


@dataclass(frozen=True)
class NodeEndpoints:
    """Where nodes reach each server: the only part of the node files that differs between the
    cluster and the sandbox."""

    caches: Mapping[str, str]  # upstream host (docker.io) -> cache base URL (http://10.43.0.50:5000)
    upstreams: Mapping[str, str]  # upstream host -> the fallback server (https://registry-1.docker.io)
    registry: str  # the private registry through its LoadBalancer: http://registry.neural-hive.local:5000
    node_port: str  # ... and through the NodePort: http://37.60.241.150:30500


@dataclass(frozen=True)
class NodeFile:
    path: str  # relative to certs.d: docker.io/hosts.toml
    content: str
    mode: int = 0o644  # 0600 when it carries credentials


@dataclass(frozen=True)
class NodeFiles:
    files: tuple[NodeFile, ...]
    skipped: tuple[str, ...] = field(default=())  # why a cache has no file (no address known yet)

    def as_dict(self) -> dict[str, str]:
        return {f.path: f.content for f in self.files}


def url_host(address: str) -> str:
    """An IP or name as it goes into a URL (IPv6 in brackets)."""
    try:
        return f"[{address}]" if ipaddress.ip_address(address).version == 6 else address
    except ValueError:
        return address


def cluster_endpoints(settings: Settings, cache_ips: Mapping[str, Optional[str]]) -> NodeEndpoints:
    """The cluster's addresses. cache_ips: cache name -> its ClusterIP (a cache without one is left out)."""
    scheme = "https" if settings.access.tls else "http"
    return NodeEndpoints(
        caches={c.host: f"http://{url_host(ip)}:{REGISTRY_PORT}" for c in settings.caches if (ip := cache_ips.get(c.name))},
        upstreams={c.host: c.remote_url for c in settings.caches},
        registry=f"{scheme}://{settings.registry_address}",
        node_port=f"{scheme}://{settings.secondary_address}",
    )


def _quote(value: str) -> str:
    if any(ord(ch) < 0x20 for ch in value):
        raise ValueError(f"control character in a hosts.toml value: {value!r}")
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def hosts_toml(
    comment: str,
    server: str,
    hosts: list[tuple[str, tuple[str, ...]]],
    ca: Optional[str] = None,
    header: Optional[dict] = None,
) -> str:
    """One hosts.toml: `hosts` (url, capabilities) tried in order, then `server`. `ca`/`header` apply to
    every https host / every host (containerd has no other place for credentials)."""
    if not hosts:
        raise ValueError("a hosts.toml needs at least one [host] table (containerd 1.6/1.7 reject it otherwise)")
    lines = [f"# {line}" for line in comment.splitlines()]
    lines.append(f"server = {_quote(server)}")
    server_ca = ca if server.startswith("https://") else None
    if server_ca:
        lines.append(f"ca = {_quote(server_ca)}")
    if header:
        lines += ["", "[header]"] + [f"  {name} = {_quote(value)}" for name, value in header.items()]
    for url, capabilities in hosts:
        # 1.7+/2.x try an http:// host with TLS options as HTTPS first: none on plain-HTTP hosts.
        host_ca = ca if url.startswith("https://") else None
        lines += ["", f"[host.{_quote(url)}]", f"  capabilities = [{', '.join(_quote(c) for c in capabilities)}]"]
        if host_ca:
            lines.append(f"  ca = {_quote(host_ca)}")
        if header:
            lines.append(f"  [host.{_quote(url)}.header]")
            lines += [f"    {name} = {_quote(value)}" for name, value in header.items()]
    return "\n".join(lines) + "\n"


def node_files(settings: Settings, endpoints: NodeEndpoints, authorization: Optional[str] = None) -> NodeFiles:
    """Every file nodes get under certs.d.

    authorization: the Authorization header nodes send to the private registry (`Basic ...` of the
    pull-only node identity, auth.node_registry_auth); None: nodes send none (an open registry). The
    caches' files never carry it. containerd sends it to the token realm only from 2.1 on: older nodes
    fetch the token without it and need image pull secrets (pullSecretNamespaces) or CRI credentials."""
    files: list[NodeFile] = []
    skipped: list[str] = []
    for index, cache in enumerate(settings.caches):
        cache_url = endpoints.caches.get(cache.host)
        if cache_url is None:
            skipped.append(
                f"{cache.host}: the {cache.name} cache's ClusterIP is allocated when it is deployed; "
                f"pin one with mirrors[{index}].clusterIP (an address in the cluster's Service CIDR)"
            )
            continue
        upstream = endpoints.upstreams[cache.host]
        files.append(
            NodeFile(
                f"{cache.host}/hosts.toml",
                hosts_toml(
                    f"registry-ha {settings.stack}: {cache.host} through the {cache.name} cache; {upstream} while it is down.",
                    upstream,
                    [(cache_url, PULL_ONLY)],
                ),
            )
        )
    header = {"Authorization": authorization} if authorization else None
    ca = CA_FILE if settings.access.tls and settings.nodes.ca_certificate else None
    mode = 0o600 if header else 0o644
    for name, first, last in (
        (settings.registry_address, endpoints.registry, endpoints.node_port),
        (settings.secondary_address, endpoints.node_port, endpoints.registry),
    ):
        comment = f"registry-ha {settings.stack}: the private registry as {name}; {last} when {first} fails."
        files.append(NodeFile(f"{name}/hosts.toml", hosts_toml(comment, last, [(first, PULL_AND_PUSH)], ca, header), mode))
        if ca:
            files.append(NodeFile(f"{name}/{CA_FILE}", settings.nodes.ca_certificate))
    return NodeFiles(tuple(files), tuple(skipped))


def docker_daemon_json(settings: Settings, endpoints: NodeEndpoints) -> dict:
    """The Docker daemon's equivalent (/etc/docker/daemon.json). `registry-mirrors` covers Docker Hub
    only: dockerd cannot mirror ghcr.io, quay.io or any other registry."""
    config: dict = {}
    hub = endpoints.caches.get("docker.io")
    if hub:
        config["registry-mirrors"] = [hub]
    insecure = [] if settings.access.tls else [settings.registry_address, settings.secondary_address]
    if hub:
        insecure.append(hub.split("://", 1)[1])
    config["insecure-registries"] = insecure
    return config
