"""The auth proxy of `local up --auth`: what each registry pod's :5000 is in the program.

One haproxy serves every replica's address with the program's proxy config (`auth.proxy_config`, one
site per replica): /auth goes to the token server, everything else to that replica's registry, which
listens on a unix socket behind it. So a client that talks to a replica (or to the LB in front of the
replicas) is sent to the token realm on the address it used, as in the cluster. With --tls the proxy
ends TLS with the sandbox certificate, as it does with tlsSecretName.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from registry_ha import auth
from registry_ha.sandbox import procs
from registry_ha.sandbox.secrets import write_private

if TYPE_CHECKING:
    from registry_ha.sandbox.core import Sandbox


def socket_path(sb: "Sandbox", replica: str) -> Path:
    return sb.state_dir / "run" / f"{replica}.sock"


def tls_pem(sb: "Sandbox") -> Path:
    return sb.tls_dir / "proxy" / auth.PROXY_TLS_PEM


def sites(sb: "Sandbox") -> list[auth.ProxySite]:
    token_server = sb.components["token"].address
    return [
        auth.ProxySite(
            name=name,
            bind=sb.components[name].address,
            registry=f"unix@{socket_path(sb, name)}",
            token_server=token_server,
            tls_pem=str(tls_pem(sb)) if sb.tls else None,
        )
        for name in sb.replica_names()
    ]


def write_config(sb: "Sandbox") -> None:
    if sb.tls:  # as the program mounts the kubernetes.io/tls Secret: the key next to the certificate
        write_private(tls_pem(sb), (sb.tls_dir / "server.crt").read_text())
        write_private(Path(f"{tls_pem(sb)}.key"), (sb.tls_dir / "server.key").read_text())
    (sb.state_dir / "run").mkdir(parents=True, exist_ok=True)
    write_private(sb.config_dir / "auth-proxy.cfg", auth.proxy_config(sites(sb)))


def argv(sb: "Sandbox", name: str, binaries: dict[str, str]) -> list[str]:
    return [binaries["haproxy"], "-db", "-f", str(sb.config_dir / "auth-proxy.cfg")]


def healthy(sb: "Sandbox", name: str) -> bool:
    """It listens on every replica's address (whether a replica behind it is up is the replica's health)."""
    return all(procs.port_listening(int(port)) for port in sb.components[name].ports)
