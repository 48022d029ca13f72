"""`python -m bench [--quick] [--only pulls,failover] [--with-suite]` (or ./scripts/bench.sh).

Runs the measurements of issue 6 side by side in one run against one sandbox, writes
bench/results/<timestamp>.json (git-ignored) and bench/latest.json, and prints the table.
"""
from __future__ import annotations

import argparse
import datetime as dt
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
from registry_ha.exit_codes import DONE, FAILURE, USAGE
from registry_ha.sandbox.errors import SandboxError

BENCH_DIR = Path(__file__).resolve().parent
MEASURES = ("program", "pulls", "failover", "redis", "mirror", "suite")
NEEDS_SANDBOX = {"pulls", "failover", "redis", "mirror"}
TITLES = {
    "program": "1 program evaluation",
    "pulls": "2 pull throughput (50 MiB layer)",
    "failover": "3 failover (SIGKILL 1 of 3 replicas, 4 clients)",
    "redis": "4 Redis effect",
    "mirror": "5 mirror (pull-through cache)",
    "suite": "6 test suite",
}


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    p.add_argument("--only", default="", help=f"comma-separated subset of {','.join(MEASURES)}")
    p.add_argument("--quick", action="store_true", help="fewer repetitions (development)")
    p.add_argument("--with-suite", action="store_true", help="also time the full test suite (minutes)")
    p.add_argument("--stack", default="staging", help="stack whose rendered topology the sandbox runs")
    p.add_argument("--no-latest", action="store_true", help="do not overwrite bench/latest.json")
    p.add_argument("--render", metavar="JSON", help="measure nothing: print the table of an earlier result file")
    p.add_argument("--markdown", action="store_true", help="print the table as Markdown (for the README's Performance section)")
    return p


def table_rows(results: dict) -> list[list[str]]:
    rows = []
    for name in MEASURES:
        section = results["measures"].get(name)
        if section is None:
            continue
        if "error" in section:
            rows.append([TITLES[name], "ERROR: " + section["error"].splitlines()[-1][:100], "", ""])
            continue
        for i, f in enumerate(section["figures"]):
            value = f["value"] if isinstance(f["value"], str) else fmt(f["value"], f["unit"])
            target = f"{f['target']} {target_mark(f['met'])}".strip() if f["target"] else ""
            rows.append([TITLES[name] if i == 0 else "", f["figure"], value, target])
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
    env = None
    try:
        for name in MEASURES:
            if name not in selected:
                continue
            if name in NEEDS_SANDBOX and env is None:
                env = BenchEnv(stack=args.stack, out=out)
                env.up()
            out.write(f"bench: {TITLES[name]} ...\n")
            out.flush()
            t0 = time.monotonic()
            try:
                if name == "program":
                    results["measures"][name] = measures.measure_program(args.quick)
                elif name == "suite":
                    results["measures"][name] = measures.measure_suite(args.quick, args.with_suite)
                else:
                    results["measures"][name] = getattr(measures, f"measure_{name}")(env, args.quick)
            except Exception:  # one broken measurement must not lose the others
                results["measures"][name] = {"error": traceback.format_exc()}
                out.write(f"bench: {name} failed:\n{traceback.format_exc()}\n")
            results["durations_s"][name] = round(time.monotonic() - t0, 1)
    finally:
        if env is not None:
            env.close()
    results["loadavg_end"] = os.getloadavg()
    results["total_s"] = round((dt.datetime.now(dt.timezone.utc) - started).total_seconds(), 1)
    return results


def _print(results: dict, markdown: bool) -> None:
    print(f"registry-ha benchmarks, {results['date']}, nproc {results['nproc']}, "
          f"load {results['loadavg_start'][0]:.2f} -> {results['loadavg_end'][0]:.2f}, "
          f"{'quick' if results['quick'] else 'full'} run in {results['total_s']:.0f} s")
    print((markdown_table if markdown else format_table)(table_rows(results)))


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
    return FAILURE if any("error" in m for m in results["measures"].values()) else DONE
