"""Generated parts of README.md and docs/*.md, so that no table or figure is typed by hand.

A generated block sits between two markers:

    <!-- generated: NAME -->
    ...
    <!-- end generated: NAME -->

`python -m registry_ha.docs` rewrites every block from GENERATORS; `--check` exits 1 and
names the stale blocks instead (the test suite runs it).
"""
from __future__ import annotations

import functools
import json
import re
import sys
from pathlib import Path
from typing import Any, Callable

REPO_ROOT = Path(__file__).resolve().parent.parent
BLOCK = re.compile(r"(<!-- generated: (?P<name>[a-z0-9-]+) -->\n)(?P<body>.*?)(<!-- end generated: (?P=name) -->)", re.S)


def _show(value: Any) -> str:
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return "`true`" if value else "`false`"
    if isinstance(value, (list, tuple)):
        return "`" + json.dumps(list(value)) + "`" if value else "`[]`"
    return f"`{value}`"


def config_reference() -> str:
    """Every key: its default, what each shipped stack file sets, and its meaning."""
    from registry_ha.config_keys import KEYS
    from registry_ha.stacks import read_stack_file, stack_names

    stacks = stack_names(REPO_ROOT)
    files = {stack: read_stack_file(stack, REPO_ROOT)[0] for stack in stacks}
    header = "| key | default | " + " | ".join(f"`Pulumi.{s}.yaml`" for s in stacks) + " | meaning |"
    lines = [header, "|---" * (len(stacks) + 3) + "|"]
    for key in KEYS:
        set_in = []
        for stack in stacks:
            value = files[stack].get(f"registry-ha:{key.name}")
            set_in.append("" if value is None else ("(secret)" if key.secret else f"`{value}`"))
        secret = " (secret)" if key.secret else ""
        row = [f"`{key.name}`{secret}", _show(key.default), *set_in, key.help.replace("|", "/")]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def access_matrix() -> str:
    """Who can do what with the default identities (authUsers' default), from the ACL roles."""
    from registry_ha.auth import ROLE_ACTIONS, role_permissions
    from registry_ha.config_keys import KEYS_BY_NAME

    purpose = {"admin": "operators (deletes, garbage collection)", "ci": "CI (publishes images)",
               "node": "cluster nodes (`nodeUser`)", "reader": "humans"}
    yes_no = {True: "yes", False: "no"}
    lines = ["| identity | role (ACL actions) | for | pull | push | delete | list the catalog |", "|---|---|---|---|---|---|---|"]
    for entry in KEYS_BY_NAME["authUsers"].default:
        name, role = entry.split(":", 1)
        can = role_permissions(role)
        actions = ", ".join(ROLE_ACTIONS[role])
        lines.append(f"| `{name}` | {role} (`{actions}`) | {purpose.get(name, '')} | "
                     + " | ".join(yes_no[can[k]] for k in ("pull", "push", "delete", "catalog")) + " |")
    lines.append("| anonymous, or a wrong password | none | anyone else | no | no | no | no |")
    lines.append("| anyone reaching a pull-through cache (no credentials) | the cache is anonymous | pods, `clientCidrs` "
                 "| yes (upstream images) | no (405) | no | yes |")
    return "\n".join(lines) + "\n"


def _monitoring_settings():
    """Production's settings: its stack file turns the alerts and the dashboard on."""
    from registry_ha.settings import load_settings
    from registry_ha.stacks import read_stack_file

    config, secret_keys = read_stack_file("production", REPO_ROOT)
    return load_settings(config, "production", secret_keys, aws_region=config.get("aws:region"))


def _cell(text: str) -> str:
    text = re.sub(r"\{\{ \$labels\.(\w+) \}\}", r"<\1>", text)
    return text.replace("|", "\\|").replace("\n", " ")


def monitoring_runbook() -> str:
    """One row per alert of the PrometheusRule, with the anchor its runbook_url points at."""
    from registry_ha import monitoring

    lines = ["| alert | severity | `for:` | what it means | what to do first |", "|---|---|---|---|---|"]
    for alert in monitoring.alerts(_monitoring_settings()):
        lines.append(f'| <a id="{alert.anchor}"></a>`{alert.name}` | {alert.severity} | {alert.hold or "-"} | '
                     f"{_cell(alert.meaning)} | {_cell(alert.action)} |")
    return "\n".join(lines) + "\n"


def _alerts_record() -> dict:
    return json.loads((REPO_ROOT / "bench" / "alerts.json").read_text())


def monitoring_thresholds() -> str:
    """Each threshold key, its default, and what the healthy sandbox read on the same signal."""
    from registry_ha.config_keys import KEYS_BY_NAME

    record = _alerts_record()
    base = record["baseline"]
    redis = next(d for d in record["drills"] if d["alert"] == "RegistryRedisCacheErrors")

    def ms(seconds) -> str:
        return "no data" if seconds is None else f"{seconds * 1000:.0f} ms"

    readings = {
        "alert5xxPercent": f"{base['responses_5xx']:.0f} 5xx of {base['responses']:.0f} responses",
        "alertManifestP99": ms(base["manifest_p99_s"]),
        "alertCacheManifestP99": ms(base["cache_manifest_p99_s"]),
        "alertStorageP99": ms(base["storage_p99_s"]),
        "alertRedisErrors": f"{base['redis_lookup_errors']:.0f} (Redis up); "
                            f"{redis['lookup_errors_per_pull']} per pull with Redis down",
        "alertUpstreamErrorPercent": f"{base['cache_failed_share'] * 100:.0f}% of the cache's answers",
        "alertRestarts": "0",
    }
    lines = ["| key | default | healthy sandbox reading | meaning |", "|---|---|---|---|"]
    for name, reading in readings.items():
        key = KEYS_BY_NAME[name]
        lines.append(f"| `{name}` | `{key.default}` | {reading} | {_cell(key.help)} |")
    lines.append("")
    lines.append(f"Readings: `{record['command']}` on {record['date'][:10]} ({record['versions']['registry']}, "
                 f"Prometheus {record['versions']['prometheus']}): {base['pulls']} pulls of 3-layer images through "
                 f"the LB and the cache over {base['window']}, alerts firing meanwhile: "
                 f"{', '.join(base['firing']) or 'none'}.")
    return "\n".join(lines) + "\n"


def monitoring_timings() -> str:
    """How long each alert the sandbox can provoke took to fire (bench/alerts.json)."""
    from registry_ha import monitoring

    record = _alerts_record()
    t = monitoring.SANDBOX
    lines = ["| fault | alert | pending after | firing after | `for:` sandbox / cluster |", "|---|---|---|---|---|"]
    for d in record["drills"]:
        firing = "did not fire" if d["firing_s"] is None else f"{d['firing_s']:.1f} s"
        lines.append(f"| {d['fault']} | [`{d['alert']}`](#{d['alert'].lower()}) | {d['pending_s']:.1f} s | {firing} | "
                     f"{d['sandbox_for_s']} s / {d['cluster_for']} |")
    lines.append("")
    lines.append(f"Measured by `{record['command']}` on {record['date'][:10]} ({record['nproc']} cores): a sandbox "
                 f"with Prometheus scraping and evaluating every {record['scrape_interval']}; its rules divide every "
                 f"`for:` and window by {t.divisor} (at least {t.min_hold_s} s and {t.min_window_s} s).")
    return "\n".join(lines) + "\n"


def exit_codes() -> str:
    """The exit-code convention and, per command, what exits 1 and 2 (registry_ha/exit_codes.py)."""
    from registry_ha import exit_codes as ec

    lines = ["| code | meaning |", "|---|---|"]
    lines += [f"| {code} | {meaning} |" for code, meaning in sorted(ec.MEANING.items())]
    lines += [f"| {ec.INTERRUPTED} | interrupted (Ctrl-C) |", "", "| command | exits 2 (usage or config) | exits 1 (runtime failure) |",
              "|---|---|---|"]
    for command in ec.COMMANDS:
        usage = command.usage + (f"; {command.config}" if command.config else "")
        lines.append(f"| `{command.name}` | {usage} | {command.runtime} |")
    return "\n".join(lines) + "\n"


# `local status --json`: what each key holds (a key the sandbox adds or drops fails the generator)
STATUS_KEYS = {
    "stack": "the stack whose Pulumi.<stack>.yaml the sandbox renders",
    "endpoint": "the load balancer, what clients push to and pull from",
    "scheme": "http, or https with --tls",
    "registry_image": "the image whose Distribution version runs (3.1.1, or 2.8.2 with --registry-version 2.8)",
    "auth_users": "user names with --auth (passwords in <state-dir>/secrets.json, never printed)",
    "ca_cert": "with --tls: the CA certificate clients trust",
    "mirrors": "upstream host -> its cache's address (the program's mirrorAddress), for caches that run",
    "mirror_upstreams": "upstream host -> what its cache proxies: the local stand-in unless --upstream NAME=URL or --real-upstreams",
    "certs_dir": "containerd hosts.toml files for the sandbox's addresses (`ctr images pull --hosts-dir`)",
    "components": "one entry per process, below",
}
STATUS_COMPONENT_KEYS = {
    "name": "s3, redis, registry-N, upstream, <cache>-cache (one per mirrors entry), lb, prometheus; with --auth token, front",
    "role": "s3, redis, registry, upstream (the stand-in), mirror (a cache), lb, prometheus, token (docker_auth), front (the auth proxy)",
    "pid": "the process while it runs (identified by pid and start time), else null",
    "address": "where it listens",
    "version": "what the binary reports, e.g. 3.1.1 for the registry",
    "healthy": "its health check answers (registries: GET / 200, behind the auth proxy /debug/health; S3: /healthz; Redis: PING)",
    "skipped": "why a component that may fail (the cache) is not running, else null",
}


def _planned_status() -> dict:
    """The status of a default sandbox that is not running, its state directory shown as <state-dir>."""
    import tempfile

    from registry_ha.sandbox.core import Sandbox

    with tempfile.TemporaryDirectory() as state:
        text = json.dumps(Sandbox(state, stack="staging").status())
        return json.loads(text.replace(str(Path(state).resolve()), "<state-dir>"))


def status_json() -> str:
    """The keys of `local status --json`, with the default sandbox's values where they are fixed."""
    status = _planned_status()
    if set(status) != set(STATUS_KEYS) or set(status["components"][0]) != set(STATUS_COMPONENT_KEYS):
        raise KeyError("local status --json changed its keys: update STATUS_KEYS in registry_ha/docs.py")
    lines = ["| key | default sandbox | meaning |", "|---|---|---|"]
    for key, meaning in STATUS_KEYS.items():
        value = status[key]
        shown = "[...]" if key == "components" else f"`{json.dumps(value)}`"
        lines.append(f"| `{key}` | {shown} | {meaning} |")
    for key, meaning in STATUS_COMPONENT_KEYS.items():
        lines.append(f"| `components[].{key}` | | {meaning} |")
    return "\n".join(lines) + "\n"


def sandbox_ports() -> str:
    """What `local up` starts with the defaults (staging, --port 5000, --port-base 25000)."""
    import tempfile

    from registry_ha.sandbox.core import Sandbox

    with tempfile.TemporaryDirectory() as state:
        sandbox = Sandbox(state, stack="staging")
        lines = ["| process | role | address | every port it binds |", "|---|---|---|---|"]
        for c in sandbox.components.values():
            lines.append(f"| {c.name} | {c.role} | {c.address} | {', '.join(map(str, c.ports))} |")
    return "\n".join(lines) + "\n"


def deploy_output() -> str:
    """What `deploy` prints after `pulumi up`, for the staging stack file (mock LB IP and bucket suffix)."""
    from registry_ha.mock_engine import run_program
    from registry_ha.pulumi_ops import format_outputs

    return "```\n" + format_outputs(run_program("staging").outputs) + "```\n"


OUTPUTS = {
    "registryAddress": "what clients push to and pull from (REGISTRY_PRIMARY)",
    "secondaryAddress": "<nodeAddress>:<nodePort>, the fallback (REGISTRY_SECONDARY)",
    "loadBalancerAddress": "the internal LoadBalancer's IP or hostname once assigned",
    "hostsLine": "the line for /etc/hosts or the internal DNS",
    "mirrorAddress": "upstream host -> the address nodes' containerd use for its cache (<ClusterIP>:5000)",
    "bucketName": "the S3 bucket",
    "region": "its region",
    "iamUserName": "the IAM user whose access key the registry uses",
    "namespace": "the Kubernetes namespace",
    "registryCredentials": "secret; only with authEnabled: {user: password} "
                           "(`pulumi stack output --show-secrets registryCredentials`)",
}


def outputs() -> str:
    """Every stack output (staging, and staging with authEnabled for the secret one), with an example."""
    from registry_ha.mock_engine import run_program
    from registry_ha.stacks import read_stack_file

    config, secret_keys = read_stack_file("staging")
    with_auth = run_program("staging", config={**config, "registry-ha:authEnabled": "true"}, secret_keys=secret_keys)
    if set(with_auth.outputs) != set(OUTPUTS):
        raise KeyError("the program's outputs changed: update OUTPUTS in registry_ha/docs.py")
    lines = ["| output | example (staging) | meaning |", "|---|---|---|"]
    for name, meaning in OUTPUTS.items():
        example = "(secret)" if name in with_auth.secret_outputs else f"`{with_auth.outputs[name]}`"
        lines.append(f"| `{name}` | {example} | {meaning} |")
    return "\n".join(lines) + "\n"


@functools.lru_cache(maxsize=1)
def collected_tests() -> tuple[str, ...]:
    """Node ids of every test, as `pytest --collect-only` lists them."""
    import subprocess

    proc = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider"],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    ids = [line for line in proc.stdout.splitlines() if "::" in line]
    if proc.returncode != 0 or not ids:
        raise RuntimeError(f"pytest --collect-only failed:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    return tuple(ids)


def suite_counts() -> str:
    ids = collected_tests()
    integration = sum(1 for i in ids if i.startswith("tests/integration/"))
    bad_input = sum(1 for i in ids if i.startswith("tests/test_bad_input.py::"))
    return (f"| tier | tests |\n|---|---|\n| unit (`--ignore=tests/integration`) | {len(ids) - integration} |\n"
            f"| integration (`tests/integration/`, real servers) | {integration} |\n| all | {len(ids)} |\n"
            f"| of which bad-input cases (`tests/test_bad_input.py`) | {bad_input} |\n")


def bad_input_cases() -> str:
    ids = collected_tests()
    count = sum(1 for i in ids if i.startswith("tests/test_bad_input.py::"))
    return f"`tests/test_bad_input.py` runs {count} cases of hostile or broken stack config.\n"


def performance() -> str:
    """The latest benchmark (bench/latest.json) as `python -m bench --render bench/latest.json --markdown` prints it."""
    from bench.cli import table_rows
    from bench.stats import markdown_table

    results = json.loads((REPO_ROOT / "bench" / "latest.json").read_text())
    head = (f"Run {results['date']}: `{results['command']}`, {'quick' if results.get('quick') else 'full'} run in "
            f"{results['total_s']:.0f} s; {results['machine']}; nproc {results['nproc']}, load average "
            f"{results['loadavg_start'][0]:.2f} at the start and {results['loadavg_end'][0]:.2f} at the end.")
    return head + "\n\n" + markdown_table(table_rows(results)) + "\n"


def registry_iam_policy() -> str:
    """The registry's own IAM policy (registry_ha/iam.py), for a bucket and, with sse-kms, a key."""
    from registry_ha import iam

    document = iam.to_policy_json(iam.registry_statements(
        "arn:aws:s3:::neural-hive-registry-production-x1y2z3", "arn:aws:kms:us-east-1:123456789012:key/KEY-ID"))
    return "```json\n" + json.dumps(json.loads(document), indent=2) + "\n```\n"


def integration_tests() -> str:
    """The integration tests in order, each with the first sentence of its module docstring."""
    import ast

    rows = []
    for path in (REPO_ROOT / "tests" / "integration").glob("test_*.py"):
        number = int(path.name.split("_")[1])
        doc = ast.get_docstring(ast.parse(path.read_text())) or ""
        first = " ".join(doc.split("\n\n")[0].split())
        match = re.match(rf"{number}\. (.+?\.)(?:\s|$)", first)
        if not match:
            raise ValueError(f"{path.name}: the docstring must open with '{number}. <one sentence>.'")
        rows.append((number, path.stem, match.group(1)))
    numbers = [r[0] for r in rows]
    if len(set(numbers)) != len(numbers):
        raise ValueError(f"integration test numbers are not unique: {sorted(numbers)}")
    lines = ["| # | test | what it proves |", "|---|---|---|"]
    lines += [f"| {n} | `{stem}` | {_cell(text)} |" for n, stem, text in sorted(rows)]
    return "\n".join(lines) + "\n"


def _day2() -> dict[str, Callable[[], str]]:
    from registry_ha import day2_docs

    return day2_docs.GENERATORS


GENERATORS: dict[str, Callable[[], str]] = {
    "registry-iam-policy": registry_iam_policy,
    "config-reference": config_reference,
    "access-matrix": access_matrix,
    "monitoring-runbook": monitoring_runbook,
    "monitoring-thresholds": monitoring_thresholds,
    "monitoring-timings": monitoring_timings,
    "exit-codes": exit_codes,
    "status-json": status_json,
    "sandbox-ports": sandbox_ports,
    "deploy-output": deploy_output,
    "outputs": outputs,
    "test-counts": suite_counts,
    "bad-input-cases": bad_input_cases,
    "integration-tests": integration_tests,
    "performance": performance,
    **_day2(),
}


def documents(root: Path = REPO_ROOT) -> list[Path]:
    return [root / "README.md", *sorted((root / "docs").glob("*.md"))]


def regenerate(text: str, generators: dict[str, Callable[[], str]] = GENERATORS) -> tuple[str, list[str]]:
    """(text with every known block rewritten, names of blocks whose content changed)."""
    changed: list[str] = []
    cache: dict[str, str] = {}

    def replace(match: re.Match) -> str:
        name = match.group("name")
        if name not in generators:
            raise KeyError(f"unknown generated block {name!r}")
        body = cache.setdefault(name, generators[name]())
        if body != match.group("body"):
            changed.append(name)
        return match.group(1) + body + match.group(4)

    return BLOCK.sub(replace, text), changed


def main(argv: list[str]) -> int:
    check = "--check" in argv
    stale = []
    for path in documents():
        text = path.read_text()
        new, changed = regenerate(text)
        if changed:
            stale += [f"{path.relative_to(REPO_ROOT)}: {name}" for name in changed]
            if not check:
                path.write_text(new)
    if check and stale:
        sys.stderr.write("stale generated blocks (run python -m registry_ha.docs): " + ", ".join(stale) + "\n")
        return 1
    for entry in stale:
        print(f"updated {entry}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
