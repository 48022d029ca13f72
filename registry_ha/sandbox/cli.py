"""`deploy-registry-ha.sh local up|down|status|gc|restart [--json]`.

gc and restart (Day-2 operations) live in gc.py and rollout.py.

Exit codes: 0 done (status: every started component healthy), 1 a runtime failure (a server did
not start, a component is unhealthy, garbage-collect failed), 2 bad arguments or bad stack config.
"""
from __future__ import annotations

import argparse
import json
import sys

from registry_ha import monitoring
from registry_ha.sandbox import prometheus
from registry_ha.exit_codes import DONE, FAILURE, USAGE
from registry_ha.sandbox.core import (
    DEFAULT_LB_PORT,
    DEFAULT_PORT_BASE,
    DEFAULT_STATE_DIR,
    Sandbox,
    SandboxError,
)
from registry_ha.sandbox.errors import SandboxUsageError
from registry_ha.sandbox.ports import PORT_BASE_RANGE
from registry_ha.settings import SettingsError
from registry_ha.toolchain import default_registry_version


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line and exit 2, like every other command
        self.exit(USAGE, f"error: local: {message}\n{self.format_usage()}")


def _port(value: str) -> int:
    if not value.isdigit() or not 1 <= int(value) <= 65535:
        raise argparse.ArgumentTypeError(f"a TCP port from 1 to 65535 (got {value!r})")
    return int(value)


def _port_base(value: str) -> int:
    low, high = PORT_BASE_RANGE
    if not value.isdigit() or not low <= int(value) <= high:
        raise argparse.ArgumentTypeError(f"an integer from {low} to {high}, so every planned port is valid (got {value!r})")
    return int(value)


def _parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="deploy-registry-ha.sh local",
        description="The HA registry topology (S3, Redis, N replicas behind haproxy, one cache per upstream) on 127.0.0.1.",
    )
    p.add_argument("action", choices=("up", "down", "status", "gc", "restart"))
    p.add_argument("--json", action="store_true", help="up/status/gc/restart: print the result as JSON")
    p.add_argument("--stack", default="staging", help="stack whose Pulumi.<stack>.yaml is rendered (default staging)")
    p.add_argument("--state-dir", default=str(DEFAULT_STATE_DIR), help="data, configs, secrets, logs (default .sandbox/)")
    p.add_argument("--port", type=_port, default=DEFAULT_LB_PORT, help="load balancer port (default 5000)")
    p.add_argument(
        "--port-base",
        type=_port_base,
        default=DEFAULT_PORT_BASE,
        help="every other port is base+0..99 (and base-9942 for weed's admin); default 25000",
    )
    p.add_argument("--registry-version", default=None,
                   help=f"registry to run with the stack's config rendered for it: {default_registry_version()} "
                        "(default, the image the program deploys) or 2.8 (Debian's docker-registry 2.8.2); "
                        "with restart: the version to upgrade (or downgrade) the running replicas to")
    p.add_argument("--rolling", action="store_true",
                   help="restart: one replica at a time, each out of the LB first and UP in it before the next")
    p.add_argument("--dry-run", action="store_true", help="gc: only report what would be deleted (stays writable)")
    p.add_argument("--delete-untagged", action="store_true", help="gc: also delete manifests no tag points at")
    upstreams = p.add_mutually_exclusive_group()
    upstreams.add_argument("--upstream", action="append", default=None, metavar="NAME=URL",
                           help="the upstream of one cache (NAME: its mirrors name or host, e.g. dockerhub=http://127.0.0.1:5999); "
                                "repeatable; a plain URL when the stack has one cache. Default: a local stand-in on 127.0.0.1")
    upstreams.add_argument("--real-upstreams", action="store_true",
                           help="every cache proxies its real upstream (its remoteUrl: Docker Hub, ghcr.io, ...): needs the internet")
    p.add_argument("--auth", action="store_true",
                   help="authEnabled: token auth with roles (docker_auth; the stack's authUsers, default admin, ci, "
                        "node, reader); passwords in <state-dir>/secrets.json")
    p.add_argument("--tls", action="store_true",
                   help="tlsSecretName: the replicas serve HTTPS with a sandbox CA's certificate (<state-dir>/tls/ca/ca.crt)")
    p.add_argument("--with-prometheus", action="store_true",
                   help="up: also run Prometheus (Debian's) on port-base+91, scraping the registries every 1 s "
                        "with the program's alert rules; prints its URL")
    return p


def _print_status(status: dict, as_json: bool) -> None:
    if as_json:
        print(json.dumps(status, indent=2))
        return
    print(f"registry (LB): {status['scheme']}://{status['endpoint']}  ({status['registry_image']})"
          + (f"  (auth: {', '.join(status['auth_users'])})" if status["auth_users"] else ""))
    if not status["mirror_upstreams"]:
        print("caches:        (none)")
    for host, upstream in status["mirror_upstreams"].items():
        address = status["mirrors"].get(host)
        print(f"cache {host + ':':<20} {address or 'skipped'} -> {upstream}")
    print(f"containerd:    ctr images pull --hosts-dir {status['certs_dir']} ...")
    for c in status["components"]:
        state = "healthy" if c["healthy"] else ("running, unhealthy" if c["pid"] else ("skipped" if c["skipped"] else "stopped"))
        version = c["version"] or "-"
        print(f"  {c['name']:<15} {c['role']:<10} {c['address']:<22} {version:<9} pid {str(c['pid'] or '-'):<8} {state}")


def all_healthy(status: dict) -> bool:
    """Every component that is not skipped is healthy."""
    return all(c["healthy"] for c in status["components"] if not c["skipped"])


def _up(args) -> int:
    sandbox = Sandbox(
        args.state_dir, stack=args.stack, lb_port=args.port, port_base=args.port_base, upstream=args.upstream,
        auth=args.auth, tls=args.tls, registry_version=args.registry_version, real_upstreams=args.real_upstreams,
        with_prometheus=args.with_prometheus,
    )
    for note in sandbox.notes:
        sys.stderr.write(f"local: note: {note}\n")
    sandbox.up()
    status = sandbox.status()
    _print_status(status, args.json)
    if not args.json:
        ep = status["endpoint"]
        dest = f"--dest-cert-dir {sandbox.ca_dir}" if sandbox.tls else "--dest-tls-verify=false"
        src = f"--src-cert-dir {sandbox.ca_dir}" if sandbox.tls else "--src-tls-verify=false"
        if sandbox.auth:  # the password stays in secrets.json: never on the terminal
            user = status["auth_users"][0]
            print(f"\ncredentials: users {', '.join(status['auth_users'])}; passwords in "
                  f"{sandbox.state_dir / 'secrets.json'} (auth_passwords)"
                  f"\n  skopeo login {'--cert-dir ' + str(sandbox.ca_dir) if sandbox.tls else '--tls-verify=false'} "
                  f"-u {user} --password-stdin {ep} < <(jq -r .auth_passwords.{user} "
                  f"{sandbox.state_dir / 'secrets.json'})")
        state_arg = f" --state-dir {args.state_dir}" if args.state_dir != str(DEFAULT_STATE_DIR) else ""
        # with auth the checks push and delete: as the first identity (admin by default), password from the file
        as_user = (f"REGISTRY_USERNAME={status['auth_users'][0]} REGISTRY_PASSWORD=\"$(jq -r .auth_passwords."
                   f"{status['auth_users'][0]} {sandbox.state_dir / 'secrets.json'})\" ") if sandbox.auth else ""
        print(
            f"\npush: skopeo copy --insecure-policy {dest} oci:DIR:TAG docker://{ep}/REPO:TAG"
            f"\npull: skopeo copy --insecure-policy {src} docker://{ep}/REPO:TAG dir:OUT"
            f"\ntest: {as_user}./scripts/test-registry-ha.sh --registry {ep}"
            + "".join(f" --mirror {address}" for address in list(status["mirrors"].values())[:1])
            + " --no-kubectl"  # the sandbox has no pods; kubectl's current context is some cluster
            + f"\nstop: ./scripts/deploy-registry-ha.sh local down{state_arg}"
        )
        if sandbox.with_prometheus:
            url = prometheus.url(sandbox)
            print(f"prometheus: {url}  (alerts: {url}/alerts, graphs: {url}/graph; "
                  f"the program's rules with for: and windows divided by {monitoring.SANDBOX.divisor}, see docs/monitoring.md)")
    return DONE if all_healthy(status) else FAILURE


def _gc(args) -> int:
    from registry_ha.sandbox.gc import gc

    result = gc(args.state_dir, dry_run=args.dry_run, delete_untagged=args.delete_untagged)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        summary = result["summary"]
        verb = "would delete" if args.dry_run else "deleted"
        if summary:
            print(f"{summary['blobs_marked']} blobs in use; {verb} {summary['blobs_eligible']} blobs and "
                  f"{summary['manifests_eligible']} untagged manifests")
        seconds = result["seconds"]
        print(f"took {seconds if args.dry_run else seconds['total']}s"
              + ("" if args.dry_run else f" (garbage-collect {seconds['garbage_collect']}s; read-only switch "
                                         f"{seconds['switch_on']}s on, {seconds['switch_off']}s off)"))
    if result["exit"] != 0:
        sys.stderr.write(f"local: error: garbage-collect failed (exit {result['exit']}); the replicas are writable "
                         f"again. Its output ends:\n{result['output_tail'][-800:]}\n")
        return 1
    return 0


def _restart(args) -> int:
    from registry_ha.sandbox.rollout import restart

    result = restart(args.state_dir, rolling=args.rolling, registry_version=args.registry_version)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"restarted {len(result['replaced'])} process(es) on {result['image']} in {result['seconds']}s"
              + (" (rolling)" if result["rolling"] else ""))
    return 0


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.action == "up":
            return _up(args)
        if args.action == "gc":
            return _gc(args)
        if args.action == "restart":
            return _restart(args)
        sandbox = Sandbox.from_state(args.state_dir)
        if args.action == "down":
            if sandbox is None:
                sys.stderr.write(f"local: nothing recorded in {args.state_dir}; nothing to stop\n")
                return DONE
            stopped = sandbox.down()
            sys.stderr.write(f"local: down ({len(stopped)} process(es) stopped; data kept in {sandbox.state_dir})\n")
            return DONE
        if sandbox is None:  # status of a sandbox never started: what `up` would run, all stopped
            sandbox = Sandbox(args.state_dir, stack=args.stack, lb_port=args.port, port_base=args.port_base,
                              auth=args.auth, tls=args.tls, registry_version=args.registry_version,
                              upstream=args.upstream, real_upstreams=args.real_upstreams)
        status = sandbox.status()
        _print_status(status, args.json)
        return DONE if all_healthy(status) else FAILURE
    except (SettingsError, SandboxUsageError) as exc:
        sys.stderr.write(f"local: error: {exc}\n")
        return USAGE
    except SandboxError as exc:
        sys.stderr.write(f"local: error: {exc}\n")
        return FAILURE
