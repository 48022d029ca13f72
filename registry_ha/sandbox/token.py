"""The token server (cesanta/docker_auth) of `local up --auth`, and the signing keys the registry trusts.

As in the program: `auth.token_server_config` for the stack's users and ACL (bcrypt hashes only), an RSA
key and self-signed certificate per `tokenSigningKeys` name (the first signs), every certificate in
the registry's bundle and every key in its JWKS. The program runs one token server in each registry
pod; the sandbox runs one for all replicas (it keeps no state, so where it runs changes nothing).
The binary is the docker_auth build registry_ha.toolchain makes (bootstrap installs it).

    <state>/config/token/   auth_config.yml, token.key, token.crt (0600): the token server's Secret
    <state>/token-keys/     <name>.key, <name>.crt per signing key (0600)
"""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

from registry_ha import auth, toolchain
from registry_ha.registry_config import dump_config
from registry_ha.sandbox import procs
from registry_ha.sandbox.errors import SandboxError
from registry_ha.sandbox.secrets import write_private

if TYPE_CHECKING:
    from registry_ha.sandbox.core import Sandbox

KEY_DAYS = 3650


def config_dir(sb: "Sandbox") -> Path:
    return sb.config_dir / "token"


def keys_dir(sb: "Sandbox") -> Path:
    return sb.state_dir / "token-keys"


def _openssl() -> str:
    openssl = shutil.which("openssl", path=procs.SAFE_PATH)
    if openssl is None:
        raise SandboxError("missing openssl: `sudo apt-get install -y openssl` (or run ./scripts/bootstrap.sh)")
    return openssl


def make_signing_keys(sb: "Sandbox") -> None:
    """An RSA key and a self-signed certificate per signing key name, like pulumi-tls makes them; kept
    across down/up (tokens already issued stay valid)."""
    directory = keys_dir(sb)
    directory.mkdir(parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    for name in sb.settings.access.signing_keys:
        key, cert = directory / f"{name}.key", directory / f"{name}.crt"
        if key.exists() and cert.exists():
            continue
        argv = [_openssl(), "req", "-x509", "-newkey", "rsa:3072", "-nodes", "-keyout", str(key), "-out", str(cert),
                "-days", str(KEY_DAYS), "-subj", f"/CN={auth.issuer(sb.settings)} token signer {name}",
                "-addext", "keyUsage=critical,digitalSignature", "-addext", "basicConstraints=critical,CA:FALSE"]
        old_umask = os.umask(0o077)
        try:
            result = subprocess.run(argv, capture_output=True, text=True, env=procs.minimal_env(directory))
        finally:
            os.umask(old_umask)
        if result.returncode != 0:
            raise SandboxError(f"openssl failed: {(result.stderr.strip().splitlines() or ['?'])[-1]}")


def public_key_pem(certificate: Path) -> str:
    result = subprocess.run([_openssl(), "x509", "-pubkey", "-noout", "-in", str(certificate)],
                            capture_output=True, text=True, env=procs.minimal_env(certificate.parent))
    if result.returncode != 0:
        raise SandboxError(f"openssl could not read {certificate}")
    return result.stdout


def trust_files(sb: "Sandbox") -> dict[str, str]:
    """What the registry trusts, next to its config.yml: the certificate bundle and the JWKS."""
    certificates = [keys_dir(sb) / f"{name}.crt" for name in sb.settings.access.signing_keys]
    return {
        auth.BUNDLE_KEY: auth.certificate_bundle([c.read_text() for c in certificates]),
        auth.JWKS_KEY: auth.jwks_document([public_key_pem(c) for c in certificates]),
    }


def signing_key_path(sb: "Sandbox") -> Path:
    """The key tokens are signed with now (the first of tokenSigningKeys)."""
    return config_dir(sb) / auth.TOKEN_KEY_KEY


def write_config(sb: "Sandbox") -> None:
    import bcrypt  # requirements-dev.txt; the program gets its hashes from pulumi-random (cost 10, as here)

    make_signing_keys(sb)
    directory = config_dir(sb)
    signer = sb.settings.access.signing_keys[0]
    for suffix, target in (("key", auth.TOKEN_KEY_KEY), ("crt", auth.TOKEN_CERT_KEY)):
        write_private(directory / target, (keys_dir(sb) / f"{signer}.{suffix}").read_text())
    hashes = {user: bcrypt.hashpw(password.encode(), bcrypt.gensalt(10)).decode()
              for user, password in sb.user_passwords().items()}
    config = auth.token_server_config(sb.settings, hashes, listen_addr=sb.components["token"].address,
                                      config_dir=str(directory))
    write_private(directory / auth.TOKEN_CONFIG_KEY, dump_config(config))


def binary() -> str:
    tool = toolchain.docker_auth_tool()
    if not toolchain.is_installed(tool):
        try:
            toolchain.install(tool)
        except toolchain.ToolchainError as exc:
            raise SandboxError(f"{exc} (run ./scripts/bootstrap.sh)") from None
    return str(tool.path)


def argv(sb: "Sandbox", name: str, binaries: dict[str, str]) -> list[str]:
    # --logtostderr: glog would otherwise write its own log files under /tmp
    return [binaries.get("docker_auth") or binary(), "--logtostderr", str(config_dir(sb) / auth.TOKEN_CONFIG_KEY)]


def healthy(sb: "Sandbox", name: str) -> bool:
    return procs.http_status(sb.components[name].address, "/") == 200  # its index page names the issuer
