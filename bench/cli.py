"""`python -m bench [--quick] [--only pulls,failover] [--with-suite]` (or ./scripts/bench.sh).

Runs the measurements in one run: the sandbox measurements once per registry version (3.1.1, what
the program deploys, and 2.8.2, the compat lane), each on a sandbox of its own, printed side by
side; writes bench/results/<timestamp>.json (git-ignored) and bench/latest.json, prints the table.
"""
from __future__ import annotations

import argparse
import datetime as dt
import importlib
import json
import os
import platform
import shlex
import signal
import sys
import time
import traceback
from pathlib import Path

from bench import measures
from bench.env import BenchEnv
from bench.stats import fmt, format_table, markdown_table, target_mark
from registry_ha.sandbox.binaries import COMPAT_VERSION
from registry_ha.toolchain import default_registry_version
from registry_ha.exit_codes import DONE, FAILURE, USAGE
from registry_ha.sandbox.errors import SandboxError

BENCH_DIR = Path(__file__).resolve().parent
MEASURES = ("program", "pulls", "failover", "redis", "mirror", "suite", "gc", "restart")
NEEDS_SANDBOX = {"pulls", "failover", "redis", "mirror", "restart"}  # gc starts a sandbox of its own
OWN_MODULES = {"gc", "restart"}  # bench/<name>.py: measure(env, quick)
TITLES = {
    "program": "1 program evaluation",
    "pulls": "2 pull throughput (50 MiB layer)",
    "failover": "3 failover (SIGKILL 1 of 3 replicas, 4 clients)",
    "redis": "4 Redis effect",
    "mirror": "5 mirror (pull-through cache)",
    "suite": "6 test suite",
    "gc": "7 GC cost (garbage-collect --delete-untagged)",
    "restart": "8 rolling restart under pulls (4 clients)",
}


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    p.add_argument("--only", default="", help=f"comma-separated subset of {','.join(MEASURES)}")
    p.add_argument("--quick", action="store_true", help="fewer repetitions (development)")
    p.add_argument("--with-suite", action="store_true", help="also time the full test suite (minutes)")
    p.add_argument("--stack", default="staging", help="stack whose rendered topology the sandbox runs")
    p.add_argument("--registry-versions", default=f"{default_registry_version()},{COMPAT_VERSION}",
                   help="registry versions the sandbox measurements run on, side by side (default: %(default)s)")
    p.add_argument("--no-latest", action="store_true", help="do not overwrite bench/latest.json")
    p.add_argument("--render", metavar="JSON", help="measure nothing: print the table of an earlier result file")
    p.add_argument("--markdown", action="store_true", help="print the table as Markdown (as docs/performance.md shows it)")
    return p


def _value(f: dict) -> str:
    return f["value"] if isinstance(f["value"], str) else fmt(f["value"], f["unit"])


def _target(f: dict) -> str:
    return f"{f['target']} {target_mark(f['met'])}".strip() if f["target"] else ""


def lanes_of(results: dict) -> list[str]:
    return results.get("registry_versions") or []


def table_header(results: dict) -> list[str]:
    lanes = lanes_of(results)
    if not lanes:
        return ["#", "figure", "value", "target"]
    return ["#", "figure", *[f"registry {lane}" for lane in lanes], f"target ({lanes[0]})"]


def table_rows(results: dict) -> list[list[str]]:
    """One row per figure; a sandbox measurement has one value column per registry version."""
    lanes = lanes_of(results)
    width = max(len(lanes), 1)
    rows = []
    for name in MEASURES:
        section = results["measures"].get(name)
        if section is None:
            continue
        if "lanes" not in section:
            if "error" in section:
                rows.append([TITLES[name], "ERROR: " + section["error"].splitlines()[-1][:100], *[""] * width, ""])
                continue
            for i, f in enumerate(section["figures"]):
                rows.append([TITLES[name] if i == 0 else "", f["figure"], _value(f), *[""] * (width - 1), _target(f)])
            continue
        per_lane = [section["lanes"].get(lane, {"error": "not run"}) for lane in lanes]
        names: list[str] = []
        for lane_result in per_lane:
            for f in lane_result.get("figures", []):
                if f["figure"] not in names:
                    names.append(f["figure"])
        for lane, lane_result in zip(lanes, per_lane):
            if "error" in lane_result:
                rows.append([TITLES[name], f"{lane}: ERROR: " + lane_result["error"].splitlines()[-1][:90],
                             *[""] * width, ""])
        for i, figure in enumerate(names):
            cells, target = [], ""
            for j, lane_result in enumerate(per_lane):
                f = next((x for x in lane_result.get("figures", []) if x["figure"] == figure), None)
                cells.append(_value(f) if f else "")
                if j == 0 and f:
                    target = _target(f)
            rows.append([TITLES[name] if i == 0 else "", figure, *cells, target])
    return rows


class UsageError(Exception):
    """A bad argument or stack: one line, exit 2 (registry_ha.exit_codes)."""


def selected_measures(only: str) -> list[str]:
    selected = [m.strip() for m in only.split(",") if m.strip()] or list(MEASURES)
    unknown = [m for m in selected if m not in MEASURES]
    if unknown:
        raise UsageError(f"--only: unknown measurement(s) {', '.join(unknown)}; choose from {', '.join(MEASURES)}")
    return selected


def check_stack(stack: str) -> None:
    """The stack the sandbox renders exists and its config is valid (before minutes of measuring)."""
    from registry_ha.sandbox.core import stack_config
    from registry_ha.settings import SettingsError, load_settings

    try:
        raw, region, _ = stack_config(stack)
        load_settings(raw, stack, aws_region=region)
    except SettingsError as exc:
        raise UsageError(f"--stack: {exc}") from None


def load_result(path: str) -> dict:
    try:
        results = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise UsageError(f"--render {path}: not a readable result file ({exc})") from None
    if not isinstance(results, dict) or not isinstance(results.get("measures"), dict):
        raise UsageError(f"--render {path}: not a bench result (no \"measures\")")
    return results


def run(args: argparse.Namespace, out=sys.stderr) -> dict:
    selected = selected_measures(args.only)
    started = dt.datetime.now(dt.timezone.utc)
    results: dict = {
        "date": started.isoformat(timespec="seconds"),
        "command": "python -m bench " + " ".join(shlex.quote(a) for a in sys.argv[1:]),
        "nproc": os.cpu_count(),
        "loadavg_start": os.getloadavg(),
        "machine": f"{platform.system()} {platform.release()} {platform.machine()}, Python {platform.python_version()}",
        "quick": args.quick,
        "stack": args.stack,
        "measures": {},
        "durations_s": {},
    }
    lanes = [v.strip() for v in args.registry_versions.split(",") if v.strip()]
    results["registry_versions"] = lanes
    for name in selected:
        if name in NEEDS_SANDBOX:
            continue
        out.write(f"bench: {TITLES[name]} ...\n")
        t0 = time.monotonic()
        results["measures"][name] = _measure(name, None, args, out)
        results["durations_s"][name] = round(time.monotonic() - t0, 1)
    for lane in lanes:
        wanted = [name for name in MEASURES if name in selected and name in NEEDS_SANDBOX]
        if not wanted:
            break
        env = BenchEnv(stack=args.stack, out=out, registry_version=lane)
        try:
            env.up()
            for name in wanted:
                out.write(f"bench: {TITLES[name]} on registry {lane} ...\n")
                out.flush()
                t0 = time.monotonic()
                section = results["measures"].setdefault(name, {"lanes": {}})
                section["lanes"][lane] = _measure(name, env, args, out)
                results["durations_s"][f"{name} ({lane})"] = round(time.monotonic() - t0, 1)
        except Exception:
            for name in wanted:
                results["measures"].setdefault(name, {"lanes": {}})["lanes"].setdefault(
                    lane, {"error": traceback.format_exc()})
            out.write(f"bench: the registry {lane} sandbox failed:\n{traceback.format_exc()}\n")
        finally:
            env.close()
    results["loadavg_end"] = os.getloadavg()
    results["total_s"] = round((dt.datetime.now(dt.timezone.utc) - started).total_seconds(), 1)
    return results


def _measure(name: str, env, args, out) -> dict:
    try:
        if name == "program":
            return measures.measure_program(args.quick)
        if name == "suite":
            return measures.measure_suite(args.quick, args.with_suite)
        if name in OWN_MODULES:
            return importlib.import_module(f"bench.{name}").measure(env, args.quick)
        return getattr(measures, f"measure_{name}")(env, args.quick)
    except Exception:  # one broken measurement must not lose the others
        out.write(f"bench: {name} failed:\n{traceback.format_exc()}\n")
        return {"error": traceback.format_exc()}


def _print(results: dict, markdown: bool) -> None:
    print(f"registry-ha benchmarks, {results['date']}, nproc {results['nproc']}, "
          f"load {results['loadavg_start'][0]:.2f} -> {results['loadavg_end'][0]:.2f}, "
          f"{'quick' if results['quick'] else 'full'} run in {results['total_s']:.0f} s")
    print((markdown_table if markdown else format_table)(table_rows(results), table_header(results)))


def _terminate(signum, _frame):
    raise SystemExit(128 + signum)  # unwinds through the finally blocks that stop every server


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)  # argparse: usage errors exit 2
    try:
        if args.render:
            _print(load_result(args.render), args.markdown)
            return DONE
        selected_measures(args.only)
        check_stack(args.stack)
    except UsageError as exc:
        sys.stderr.write(f"bench: error: {exc}\n")
        return USAGE
    try:  # before minutes of measuring, not after
        (BENCH_DIR / "results").mkdir(exist_ok=True)
    except OSError as exc:
        sys.stderr.write(f"bench: error: cannot write results to {BENCH_DIR / 'results'}: {exc.strerror or exc}\n")
        return FAILURE
    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGHUP, _terminate)
    try:
        results = run(args)
    except (SandboxError, RuntimeError, OSError) as exc:  # the sandbox did not come up: nothing was measured
        sys.stderr.write(f"bench: error: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}\n")
        return FAILURE
    stamp = dt.datetime.fromisoformat(results["date"]).strftime("%Y%m%dT%H%M%SZ")
    text = json.dumps(results, indent=2, default=str) + "\n"
    path = BENCH_DIR / "results" / f"{stamp}.json"
    path.write_text(text)
    if not args.no_latest:
        (BENCH_DIR / "latest.json").write_text(text)
    _print(results, args.markdown)
    print(f"\nresults: {path.relative_to(BENCH_DIR.parent)}" + ("" if args.no_latest else " (and bench/latest.json)"))
    failed = [m for m in results["measures"].values()
              if "error" in m or any("error" in lane for lane in m.get("lanes", {}).values())]
    return FAILURE if failed else DONE
