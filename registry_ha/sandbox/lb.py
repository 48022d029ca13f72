"""haproxy in front of the replicas: the LoadBalancer Service and the NodePort of the program.

With TLS it passes TCP through (as a Kubernetes LoadBalancer/NodePort does): the replicas terminate
TLS with the certificate and clients verify it end to end. Health checks GET / (over TLS, verifying
the sandbox CA, when TLS is on); a failed replica is skipped and in-flight retries go elsewhere.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from registry_ha.sandbox import procs
from registry_ha.sandbox.secrets import write_private

if TYPE_CHECKING:
    from registry_ha.sandbox.core import Sandbox


def haproxy_cfg(sb: "Sandbox") -> str:
    lines = [
        "global",
        "    maxconn 512",
        f"    stats socket {sb.state_dir / 'lb.sock'} mode 600 level admin",
        "defaults",
        f"    mode {'tcp' if sb.tls else 'http'}",
        "    timeout connect 1s",
        "    timeout client 120s",
        "    timeout server 120s",
        "    timeout check 1s",
        "    retries 1",
        "    option redispatch",
        "frontend registry",
        f"    bind 127.0.0.1:{sb.ports.lb}",
        "    default_backend replicas",
        "backend replicas",
        "    balance roundrobin",
        "    option httpchk GET /",
        "    http-check expect status 200",
        "    default-server inter 500ms fall 2 rise 2",
    ]
    check = f"check check-ssl verify required ca-file {sb.ca_cert}" if sb.tls else "check"
    for name in sb.replica_names():
        lines.append(f"    server {name} {sb.components[name].address} {check}")
    # Without a section of this name haproxy makes one from /etc/resolv.conf for its HTTP client and
    # connects to those nameservers at start: the sandbox resolves nothing and talks to 127.0.0.1 only.
    # (haproxy warns at start that it has no nameservers.)
    lines.append("resolvers default")
    return "\n".join(lines) + "\n"


def write_config(sb: "Sandbox") -> None:
    write_private(sb.config_dir / "haproxy.cfg", haproxy_cfg(sb))


def argv(sb: "Sandbox", name: str, binaries: dict[str, str]) -> list[str]:
    return [binaries["haproxy"], "-db", "-f", str(sb.config_dir / "haproxy.cfg")]


def healthy(sb: "Sandbox", name: str) -> bool:
    address = sb.components[name].address
    if sb.tls:
        return procs.http_status(address, "/", ca_file=str(sb.ca_cert)) == 200
    return procs.http_status(address, "/") == 200
