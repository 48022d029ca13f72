"""`python -m bench [--quick] [--only pulls,failover] [--with-suite]` (or ./scripts/bench.sh).

Runs the measurements of issue 6 side by side in one run against one sandbox, writes
bench/results/<timestamp>.json (git-ignored) and bench/latest.json, and prints the table.
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


def run(args: argparse.Namespace, out=sys.stderr) -> dict:
    selected = [m.strip() for m in args.only.split(",") if m.strip()] or list(MEASURES)
    unknown = [m for m in selected if m not in MEASURES]
    if unknown:
        raise SystemExit(f"bench: unknown measurement(s) {', '.join(unknown)}; choose from {', '.join(MEASURES)}")
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
                elif name in OWN_MODULES:
                    results["measures"][name] = importlib.import_module(f"bench.{name}").measure(env, args.quick)
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
    args = _parser().parse_args(argv)
    if args.render:
        _print(json.loads(Path(args.render).read_text()), args.markdown)
        return 0
    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGHUP, _terminate)
    results = run(args)
    stamp = dt.datetime.fromisoformat(results["date"]).strftime("%Y%m%dT%H%M%SZ")
    (BENCH_DIR / "results").mkdir(exist_ok=True)
    text = json.dumps(results, indent=2, default=str) + "\n"
    path = BENCH_DIR / "results" / f"{stamp}.json"
    path.write_text(text)
    if not args.no_latest:
        (BENCH_DIR / "latest.json").write_text(text)
    _print(results, args.markdown)
    print(f"\nresults: {path.relative_to(BENCH_DIR.parent)}" + ("" if args.no_latest else " (and bench/latest.json)"))
    return 1 if any("error" in m for m in results["measures"].values()) else 0
