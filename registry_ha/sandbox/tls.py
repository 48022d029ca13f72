"""A throw-away CA and a server certificate for `local up --tls` (what cert-manager would issue)."""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Optional

from registry_ha.sandbox import procs
from registry_ha.sandbox.errors import SandboxError

CERT_DAYS = 30


def make_tls(tls_dir: Path, hostname: str, openssl: Optional[str] = None) -> None:
    """A throw-away CA (self-signed) and a server certificate it signs, for 127.0.0.1, localhost and the
    stack's hostname: what cert-manager's CA issuer would put in the kubernetes.io/tls Secret. Kept across
    down/up (clients that trust the CA keep working); made again when missing or expiring within a day."""
    openssl = openssl or shutil.which("openssl", path=procs.SAFE_PATH)
    if openssl is None:
        raise SandboxError("missing openssl: `sudo apt-get install -y openssl` (or run ./scripts/bootstrap.sh)")
    ca_dir = tls_dir / "ca"
    server_crt = tls_dir / "server.crt"
    if server_crt.exists() and (ca_dir / "ca.crt").exists():
        check = subprocess.run([openssl, "x509", "-checkend", "86400", "-noout", "-in", str(server_crt)],
                               capture_output=True, env=procs.minimal_env(tls_dir))
        if check.returncode == 0:
            return
    ca_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(tls_dir, 0o700)
    env = procs.minimal_env(tls_dir)
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    (tls_dir / "server.ext").write_text(
        f"subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:{hostname}\n"
        "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n"
    )
    steps = [
        [openssl, "req", "-x509", *ec, "-keyout", str(tls_dir / "ca.key"), "-out", str(ca_dir / "ca.crt"),
         "-days", str(CERT_DAYS), "-subj", "/CN=registry-ha sandbox CA",
         "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"],
        [openssl, "req", *ec, "-keyout", str(tls_dir / "server.key"), "-out", str(tls_dir / "server.csr"),
         "-subj", "/CN=registry-ha sandbox"],
        [openssl, "x509", "-req", "-in", str(tls_dir / "server.csr"), "-CA", str(ca_dir / "ca.crt"),
         "-CAkey", str(tls_dir / "ca.key"), "-CAcreateserial", "-CAserial", str(tls_dir / "ca.srl"),
         "-out", str(server_crt),
         "-days", str(CERT_DAYS), "-extfile", str(tls_dir / "server.ext")],
    ]
    old_umask = os.umask(0o077)  # keys are written 0600
    try:
        for argv in steps:
            result = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=str(tls_dir))
            if result.returncode != 0:
                raise SandboxError(f"openssl failed: {(result.stderr.strip().splitlines() or ['?'])[-1]}")
    finally:
        os.umask(old_umask)
    os.chmod(ca_dir / "ca.crt", 0o644)
