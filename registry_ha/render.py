"""`deploy-registry-ha.sh render <stack> [--out DIR] [--show-secrets]`

Evaluates the program for a stack under the mock engine (no cloud credentials, no Pulumi
CLI) and writes what it would deploy: one multi-document YAML per component with the
Kubernetes manifests, and aws.json with every AWS resource and its inputs. Secret values
are redacted unless --show-secrets; even then they are the mock engine's stand-ins, never
the stack's real secrets (those live only in the Pulumi state).

It also writes what nodes need, for operators who provision nodes with their own tools:
nodes/etc/containerd/certs.d/<registry>/hosts.toml (the files nodeConfigurator writes, from
the same builder) and nodes/docker-daemon.json, the Docker daemon's equivalent. A cache whose
ClusterIP is not pinned in its mirrors entry gets its address only when deployed: its file is
left out, and render says so. With authEnabled the private registry's files carry the node
identity's Authorization header, mode 0600: `[secret]` unless --show-secrets (then the mock
password's), since the real password exists only in the Pulumi state.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import yaml

from registry_ha.auth import basic_authorization
from registry_ha.containerd import CERTS_D, NodeFiles, cluster_endpoints, docker_daemon_json, node_files
from registry_ha.exit_codes import FAILURE, USAGE
from registry_ha.mock_engine import REPO_ROOT, ProgramRun, normalize, redact_secrets, run_program, unwrap_secrets
from registry_ha.settings import Settings, SettingsError, load_settings
from registry_ha.stacks import check_no_collision, read_stack_file

NODES_DIR = "nodes"
DOCKER_DAEMON_FILE = "docker-daemon.json"
REDACTED = "[secret]"


class _ArgumentParser(argparse.ArgumentParser):
    def error(self, message: str):  # one line and exit 2, like every other command
        self.exit(USAGE, f"error: render: {message}\nusage: deploy-registry-ha.sh render <stack> [--out DIR] [--show-secrets]\n")


def render_documents(run: ProgramRun, show_secrets: bool = False) -> tuple[dict[str, list[dict]], list[dict]]:
    """(component -> Kubernetes manifests, AWS resources) of a program run."""
    clean = unwrap_secrets if show_secrets else redact_secrets
    manifests: dict[str, list[dict]] = {}
    aws: list[dict] = []
    for resource in run.resources:
        if not resource.custom:
            continue
        component = run.component_of(resource)
        body = normalize(clean(resource.inputs))
        if resource.type.startswith("kubernetes:"):
            manifests.setdefault(component, []).append(_kubernetes_order(body))
        elif resource.type.startswith("aws:"):
            aws.append({"type": resource.type, "name": resource.name, "component": component, "inputs": body})
    return manifests, aws


def _kubernetes_order(manifest: dict) -> dict:
    first = ("apiVersion", "kind", "metadata", "type")
    ordered = {k: manifest[k] for k in first if k in manifest}
    ordered.update({k: v for k, v in manifest.items() if k not in first})
    return ordered


def node_authorization(run: ProgramRun, settings: Settings, show_secrets: bool = False) -> str | None:
    """The header the program puts in the private registry's hosts.toml (authEnabled): the node identity's,
    from the run's secret output registryCredentials with --show-secrets, else redacted."""
    if not settings.access.auth_enabled:
        return None
    if not show_secrets:
        return REDACTED
    password = unwrap_secrets(run.outputs["registryCredentials"])[settings.access.node_user]
    return basic_authorization(settings.access.node_user, password)


def stack_node_files(settings: Settings, authorization: str | None = None) -> tuple[NodeFiles, dict]:
    """(the containerd files, the Docker daemon config) with the addresses known before deploying:
    pinned cache ClusterIPs only."""
    endpoints = cluster_endpoints(settings, {cache.name: cache.cluster_ip for cache in settings.caches})
    return node_files(settings, endpoints, authorization), docker_daemon_json(settings, endpoints)


def write_node_files(settings: Settings, out: Path, authorization: str | None = None) -> tuple[list[Path], NodeFiles]:
    files, daemon = stack_node_files(settings, authorization)
    root = out / NODES_DIR
    written = []
    for node_file in files.files:
        path = root / CERTS_D.lstrip("/") / node_file.path
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(node_file.content)
        path.chmod(node_file.mode)
        written.append(path)
    daemon_path = root / DOCKER_DAEMON_FILE
    daemon_path.write_text(json.dumps(daemon, indent=2) + "\n")
    written.append(daemon_path)
    return written, files


def write_render(run: ProgramRun, out: Path, show_secrets: bool = False, settings: Settings | None = None) -> list[Path]:
    manifests, aws = render_documents(run, show_secrets)
    out.mkdir(parents=True, exist_ok=True)
    for stale in list(out.glob("*.yaml")) + list(out.glob("*.json")):
        stale.unlink()
    shutil.rmtree(out / NODES_DIR, ignore_errors=True)
    written = []
    for component, documents in sorted(manifests.items()):
        path = out / f"{component}.yaml"
        path.write_text(yaml.safe_dump_all(documents, sort_keys=False))
        written.append(path)
    aws_path = out / "aws.json"
    aws_path.write_text(json.dumps(aws, indent=2, sort_keys=False) + "\n")
    written.append(aws_path)
    outputs = {k: ("[secret]" if k in run.secret_outputs and not show_secrets else v) for k, v in run.outputs.items()}
    if settings is not None:
        node_paths, files = write_node_files(settings, out, node_authorization(run, settings, show_secrets))
        written += node_paths
        outputs["nodeFiles"] = [str(path.relative_to(out)) for path in node_paths]
        outputs["nodeFilesSkipped"] = list(files.skipped)
    outputs_path = out / "outputs.json"
    outputs_path.write_text(json.dumps(outputs, indent=2) + "\n")
    written.append(outputs_path)
    return written


def main(argv: list[str]) -> int:
    parser = _ArgumentParser(prog="deploy-registry-ha.sh render", add_help=True)
    parser.add_argument("stack", help="a stack with a Pulumi.<stack>.yaml (staging, production, ...)")
    parser.add_argument("--out", type=Path, help="output directory (default build/<stack>)")
    parser.add_argument("--show-secrets", action="store_true", help="write the mock secret values instead of [secret]")
    args = parser.parse_args(argv)
    out = args.out or REPO_ROOT / "build" / args.stack
    try:
        config, secret_keys = read_stack_file(args.stack)
        check_no_collision(args.stack)
        run = run_program(args.stack)  # the program warns about provider-key typos, as under `pulumi up`
        settings = load_settings(config, args.stack, secret_keys, aws_region=config.get("aws:region"))
    except SettingsError as error:
        sys.stderr.write(f"error: {error}\n")
        return USAGE
    try:
        written = write_render(run, out, args.show_secrets, settings)
    except OSError as error:
        sys.stderr.write(f"error: render: cannot write {out}: {error.strerror or error}\n")
        return FAILURE
    kubernetes = sum(1 for r in run.resources if r.custom and r.type.startswith("kubernetes:"))
    aws = sum(1 for r in run.resources if r.custom and r.type.startswith("aws:"))
    print(f"rendered {args.stack}: {kubernetes} Kubernetes objects, {aws} AWS resources -> {out}")
    for path in written:
        print(f"  {path.relative_to(out) if path.is_relative_to(out) else path}")
    files, _ = stack_node_files(settings)
    for reason in files.skipped:
        print(f"  not written: {reason}")
    if settings.access.auth_enabled:
        print(
            f"\nauthEnabled: the private registry's hosts.toml carry the {settings.access.node_user} identity's Authorization"
            f" header (0600){'' if args.show_secrets else ', written as ' + REDACTED + ': put in the real one'}"
            " (docs/caches-and-nodes.md#credentials); containerd sends it to the token realm from 2.1 on,"
            " older nodes pull with pullSecretNamespaces"
        )
    daemon = json.loads((out / NODES_DIR / DOCKER_DAEMON_FILE).read_text())
    print(
        f"\ncontainerd: copy {NODES_DIR}/{CERTS_D.lstrip('/')}/ to {CERTS_D}/ on each node (or set nodeConfigurator: on);"
        f" config.toml's registry config_path must be {CERTS_D}, one directory"
        f"\nDocker daemon equivalent ({NODES_DIR}/{DOCKER_DAEMON_FILE}; registry-mirrors covers Docker Hub only,"
        f" the other upstreams' caches cannot be used by dockerd):\n{json.dumps(daemon, indent=2)}"
    )
    return 0
