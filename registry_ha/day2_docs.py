"""Generated blocks of docs/day2.md (registered in registry_ha.docs.GENERATORS).

- schema-differences: the keys of the rendered Distribution config that only the 2.8 schema or only
  the 3.x schema has, from the builder itself (both roles, an S3-compatible endpoint and Docker Hub
  credentials set, so every schema-dependent branch is rendered).
- data-safety: per shipped stack file, what protects the images (versioning, how long old versions
  are kept, retainBucket, forceDestroy).
- gc-cost and restart-under-pulls: the benchmark's figures (bench/gc.py, bench/restart.py) from the
  newest result file that has them (bench/latest.json, else bench/day2.json), and the extrapolation
  of the sweep to larger registries.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

REPO_ROOT = Path(__file__).resolve().parent.parent
RESULT_FILES = ("bench/latest.json", "bench/day2.json")
# Assumed S3 latency per request for the sweep's sequential requests on AWS (small objects, same region).
# An assumption, not a measurement: `deploy-registry-ha.sh gc --dry-run` on the real bucket measures yours.
S3_LATENCIES = (0.010, 0.030)
EXTRAPOLATE_TO = (1_000, 10_000, 100_000)


def _flatten(document: dict, prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in document.items():
        path = f"{prefix}.{key}" if prefix else key
        if isinstance(value, dict):
            flat.update(_flatten(value, path))
        else:
            flat[path] = value
    return flat


def schema_differences() -> str:
    from registry_ha.registry_config import CONFIG_PATHS, Credentials, Endpoints, build_registry_config, secret_files
    from registry_ha.settings import load_settings

    settings = load_settings(
        # token auth is 3.x only (2.8 announces an https realm whatever the scheme): compared without it
        {"registry-ha:s3Endpoint": "https://minio.internal:9000", "registry-ha:authEnabled": "false",
         "registry-ha:mirrors": json.dumps([{"name": "dockerhub", "host": "docker.io", "username": "user"}]),
         "registry-ha:mirrorPasswords": json.dumps({"dockerhub": "<secret>"})},
        "staging", {"registry-ha:mirrorPasswords"},
    )
    hub = settings.caches[0]
    endpoints = Endpoints(s3_bucket="<bucket>", s3_region="us-east-1", redis_addr="registry-redis.registry.svc:6379")
    credentials = Credentials("<secret>", "<secret>", "<key>", "<secret>", "user", "<secret>")

    def show(value: Any) -> str:
        return f"`{json.dumps(value) if not isinstance(value, str) else value}`"

    lines = ["| workload | only in the 2.8 document (`registry:2.8.x`) | only in the 3.x document (`registry:3.x`) |",
             "|---|---|---|"]
    for role, label, cache in (("private", "private registry", None), ("mirror", "a cache (Docker Hub's here)", hub)):
        v2 = _flatten(build_registry_config(settings, role, endpoints, credentials, schema="v2", cache=cache))
        v3 = _flatten(build_registry_config(settings, role, endpoints, credentials, schema="v3", cache=cache))
        assert all(v2[k] == v3[k] for k in v2.keys() & v3.keys()), "a key both schemas share changed value"
        old = "<br>".join(f"`{k}`: {show(v2[k])}" for k in v2 if k not in v3)
        new = "<br>".join(f"`{k}`: {show(v3[k])}" for k in v3 if k not in v2)
        lines.append(f"| {label} | {old} | {new} |")
        files2 = set(secret_files(settings, role, "v2", cache=cache))
        files3 = set(secret_files(settings, role, "v3", cache=cache))
        lines.append(f"| {label}: files in the config Secret | "
                     f"{', '.join(f'`{f}`' for f in sorted(files2 - files3)) or '(none)'} | "
                     f"{', '.join(f'`{f}`' for f in sorted(files3 - files2)) or '(none)'} |")
    lines.append(f"| both: where the image reads its config | `{CONFIG_PATHS['v2']}` | `{CONFIG_PATHS['v3']}` |")
    lines += ["", "(Rendered with `s3Endpoint` and Docker Hub credentials set, so every branch shows: `forcepathstyle` "
              "comes with `s3Endpoint`, `proxy.username`/`proxy.password` and `upstream-credentials.json` with "
              "a cache's `username`. Every other key is the same in both documents. Token auth (`authEnabled`, "
              "`auth.token`) needs a 3.x image: a stack with auth on refuses a 2.8 image.)"]
    return "\n".join(lines) + "\n"


def data_safety() -> str:
    from registry_ha.settings import load_settings
    from registry_ha.stacks import read_stack_file, stack_names

    lines = ["| stack | bucketVersioning | old versions kept (noncurrentVersionDays) | retainBucket | forceDestroy | "
             "`pulumi destroy` |", "|---|---|---|---|---|---|"]
    for stack in stack_names(REPO_ROOT):
        config, secret_keys = read_stack_file(stack, REPO_ROOT)
        storage = load_settings(config, stack, secret_keys, aws_region=config.get("aws:region")).storage
        kept = f"{storage.noncurrent_version_days} days" if storage.versioning else "(no versions)"
        fate = ("keeps the bucket and its images" if storage.retain else
                "deletes the bucket with its images" if storage.force_destroy else "fails while the bucket holds images")
        lines.append(f"| `{stack}` | `{str(storage.versioning).lower()}` | {kept} | `{str(storage.retain).lower()}` | "
                     f"`{str(storage.force_destroy).lower()}` | {fate} |")
    return "\n".join(lines) + "\n"


def _newest_with(measure: str, root: Path = REPO_ROOT) -> Optional[tuple[str, dict]]:
    found = []
    for name in RESULT_FILES:
        path = root / name
        if path.exists():
            results = json.loads(path.read_text())
            section = (results.get("measures") or {}).get(measure)
            if section and "error" not in section:
                found.append((results["date"], name, results, section))
    if not found:
        return None
    date, name, results, section = max(found)
    return f"`{name}` ({date[:10]}, `{results['command']}`, nproc {results['nproc']})", section


def gc_cost(root: Path = REPO_ROOT) -> str:
    newest = _newest_with("gc", root)
    if newest is None:
        return "No benchmark result has the GC measurement yet: run `./scripts/bench.sh --only gc`.\n"
    source, gc = newest
    lines = [f"Measured on the sandbox (SeaweedFS on 127.0.0.1), from {source}; "
             f"{gc['tags_per_repository']} tags per repository, one image in {round(1 / gc['deleted_share'])} deleted "
             "before each sweep:", "",
             "| images | deleted | `garbage-collect --delete-untagged` | its S3 requests | plain mark (`--dry-run`): requests | "
             "read-only window of `local gc` |", "|---|---|---|---|---|---|"]
    for p in gc["points"]:
        kinds = ", ".join(f"{k} {v}" for k, v in p["sweep_requests"].items())
        lines.append(f"| {p['images']} | {p['deleted']} | {p['sweep_s']:.2f} s | {p['sweep_requests_total']} ({kinds}) | "
                     f"{p['plain_mark_requests_total']} | {p['window_s']:.1f} s |")
    fit = gc["fit"]
    lines += ["", f"A straight line through the points: {fit['requests_per_image']:.1f} S3 requests per image with "
              f"`--delete-untagged` ({fit['plain_mark_requests_per_image']:.1f} for the plain mark), "
              f"{fit['seconds_per_image'] * 1000:.0f} ms per image on the sandbox. The sweep sends its requests one "
              "after another, so on AWS its time is about requests x S3's latency per request "
              f"(assumed {S3_LATENCIES[0] * 1000:.0f} to {S3_LATENCIES[1] * 1000:.0f} ms):", "",
              "| images | S3 requests | sweep at the sandbox's speed | sweep on AWS S3 (assumed latency) |",
              "|---|---|---|---|"]
    for n in EXTRAPOLATE_TO:
        requests = fit["requests_intercept"] + fit["requests_per_image"] * n
        local_s = fit["seconds_intercept"] + fit["seconds_per_image"] * n
        aws = " to ".join(_duration(requests * latency) for latency in S3_LATENCIES)
        lines.append(f"| {n:,} | {requests:,.0f} | {_duration(local_s)} | {aws} |")
    return "\n".join(lines) + "\n"


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def restart_under_pulls(root: Path = REPO_ROOT) -> str:
    newest = _newest_with("restart", root)
    if newest is None:
        return "No benchmark result has the restart measurement yet: run `./scripts/bench.sh --only restart`.\n"
    source, section = newest
    # one run per registry version since the benchmark has lanes; older results hold one run
    lanes = section.get("lanes") or {"": section}
    lines = [f"From {source}:", "", "| registry | figure | value |", "|---|---|---|"]
    for lane, run in lanes.items():
        for f in run["figures"]:
            value = f["value"]
            if isinstance(value, float):
                value = f"{value:.3g}"
            if not isinstance(f["value"], str) and f["unit"]:
                value = f"{value} {f['unit']}"
            lines.append(f"| {lane or 'the sandbox default'} | {f['figure']} | {value} |")
    return "\n".join(lines) + "\n"


GENERATORS = {
    "schema-differences": schema_differences,
    "data-safety": data_safety,
    "gc-cost": gc_cost,
    "restart-under-pulls": restart_under_pulls,
}
