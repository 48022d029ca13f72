"""Stacks as Pulumi sees them: any `Pulumi.<stack>.yaml` next to `Pulumi.yaml` is a stack.

Reads a stack file the way the CLI hands it to the program (strings; lists and maps as
JSON; `secure:` values replaced by a placeholder, since only the stack's secrets
provider can decrypt them), refuses stacks that would collide with another stack's
objects on the same cluster, and warns about `aws:`/`kubernetes:` keys the providers
would ignore (a typo such as `aws:regoin`).
"""
from __future__ import annotations

import difflib
import importlib.util
import json
import re
from pathlib import Path
from typing import Any, Optional

import yaml

from registry_ha.settings import PROJECT, SettingsError, resolve_values
from registry_ha.validators import STACK_NAME_RULE, is_stack_name

REPO_ROOT = Path(__file__).resolve().parent.parent
SECURE_PLACEHOLDER = "mock-secure-value"
DEFAULT_CONTEXT = "(the kubeconfig's current context)"


def stack_names(repo_root: Path = REPO_ROOT) -> list[str]:
    """Stacks that have a stack file, sorted."""
    return sorted(p.name[len("Pulumi.") : -len(".yaml")] for p in repo_root.glob("Pulumi.*.yaml"))


def require_stack(stack: str, repo_root: Path = REPO_ROOT) -> Path:
    """The stack file of `stack`, or a one-line error listing the stack files that exist."""
    if not is_stack_name(stack):
        raise SettingsError(f"stack {stack!r}: a stack name of {STACK_NAME_RULE}")
    path = repo_root / f"Pulumi.{stack}.yaml"
    if not path.exists():
        have = ", ".join(f"Pulumi.{name}.yaml" for name in stack_names(repo_root)) or "none"
        raise SettingsError(
            f"stack {stack!r}: no Pulumi.{stack}.yaml in {repo_root} (stack files: {have}); "
            f"create it with `pulumi stack init {stack}` and set its config"
        )
    return path


def _config_string(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    return json.dumps(value)


def read_stack_file(stack: str, repo_root: Path = REPO_ROOT) -> tuple[dict[str, str], set[str]]:
    """`config:` of Pulumi.<stack>.yaml as the CLI hands it to the program: (values, secret keys)."""
    path = require_stack(stack, repo_root)
    try:
        document = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise SettingsError(f"{path.name}:{where}: not valid YAML") from None
    if not isinstance(document, dict):
        raise SettingsError(f"{path.name}: must be a map with a `config:` map (got a {type(document).__name__})")
    config = document.get("config") or {}
    if not isinstance(config, dict):
        raise SettingsError(f"{path.name}: `config:` must be a map of key: value (got a {type(config).__name__})")
    values: dict[str, str] = {}
    secret_keys: set[str] = set()
    for key, value in config.items():
        full_key = key if ":" in str(key) else f"{PROJECT}:{key}"
        if isinstance(value, dict) and set(value) == {"secure"}:
            values[full_key] = SECURE_PLACEHOLDER
            secret_keys.add(full_key)
        elif isinstance(value, dict) and "value" in value and len(value) == 1:
            values[full_key] = _config_string(value["value"])
        else:
            values[full_key] = _config_string(value)
    _placeholder_passwords(values)
    return values, secret_keys


def _placeholder_passwords(values: dict[str, str]) -> None:
    """An encrypted `mirrorPasswords` is a map nobody here can read: stand in a placeholder password
    for each cache whose entry sets a username, so the map still has the shape the checks expect."""
    key = f"{PROJECT}:mirrorPasswords"
    if values.get(key) != SECURE_PLACEHOLDER:
        return
    from registry_ha.config_keys import DEFAULT_MIRRORS

    try:
        entries = json.loads(values[f"{PROJECT}:mirrors"]) if f"{PROJECT}:mirrors" in values else list(DEFAULT_MIRRORS)
    except json.JSONDecodeError:
        return  # the mirrors key's own check reports it
    if isinstance(entries, list):
        names = [e["name"] for e in entries if isinstance(e, dict) and "username" in e and isinstance(e.get("name"), str)]
        values[key] = json.dumps({name: SECURE_PLACEHOLDER for name in names})


# --------------------------------------------------------------------------- stacks sharing a cluster


def _placement(stack: str, repo_root: Path) -> tuple[str, str, int, bool]:
    """(kubernetes context, namespace, nodePort, whether it runs the node configurator) of a stack."""
    config, secret_keys = read_stack_file(stack, repo_root)
    values, _ = resolve_values(config, stack, secret_keys, aws_region=config.get("aws:region"))
    context = config.get("kubernetes:context", DEFAULT_CONTEXT)
    return context, values["namespace"], values["nodePort"], values["nodeConfigurator"] not in ("off", "false")


def check_no_collision(stack: str, repo_root: Path = REPO_ROOT) -> None:
    """Refuse a stack whose namespace or NodePort another stack file already takes on the same cluster.

    Object names are fixed per namespace and a NodePort is cluster-wide, so two such stacks would
    fight over the same objects. Stacks are assumed to target separate clusters
    (`kubernetes:context`); a shared cluster needs a namespace and a nodePort of their own.
    """
    context, namespace, node_port, configures_nodes = _placement(stack, repo_root)
    for other in stack_names(repo_root):
        if other == stack:
            continue
        try:
            other_context, other_namespace, other_port, other_configures = _placement(other, repo_root)
        except SettingsError:
            continue  # that stack's own problem, reported when it is used
        if other_context != context:
            continue
        if configures_nodes and other_configures:
            # One node configurator per cluster: both would write the same files on the same nodes.
            raise SettingsError(
                f"stack {stack!r}: nodeConfigurator is also on in Pulumi.{other}.yaml on the same kubernetes:context "
                f"{context}; one stack per cluster may configure its nodes"
            )
        if other_namespace == namespace or other_port == node_port:
            clash = f"namespace {namespace!r}" if other_namespace == namespace else f"nodePort {node_port}"
            raise SettingsError(
                f"stack {stack!r}: {clash} is also used by Pulumi.{other}.yaml on the same kubernetes:context "
                f"{context}; give each stack its own kubernetes:context, or its own namespace and nodePort"
            )


# --------------------------------------------------------------------------- provider keys


def _camel(snake: str) -> str:
    head, *rest = snake.split("_")
    return head + "".join(part.title() for part in rest)


def _package_file(package: str, relative: str) -> Optional[Path]:
    spec = importlib.util.find_spec(package)  # finds the package without importing it (pulumi_aws is large)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / relative
    return path if path.exists() else None


def provider_config_keys(provider: str) -> Optional[set[str]]:
    """The config keys a provider reads (`aws:region` -> region), from its installed Python SDK."""
    keys: set[str] = set()
    package = {"aws": "pulumi_aws", "kubernetes": "pulumi_kubernetes"}[provider]
    vars_file = _package_file(package, "config/vars.py")
    if vars_file is not None:
        keys |= set(re.findall(r"__config__\.get\w*\('(\w+)'", vars_file.read_text()))
    provider_file = _package_file(package, "provider.py")
    if provider_file is not None:
        keys |= {_camel(k) for k in re.findall(r'__props__\.__dict__\["(\w+)"\]', provider_file.read_text())}
    return keys or None


def unknown_provider_keys(config: dict[str, Any]) -> list[str]:
    """Warnings for `aws:`/`kubernetes:` keys that the provider would silently ignore."""
    warnings = []
    known = {provider: provider_config_keys(provider) for provider in ("aws", "kubernetes")}
    for full_key in sorted(config):
        namespace, _, name = str(full_key).partition(":")
        keys = known.get(namespace)
        if not keys or name in keys:
            continue
        close = difflib.get_close_matches(name, sorted(keys), n=1, cutoff=0.7)
        hint = f"; did you mean {namespace}:{close[0]}?" if close else ""
        warnings.append(f"{full_key}: not a setting of the {namespace} provider, which would ignore it{hint}")
    return warnings
