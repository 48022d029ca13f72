"""The local HA sandbox: the program's topology as processes on 127.0.0.1.

S3 (SeaweedFS), Redis, N private registry replicas behind haproxy, and one pull-through cache per
`mirrors` entry, each its own registry, in front of a local upstream stand-in unless told
otherwise. Every registry config is the program's (`build_registry_config` for the stack's
settings); only addresses, endpoints and credentials are replaced. The containerd hosts.toml files
are the program's too (`node_files`), with the sandbox's addresses (`node_endpoints`). How each
kind of process is configured, started and checked lives in its own module: s3.py, redis.py,
registry.py (replicas, caches, stand-in), lb.py, token.py and front.py (with --auth: the token server
and the auth proxy in front of each replica), prometheus.py.

State directory layout (mode 0700):
  secrets.json   generated credentials (0600): what pulumi-random generates in the program
  state.json     the port plan and every started process (pid + start time)
  config/        rendered configs (0600: they hold secrets), one directory per registry process
  tls/           with --tls: ca.key, server.key/.crt (0600) and ca/ca.crt, the directory clients
                 trust (`skopeo --cert-dir <state>/tls/ca`, `curl --cacert <state>/tls/ca/ca.crt`)
  s3/ redis/ upstream/   data (kept across down/up); prometheus/ the TSDB of --with-prometheus
  logs/          one log per process
  certs.d/       the containerd hosts.toml files for this sandbox (`ctr images pull --hosts-dir <state>/certs.d`);
                 with --auth the private registry's carry the node identity's header (0600)
"""
from __future__ import annotations

import dataclasses
import json
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from registry_ha.auth import basic_authorization
from registry_ha.containerd import NodeEndpoints, NodeFiles, node_files
from registry_ha.registry_config import Credentials, Endpoints
from registry_ha.sandbox import front, lb, procs, prometheus, redis, registry, s3, token
from registry_ha.sandbox.binaries import binary_version, lane_image, resolve_binaries
from registry_ha.sandbox.errors import SandboxError, SandboxUsageError
from registry_ha.sandbox.ports import Ports
from registry_ha.sandbox.secrets import load_or_create_secrets, load_or_create_user_passwords
from registry_ha.sandbox.tls import make_tls
from registry_ha.settings import CacheSettings, Settings, load_settings
from registry_ha.stacks import SECURE_PLACEHOLDER, read_stack_file

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_STATE_DIR = REPO_ROOT / ".sandbox"
DEFAULT_LB_PORT = 5000
DEFAULT_PORT_BASE = 25000
MAX_REPLICAS = 20
SANDBOX_TLS_SECRET = "sandbox-tls"  # stands in for tlsSecretName: the sandbox makes its own certificate

# role -> the module that configures, starts and checks that kind of process
KINDS = {"s3": s3, "redis": redis, "registry": registry, "mirror": registry, "upstream": registry, "lb": lb,
         "token": token, "front": front, "prometheus": prometheus}

__all__ = ["Sandbox", "SandboxError", "Component", "stack_config", "DEFAULT_STATE_DIR"]


def stack_config(stack: str, repo_root: Path = REPO_ROOT) -> tuple[dict, Optional[str], list[str]]:
    """The stack's config from Pulumi.<stack>.yaml, its aws:region, and notes about values the sandbox
    cannot use (encrypted secrets: only the stack's secrets provider can read them)."""
    config, secret_keys = read_stack_file(stack, repo_root)
    notes: list[str] = []
    for key in sorted(secret_keys):
        if config.get(key) == SECURE_PLACEHOLDER:
            notes.append(f"{key}: an encrypted secret, not readable without Pulumi; left unset")
            del config[key]
    _anonymous_caches(config, notes)
    region = config.pop("aws:region", None)
    return {k: v for k, v in config.items() if k.startswith("registry-ha:")}, region, notes


def _anonymous_caches(config: dict, notes: list[str]) -> None:
    """Caches with a username need their password from mirrorPasswords, a Pulumi secret the sandbox
    cannot read: they pull anonymously here."""
    config.pop("registry-ha:mirrorPasswords", None)
    raw = config.get("registry-ha:mirrors")
    try:
        entries = json.loads(raw) if raw is not None else None
    except json.JSONDecodeError:
        return  # the key's own check reports it
    if not isinstance(entries, list):
        return
    for entry in entries:
        if isinstance(entry, dict) and "username" in entry:
            notes.append(f"registry-ha:mirrors: the {entry.get('name')} cache's password is a Pulumi secret; "
                         "in the sandbox it pulls anonymously")
            del entry["username"]
    config["registry-ha:mirrors"] = json.dumps(entries)


def parse_upstreams(values: Optional[list[str]], caches: tuple[CacheSettings, ...]) -> dict[str, str]:
    """`--upstream NAME=URL` (repeatable; NAME a cache's name or host), or one plain URL when the stack
    has a single cache -> {cache name: URL}. Raises ValueError with the argument's problem."""
    by_key = {c.name: c.name for c in caches} | {c.host: c.name for c in caches}
    chosen: dict[str, str] = {}
    for value in values or []:
        name, sep, url = value.partition("=")
        if not sep:
            if len(caches) != 1:
                raise ValueError(f"NAME=URL when the stack has {len(caches)} caches ({', '.join(c.name for c in caches)}); got {value!r}")
            name, url = caches[0].name, value
        if name not in by_key:
            raise ValueError(f"NAME is a cache's name or host ({', '.join(sorted(by_key))}); got {name!r}")
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"URL is http(s)://HOST:PORT; got {url!r}")
        chosen[by_key[name]] = url.rstrip("/")
    return chosen


@dataclass
class Component:
    name: str
    role: str  # s3 | redis | registry | mirror (a cache) | upstream | lb | prometheus
    address: str
    ports: list[int]
    argv: list[str] = field(default_factory=list)
    pid: Optional[int] = None
    started: Optional[int] = None
    skipped: Optional[str] = None  # why a component that may fail (the cache) is not running


class Sandbox:
    """One sandbox, identified by its state directory."""

    def __init__(
        self,
        state_dir: Path | str = DEFAULT_STATE_DIR,
        stack: str = "staging",
        lb_port: int = DEFAULT_LB_PORT,
        port_base: int = DEFAULT_PORT_BASE,
        upstream: Optional[str | list[str] | dict[str, str]] = None,
        repo_root: Path = REPO_ROOT,
        auth: bool = False,
        tls: bool = False,
        registry_version: Optional[str] = None,
        real_upstreams: bool = False,
        overrides: Optional[dict[str, str]] = None,
        with_prometheus: bool = False,
    ):
        """upstream: caches' upstream URLs ({cache name: URL}, or `--upstream` values: NAME=URL, or one
        URL for a single cache); a cache not named proxies a local stand-in (or, with real_upstreams,
        its remoteUrl, e.g. Docker Hub). auth / tls: turn on authEnabled / tlsSecretName on top of the
        stack's config. registry_version: run another registry version with the stack's config
        rendered for it (2.8: Debian's docker-registry). overrides: stack config keys set on top of the
        stack file (`{"mirrors": "[...]"}`), as `pulumi config set` would. with_prometheus: a Prometheus
        scraping the registries with the program's alert rules (sandbox/prometheus.py)."""
        self.state_dir = Path(state_dir).resolve()
        self.stack = stack
        self.ports = Ports(lb=lb_port, base=port_base)
        self.repo_root = repo_root
        self.real_upstreams = real_upstreams
        self.registry_version = registry_version
        self.with_prometheus = with_prometheus
        raw, region, self.notes = stack_config(stack, repo_root)
        self.overrides = dict(overrides or {})
        raw.update({f"registry-ha:{key}": value for key, value in self.overrides.items()})
        if auth:
            raw["registry-ha:authEnabled"] = "true"
        if tls and not any(k.endswith("tlsSecretName") and v for k, v in raw.items()):
            raw["registry-ha:tlsSecretName"] = SANDBOX_TLS_SECRET
        image = lane_image(registry_version)
        if auth and image is not None and not image.startswith("registry:3"):
            # named after the arguments given (the stack's authEnabled alone gets the config key's line)
            raise SandboxUsageError(f"--auth: token auth needs Distribution 3.x, not --registry-version {registry_version}")
        if image is not None:
            raw["registry-ha:image"] = image
            raw.pop("registry-ha:configSchema", None)
        self.settings: Settings = load_settings(raw, stack, aws_region=region)
        self.auth = self.settings.access.auth_enabled
        self.tls = self.settings.access.tls
        if self.settings.registry.replicas > MAX_REPLICAS:
            raise SandboxUsageError(f"registry-ha:replicas: the sandbox runs at most {MAX_REPLICAS} replicas")
        if isinstance(upstream, dict):
            self.upstreams = dict(upstream)
        else:
            try:
                self.upstreams = parse_upstreams([upstream] if isinstance(upstream, str) else upstream, self.settings.caches)
            except ValueError as exc:
                raise SandboxError(f"--upstream: {exc}") from None
        stand_in = f"http://127.0.0.1:{self.ports.upstream}"
        for cache in self.settings.caches:
            if cache.name not in self.upstreams:
                self.upstreams[cache.name] = cache.remote_url if real_upstreams else stand_in
        self.upstream_stand_in = stand_in in self.upstreams.values()
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
            upstream=state.get("upstreams") or {},
            repo_root=Path(state.get("repo_root", REPO_ROOT)),
            auth=state.get("auth", False),
            tls=state.get("tls", False),
            registry_version=state.get("registry_version"),
            real_upstreams=state.get("real_upstreams", False),
            overrides=state.get("overrides"),
            with_prometheus=state.get("with_prometheus", False),
        )
        for name, rec in state["components"].items():
            comp = sandbox.components.get(name)
            if comp is None:  # recorded by a different plan: still ours to stop
                comp = sandbox.components[name] = Component(name, rec["role"], rec["address"], rec["ports"])
            comp.pid, comp.started, comp.argv = rec.get("pid"), rec.get("started"), rec.get("argv", [])
            comp.skipped = rec.get("skipped")
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
    def config_dir(self) -> Path:
        return self.state_dir / "config"

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

    def upstream_password(self, cache: CacheSettings) -> Optional[str]:
        """A cache's upstream password: never known to the sandbox (a Pulumi secret)."""
        return None

    def cache_component(self, cache: CacheSettings) -> str:
        return cache.component_name

    def cache_of(self, name: str) -> CacheSettings:
        """The cache a component runs (its component name: dockerhub-cache, ghcr-cache, ...)."""
        return next(c for c in self.settings.caches if c.component_name == name)

    @property
    def mirror_addresses(self) -> dict[str, str]:
        """upstream host -> its cache's address, for the caches planned and not skipped (the program's mirrorAddress)."""
        addresses = {}
        for cache in self.settings.caches:
            comp = self.components.get(cache.component_name)
            if comp is not None and comp.skipped is None:
                addresses[cache.host] = comp.address
        return addresses

    def mirror_address(self, host: str = "docker.io") -> Optional[str]:
        return self.mirror_addresses.get(host)

    def node_endpoints(self) -> NodeEndpoints:
        """The program's NodeEndpoints with the sandbox's addresses: the caches, their upstreams (the
        fallback `server`), and the LB for both of the private registry's names (haproxy is the
        sandbox's LoadBalancer and NodePort)."""
        registry = f"{self.scheme}://{self.endpoint}"
        return NodeEndpoints(
            caches={host: f"http://{address}" for host, address in self.mirror_addresses.items()},
            upstreams={cache.host: self.upstreams[cache.name] for cache in self.settings.caches},
            registry=registry,
            node_port=registry,
        )

    def node_authorization(self) -> Optional[str]:
        """With auth: the node identity's Authorization header, which the program writes into the private
        registry's hosts.toml (0600); None for an open registry."""
        if not self.auth:
            return None
        user = self.settings.access.node_user
        return basic_authorization(user, self.user_passwords()[user])

    def node_files(self, authorization: Optional[str] = None) -> NodeFiles:
        ca = self.ca_cert.read_text() if self.tls and self.ca_cert.exists() else None
        settings = self.settings
        if ca is not None:  # the sandbox's own CA stands in for tlsCaCertificate
            settings = dataclasses.replace(settings, nodes=dataclasses.replace(settings.nodes, ca_certificate=ca))
        return node_files(settings, self.node_endpoints(), authorization)

    def write_node_files(self, directory: Path | str, authorization: Optional[str] = None) -> list[Path]:
        """The containerd hosts.toml files (a certs.d directory) for this sandbox; the paths written."""
        written = []
        for node_file in self.node_files(authorization).files:
            path = Path(directory) / node_file.path
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(node_file.content)
            path.chmod(node_file.mode)
            written.append(path)
        return written

    @property
    def certs_dir(self) -> Path:
        return self.state_dir / "certs.d"

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
            # with auth the replica's address is its auth proxy's (the registry sits behind it on a socket)
            ports = [p.replica_debug(i)] if self.auth else [p.replica(i), p.replica_debug(i)]
            comps.append(Component(name, "registry", f"127.0.0.1:{p.replica(i)}", ports))
        if self.auth:
            comps.append(Component("token", "token", f"127.0.0.1:{p.token}", [p.token]))
            replica_ports = [p.replica(i) for i in range(1, len(self.replica_names()) + 1)]
            comps.append(Component("front", "front", f"127.0.0.1:{replica_ports[0]}", replica_ports))
        if self.upstream_stand_in:
            comps.append(Component("upstream", "upstream", f"127.0.0.1:{p.upstream}", [p.upstream]))
        for i, cache in enumerate(self.settings.caches):
            comps.append(Component(cache.component_name, "mirror", f"127.0.0.1:{p.cache(i)}", [p.cache(i), p.cache_debug(i)]))
        comps.append(Component("lb", "lb", self.endpoint, [p.lb]))
        self.components = {c.name: c for c in comps}
        if self.with_prometheus:
            self.enable_prometheus()

    def enable_prometheus(self) -> None:
        """Plan Prometheus (last: it scrapes the others), also next to a sandbox that is already up;
        `start("prometheus")` starts it."""
        self.with_prometheus = True
        port = self.ports.prometheus
        self.components.setdefault("prometheus", Component("prometheus", "prometheus", f"127.0.0.1:{port}", [port]))

    def debug_address(self, name: str) -> str:
        if self.components[name].role == "mirror":
            index = self.settings.caches.index(self.cache_of(name))
            return f"127.0.0.1:{self.ports.cache_debug(index)}"
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

    def endpoints(self, listen: str, debug: str, s3_endpoint: Optional[str] = None, bucket: Optional[str] = None,
                  cache: Optional[CacheSettings] = None) -> Endpoints:
        return Endpoints(
            s3_bucket=bucket or self.bucket,
            s3_region=self.settings.storage.region,
            redis_addr=self.redis_address,
            s3_endpoint=s3_endpoint or self.s3_endpoint,
            listen_addr=listen,
            debug_addr=debug,
            proxy_remote_url=self.upstreams[cache.name] if cache else None,
        )

    def registry_config(self, name: str, credentials: Optional[Credentials] = None) -> dict:
        return registry.config(self, name, credentials)

    def _write_configs(self) -> None:
        self.config_dir.mkdir(parents=True, exist_ok=True)
        if self.tls:
            make_tls(self.tls_dir, self.settings.exposure.hostname)
        if self.auth:
            token.write_config(self)
            front.write_config(self)
        s3.write_config(self)
        redis.write_config(self)
        registry.write_configs(self)
        lb.write_config(self)

    def argv(self, name: str, binaries: dict[str, str]) -> list[str]:
        return KINDS[self.components[name].role].argv(self, name, binaries)

    # ---- health
    def healthy(self, name: str) -> bool:
        comp = self.components[name]
        if not procs.is_running(comp.pid, comp.started):
            return False
        return KINDS[comp.role].healthy(self, name)

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

    def panic_line(self, name: str) -> Optional[str]:
        return registry.panic_line(self, name)

    # ---- state
    def save(self) -> None:
        state = {
            "stack": self.stack,
            "lb_port": self.ports.lb,
            "port_base": self.ports.base,
            "upstreams": self.upstreams,
            "upstream_stand_in": self.upstream_stand_in,
            "real_upstreams": self.real_upstreams,
            "overrides": self.overrides,
            "with_prometheus": self.with_prometheus,
            "registry_version": self.registry_version,
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
                    "skipped": c.skipped,
                }
                for name, c in self.components.items()
            },
        }
        tmp = self.state_dir / "state.json.tmp"
        tmp.write_text(json.dumps(state, indent=2))
        tmp.replace(self.state_dir / "state.json")

    def running(self) -> list[str]:
        return [n for n, c in self.components.items() if procs.is_running(c.pid, c.started)]

    def binaries(self, install: bool = False, out=sys.stderr) -> dict[str, str]:
        return resolve_binaries(self.settings.registry.image, install=install, out=out)

    # ---- lifecycle
    def start(self, name: str, binaries: Optional[dict[str, str]] = None, timeout: float = 60.0) -> None:
        """Start one component (if not running) and wait until it is healthy."""
        comp = self.components[name]
        if procs.is_running(comp.pid, comp.started):
            return
        binaries = binaries or self.binaries()
        busy = [port for port in comp.ports if not procs.port_free(port)]
        if busy:
            raise SandboxError(
                f"{name}: port(s) {', '.join(procs.port_busy_reason(p) for p in busy)} on 127.0.0.1 already in use; "
                "choose other ports with --port-base / --port"
            )
        kind = KINDS[comp.role]
        if hasattr(kind, "before_start"):
            kind.before_start(self, name)
        comp.argv = self.argv(name, binaries)
        comp.skipped = None
        env = procs.minimal_env(self.state_dir, kind.extra_env(self, name) if hasattr(kind, "extra_env") else None)
        comp.pid, comp.started = procs.spawn(comp.argv, self.log_path(name), env, self.state_dir)
        self.save()
        self._wait_healthy(name, timeout)
        if hasattr(kind, "after_start"):
            kind.after_start(self, name)

    def stop(self, name: str, timeout: float = 15.0) -> bool:
        comp = self.components[name]
        was = procs.stop(comp.pid, comp.started, timeout)
        comp.pid = comp.started = None
        self.save()
        return was

    def up(self, out=sys.stderr) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.state_dir, 0o700)
        binaries = self.binaries(install=True, out=out)
        previous = Sandbox.from_state(self.state_dir)
        if previous is not None:
            alive = previous.running()
            changed = (
                previous.ports != self.ports
                or previous.stack != self.stack
                or previous.upstreams != self.upstreams
                or previous.auth != self.auth
                or previous.tls != self.tls
                or previous.settings.registry.image != self.settings.registry.image
                or previous.overrides != self.overrides
            )
            if alive and changed:
                raise SandboxError(
                    f"a sandbox is already up in {self.state_dir} ({previous.stack}, LB {previous.endpoint}); "
                    "run `local down` first"
                )
            for name, comp in previous.components.items():
                if name in self.components:
                    self.components[name].pid, self.components[name].started = comp.pid, comp.started
                elif previous.stop(name):  # e.g. Prometheus of an earlier `up --with-prometheus`
                    out.write(f"local: stopped {name} (not in this plan)\n")
        self.secrets()
        self._write_configs()
        self.save()
        try:
            for name in self.components:
                t0 = time.monotonic()
                try:
                    self.start(name, binaries)
                except SandboxError as exc:
                    if self.components[name].role != "mirror":
                        raise
                    # The private registry does not need the caches. A 2.8 cache contacts its upstream
                    # while starting and panics when it cannot reach it: keep going, say why.
                    self.stop(name)
                    reason = self.panic_line(name) or str(exc).splitlines()[0]
                    self.components[name].skipped = reason
                    self.save()
                    out.write(f"local: warning: the cache {name} is skipped: {reason}\n")
                    continue
                out.write(f"local: {name:<15} up at {self.components[name].address} ({time.monotonic() - t0:.1f}s)\n")
        except BaseException:
            self.down(out=out)
            raise
        shutil.rmtree(self.certs_dir, ignore_errors=True)
        self.write_node_files(self.certs_dir, self.node_authorization())

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
        components = []
        for c in self.components.values():
            binary = c.argv[0] if c.argv else None
            components.append(
                {
                    "name": c.name,
                    "role": c.role,
                    "pid": c.pid if procs.is_running(c.pid, c.started) else None,
                    "address": c.address,
                    "version": binary_version(binary) if binary else None,
                    "healthy": self.healthy(c.name),
                    "skipped": c.skipped,
                }
            )
        return {
            "stack": self.stack,
            "endpoint": self.endpoint,
            "scheme": self.scheme,
            "registry_image": self.settings.registry.image,
            "auth_users": list(self.settings.access.auth_users),
            "ca_cert": str(self.ca_cert) if self.ca_cert else None,
            "mirrors": self.mirror_addresses,
            "mirror_upstreams": {cache.host: self.upstreams[cache.name] for cache in self.settings.caches},
            "certs_dir": str(self.certs_dir),
            "components": components,
        }

    # ---- S3 access for the sandbox itself and the tests (admin identity, never the registry's)
    def s3_client(self, admin: bool = True):
        return s3.client(self, admin)
