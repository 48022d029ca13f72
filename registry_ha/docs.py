"""Generated parts of README.md and docs/*.md, so that no table or figure is typed by hand.

A generated block sits between two markers:

    <!-- generated: NAME -->
    ...
    <!-- end generated: NAME -->

`python -m registry_ha.docs` rewrites every block from GENERATORS; `--check` exits 1 and
names the stale blocks instead (the test suite runs it).
"""
from __future__ import annotations

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


GENERATORS: dict[str, Callable[[], str]] = {
    "config-reference": config_reference,
    "monitoring-runbook": monitoring_runbook,
    "monitoring-thresholds": monitoring_thresholds,
    "monitoring-timings": monitoring_timings,
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
