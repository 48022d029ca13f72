"""8. Rolling restart under load: four clients pull one image through the LB (each pull retried once)
while `local restart --rolling` replaces the three replicas; the same clients for as long again with no
restart are the baseline. Failed pulls (with and without the retry) and the p50/p99 pull times of both
windows, side by side, plus the fewest replicas haproxy had UP during the restart."""
from __future__ import annotations

import io
import threading
import time
from typing import Optional

from registry_ha.sandbox import procs, rollout

from bench.client import build_image, pull, push
from bench.env import BenchEnv
from bench.measures import PULL_ERRORS, fig
from bench.stats import percentile

CLIENTS = 4
MiB = 1 << 20


def _window(env: BenchEnv, image, during=None, seconds: float = 4.0) -> dict:
    """Pull for `seconds` (or until `during` returns, plus one second); latencies and failures."""
    sb = env.sandbox
    assert sb is not None
    stop = threading.Event()
    lock = threading.Lock()
    latencies: list[float] = []
    counts = {"pulls": 0, "failed_first": 0, "failed_retry": 0, "min_up": len(sb.replica_names())}
    errors: list[str] = []

    def client() -> None:
        while not stop.is_set():
            t0 = time.perf_counter()
            for attempt in (1, 2):
                try:
                    pull(sb.endpoint, "bench/restart", "v1", image, timeout=10)
                    with lock:
                        latencies.append(time.perf_counter() - t0)
                    break
                except PULL_ERRORS as exc:
                    with lock:
                        counts["failed_first" if attempt == 1 else "failed_retry"] += 1
                        if attempt == 2:
                            errors.append(f"{type(exc).__name__}: {str(exc)[:120]}")
                    time.sleep(0.5)
            with lock:
                counts["pulls"] += 1

    def monitor() -> None:
        sock = sb.state_dir / "lb.sock"
        while not stop.is_set():
            rows = procs.haproxy_stats(sock)
            up = sum(1 for name in sb.replica_names() if rows[name]["status"] == "UP")
            counts["min_up"] = min(counts["min_up"], up)
            time.sleep(0.02)

    threads = [threading.Thread(target=client, daemon=True) for _ in range(CLIENTS)]
    threads.append(threading.Thread(target=monitor, daemon=True))
    for t in threads:
        t.start()
    result: dict = {}
    try:
        time.sleep(1.0)
        if during is not None:
            t0 = time.monotonic()
            result = during()
            result["restart_s"] = round(time.monotonic() - t0, 2)
            time.sleep(1.0)
        else:
            time.sleep(seconds)
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    return {**counts, **result, "p50_s": percentile(latencies, 50), "p99_s": percentile(latencies, 99),
            "errors": errors[:10]}


def measure(env: Optional[BenchEnv], quick: bool) -> dict:
    assert env is not None and env.sandbox is not None
    sb = env.sandbox
    image = build_image((64 * 1024, MiB), label="bench-restart")
    push(sb.components["registry-1"].address, "bench/restart", "v1", image)
    binaries = sb.binaries()
    rounds = 1 if quick else 3
    runs = []
    for r in range(rounds):
        env.log(f"restart: round {r + 1}/{rounds}")
        during = _window(env, image, during=lambda: {"replaced_s": rollout.roll(sb, binaries, rolling=True, out=io.StringIO())})
        baseline = _window(env, image, seconds=during["restart_s"] + 1.0)
        runs.append({"during": during, "baseline": baseline})
    pulls = sum(r["during"]["pulls"] for r in runs)
    failed_retry = sum(r["during"]["failed_retry"] for r in runs)
    failed_first = sum(r["during"]["failed_first"] for r in runs)
    p99_during = max(r["during"]["p99_s"] for r in runs)
    p99_base = max(r["baseline"]["p99_s"] for r in runs)
    figures = [
        fig(f"failed pulls during {rounds} rolling restart(s), no retry / one retry (of {pulls})",
            f"{failed_first} / {failed_retry}", target="0 with one retry", met=failed_retry == 0),
        fig("p99 pull (1 MiB image) during the restart / without one (worst round)",
            f"{p99_during:.3f} / {p99_base:.3f} s"),
        fig("p50 pull during the restart / without one (worst round)",
            f"{max(r['during']['p50_s'] for r in runs):.3f} / {max(r['baseline']['p50_s'] for r in runs):.3f} s"),
        fig("rolling restart of 3 replicas (each UP in the LB before the next goes)",
            max(r["during"]["restart_s"] for r in runs), "s"),
        fig("fewest replicas UP in the LB during a restart", min(r["during"]["min_up"] for r in runs),
            target="2 of 3", met=min(r["during"]["min_up"] for r in runs) == len(sb.replica_names()) - 1),
    ]
    return {"clients": CLIENTS, "image_bytes": image.total_bytes, "rounds": runs,
            "p99_during_s": p99_during, "p99_baseline_s": p99_base, "failed_one_retry": failed_retry,
            "figures": figures}
