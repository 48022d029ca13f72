"""The benchmark's measurements. Each returns a JSON-able dict with raw samples, summaries and
`figures`: rows of {figure, value, unit, target, met} that the printed table is built from."""
from __future__ import annotations

import http.client
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Optional

from registry_ha.registry_config import PRIVATE_ROOT_DIRECTORY
from registry_ha.sandbox import procs

from bench import client
from bench.client import PullError, build_image, push, pull
from bench.env import BenchEnv, access_log_requests, set_inmemory_cache, set_storage_redirect
from bench.stats import fmt, mb_per_s, median, percentile, ratio

REPO_ROOT = Path(__file__).resolve().parent.parent
MiB = 1 << 20
PULL_ERRORS = (OSError, PullError, http.client.HTTPException)


def fig(figure: str, value, unit: str = "", target: str = "", met: Optional[bool] = None) -> dict:
    return {"figure": figure, "value": value, "unit": unit, "target": target, "met": met}


def _s(seconds: Optional[float]) -> str:
    return "n/a" if seconds is None else f"{seconds:.3f}"


def _clean_env() -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_") and k not in ("CI",)}
    env["PYTHONPATH"] = str(REPO_ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


# --------------------------------------------------------------------------- 1. program evaluation


def _probe(target: str) -> dict:
    """One fresh interpreter: wall time seen from outside, peak RSS from wait4's rusage."""
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "bench.evalprobe", target], cwd=REPO_ROOT, env=_clean_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = proc.stdout.read(), proc.stderr.read()  # type: ignore[union-attr]
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"evalprobe {target} failed ({proc.returncode}): {err.decode()[-1500:]}")
    import json

    inner = json.loads(out.decode().strip().splitlines()[-1])
    return {"wall_s": wall, "rss_mb": usage.ru_maxrss / 1024, "cpu_s": usage.ru_utime + usage.ru_stime, **inner}


def measure_program(quick: bool, env: Optional[BenchEnv] = None) -> dict:
    reps = 1 if quick else 3
    targets = ["baseline", "staging", "production"]
    samples: dict[str, list[dict]] = {t: [] for t in targets}
    _probe("staging")  # untimed: compiles bytecode and warms the page cache for every target
    for _ in range(reps):  # interleaved, so drift hits every target alike
        for t in targets:
            samples[t].append(_probe(t))
    summary = {
        t: {
            "wall_s": median(s["wall_s"] for s in samples[t]),
            "eval_s": median(s["eval_s"] for s in samples[t]),
            "import_s": median(s["import_s"] for s in samples[t]),
            "provider_s": median(s.get("provider_s", 0.0) for s in samples[t]),
            "rss_mb": max(s["rss_mb"] for s in samples[t]),
            "cpu_s": median(s["cpu_s"] for s in samples[t]),
            "resources": samples[t][0]["resources"],
        }
        for t in targets
    }
    base = summary["baseline"]
    figures = [fig(f"baseline (SDK imports + 1 resource): wall / peak RSS, median of {reps}",
                   f"{base['wall_s']:.2f} s / {base['rss_mb']:.0f} MB")]
    for stack in ("staging", "production"):
        s = summary[stack]
        figures.append(fig(f"{stack}: process wall (eval alone) / peak RSS, {s['resources']} resources",
                           f"{s['wall_s']:.2f} s ({s['eval_s']:.2f} s) / {s['rss_mb']:.0f} MB"))
        # The mocks generate the RSA keys pulumi-tls's provider plugin makes in a real preview: the
        # program's own cost is the rest.
        program_s = s["wall_s"] - s["provider_s"]
        figures.append(fig(f"{stack}: process wall without the mocks' provider work (RSA keys: {s['provider_s']:.2f} s CPU) / peak RSS",
                           f"{program_s:.2f} s / {s['rss_mb']:.0f} MB",
                           target="< 1.5 s, < 200 MB", met=program_s < 1.5 and s["rss_mb"] < 200))
        figures.append(fig(f"{stack} / baseline: wall, CPU, RSS",
                           f"{fmt(ratio(s['wall_s'], base['wall_s']), 'x')}, {fmt(ratio(s['cpu_s'], base['cpu_s']), 'x')}, "
                           f"{fmt(ratio(s['rss_mb'], base['rss_mb']), 'x')}"))
    return {"repetitions": reps, "samples": samples, "summary": summary, "figures": figures}


# --------------------------------------------------------------------------- 2. pull throughput


def measure_pulls(env: BenchEnv, quick: bool) -> dict:
    sb = env.sandbox
    assert sb is not None
    reps = 5 if quick else 15
    env.log("pulls: building a 50 MiB random single-layer image")
    image = build_image((50 * MiB,), label="bench-pulls")
    direct = sb.components["registry-1"].address
    repo, tag = "bench/pulls", "v1"
    push(direct, repo, tag, image)
    redirect = env.replica_variant("registry-redirect", set_storage_redirect)
    # not in the issue: the same LB with kernel splicing, to tell haproxy's userspace copy apart
    splice_lb, _ = env.haproxy_variant("lb-splice", add_to_defaults=("option splice-auto",))
    s3 = sb.s3_client(admin=True)
    key = client.blob_key(PRIVATE_ROOT_DIRECTORY, image.layer_digests[0])
    s3_url = s3.generate_presigned_url("get_object", Params={"Bucket": sb.bucket, "Key": key}, ExpiresIn=3600)

    def pull_lb(verify=False):
        return pull(sb.endpoint, repo, tag, image, verify=verify, follow=0)

    def pull_splice(verify=False):
        return pull(splice_lb.address, repo, tag, image, verify=verify, follow=0)

    def pull_direct(verify=False):
        return pull(direct, repo, tag, image, verify=verify, follow=0)

    def pull_redirect(verify=False):
        p = pull(redirect.address, repo, tag, image, verify=verify, follow=1)
        if not p.redirected:
            raise PullError("storage.redirect enabled but the blob GET was not redirected")
        return p

    def get_s3(verify=False):
        f = client.fetch(s3_url, verify=verify, follow=0)
        if f.status != 200 or f.nbytes != image.layer_bytes or (verify and f.digest != image.layer_digests[0]):
            raise PullError(f"S3 GET {f.status}, {f.nbytes} bytes")
        return client.Pull(f.seconds, f.seconds, f.nbytes, False)

    try:
        paths = {"lb": pull_lb, "direct": pull_direct, "s3": get_s3, "redirect": pull_redirect, "lb_splice": pull_splice}
        layer_path = f"/v2/{repo}/blobs/{image.layer_digests[0]}"
        curl_urls = {"lb": f"http://{sb.endpoint}{layer_path}", "direct": f"http://{direct}{layer_path}",
                     "s3": s3_url, "redirect": f"http://{redirect.address}{layer_path}",
                     "lb_splice": f"http://{splice_lb.address}{layer_path}"}
        curl_bin = shutil.which("curl")

        def curl_layer(name: str) -> Optional[float]:
            """Cross-check of the Python client: curl -L the layer blob to /dev/null, time_total."""
            if curl_bin is None:
                return None
            proc = subprocess.run([curl_bin, "-sS", "--noproxy", "*", "-L", "-o", "/dev/null", "-w",
                                   "%{http_code} %{size_download} %{time_total}", curl_urls[name]],
                                  capture_output=True, text=True, timeout=60, env=procs.minimal_env(env.root))
            code, size_dl, total = proc.stdout.split()
            if code != "200" or int(size_dl) != image.layer_bytes:
                raise PullError(f"curl {name}: {code}, {size_dl} bytes")
            return float(total)
        # warm-up, verified by digest: every replica behind the LB once, each other path once
        for _ in range(3):
            pull_lb(verify=True)
        for name in ("direct", "s3", "redirect"):
            paths[name](verify=True)
        for _ in range(3):
            pull_splice(verify=True)
        samples: dict[str, list[dict]] = {p: [] for p in paths}
        curl_samples: dict[str, list[float]] = {p: [] for p in paths}
        names = list(paths)
        deadline = time.monotonic() + 240
        for r in range(reps):
            if time.monotonic() > deadline:
                break
            for name in names[r % len(names):] + names[: r % len(names)]:  # rotate the order each round
                pids = env.server_pids()
                cpu0, own0 = env.cpu_seconds(pids), time.process_time()
                p = paths[name]()
                samples[name].append({"pull_s": p.seconds, "layer_s": p.layer_seconds,
                                      "server_cpu_s": env.cpu_seconds(pids) - cpu0,
                                      "client_cpu_s": time.process_time() - own0})
                c = curl_layer(name)
                if c is not None:
                    curl_samples[name].append(c)
    finally:
        env.stop(splice_lb)
        env.stop(redirect)
    size = image.layer_bytes
    summary = {
        name: {
            "pulls": len(s),
            "pull_s": median(x["pull_s"] for x in s),
            "layer_s": median(x["layer_s"] for x in s),
            "mb_s": mb_per_s(size, median(x["layer_s"] for x in s)),
            "server_cpu_s": median(x["server_cpu_s"] for x in s),
            "client_cpu_s": median(x["client_cpu_s"] for x in s),
        }
        for name, s in samples.items()
    }
    def paired(a: str, b: str, key: str = "layer_s") -> Optional[float]:
        """Median over rounds of speed(a)/speed(b) = time(b)/time(a), both taken in the same round:
        drift on the shared machine between rounds cancels out of each pair."""
        return median(ratio(y[key], x[key]) for x, y in zip(samples[a], samples[b]))

    lb_direct = paired("lb", "direct")
    direct_s3 = paired("direct", "s3")
    redirect_direct = paired("redirect", "direct")
    redirect_pull = paired("redirect", "direct", "pull_s")
    of_medians = {"lb_over_direct": ratio(summary["lb"]["mb_s"], summary["direct"]["mb_s"]),
                  "direct_over_s3": ratio(summary["direct"]["mb_s"], summary["s3"]["mb_s"]),
                  "redirect_over_direct": ratio(summary["redirect"]["mb_s"], summary["direct"]["mb_s"])}
    curl_mb_s = {name: mb_per_s(size, median(v)) for name, v in curl_samples.items()}
    def curl_paired(a: str, b: str) -> Optional[float]:
        return median(ratio(y, x) for x, y in zip(curl_samples[a], curl_samples[b]))

    curl_ratios = {"lb_over_direct": curl_paired("lb", "direct"),
                   "direct_over_s3": curl_paired("direct", "s3"),
                   "redirect_over_direct": curl_paired("redirect", "direct")}
    splice_direct = paired("lb_splice", "direct")
    n = min(len(s) for s in samples.values())
    figures = [
        fig(f"through the LB: layer MB/s (whole pull s), median of {n}",
            f"{summary['lb']['mb_s']:.0f} MB/s ({summary['lb']['pull_s']:.3f} s)"),
        fig("one replica directly", f"{summary['direct']['mb_s']:.0f} MB/s ({summary['direct']['pull_s']:.3f} s)"),
        fig("S3 (SeaweedFS) GET of the same object, presigned", f"{summary['s3']['mb_s']:.0f} MB/s"),
        fig("storage.redirect on (307 to S3, client follows)",
            f"{summary['redirect']['mb_s']:.0f} MB/s ({summary['redirect']['pull_s']:.3f} s)"),
        fig("LB / direct (median of per-round paired ratios)", lb_direct, "%", ">= 90%", None if lb_direct is None else lb_direct >= 0.9),
        fig("direct / S3 GET", direct_s3, "%", ">= 60%", None if direct_s3 is None else direct_s3 >= 0.6),
        fig("redirect / direct (layer MB/s; whole-pull speed)",
            f"{fmt(redirect_direct, 'x')}; {fmt(redirect_pull, 'x')}"),
        fig("server CPU per pull (all server processes) LB / direct / S3 / redirect / LB+splice",
            " / ".join(fmt(summary[k]["server_cpu_s"], "s") for k in ("lb", "direct", "s3", "redirect", "lb_splice"))),
        fig("extra: LB + `option splice-auto` / direct (not the sandbox's config)", splice_direct, "%"),
        fig("curl cross-check, layer MB/s LB / direct / S3 / redirect / LB+splice",
            " / ".join(fmt(curl_mb_s[k]) for k in ("lb", "direct", "s3", "redirect", "lb_splice"))),
        fig("curl: LB/direct, direct/S3, redirect/direct",
            f"{fmt(curl_ratios['lb_over_direct'], '%')}, {fmt(curl_ratios['direct_over_s3'], '%')}, "
            f"{fmt(curl_ratios['redirect_over_direct'], 'x')}"),
    ]
    return {
        "image": {"layer_bytes": size, "random_payload_bytes": 50 * MiB, "total_bytes": image.total_bytes},
        "client": "python http.client, one fresh connection per request, body read into a reused 1 MiB buffer "
                  "and dropped; pull = manifest + config blob + layer blob; MB/s from the layer GET alone",
        "repetitions": reps,
        "samples": samples,
        "summary": summary,
        "curl_layer_s": curl_samples,
        "curl_mb_s": curl_mb_s,
        "curl_ratios": curl_ratios,
        "lb_splice": "an extra haproxy: the sandbox's haproxy.cfg plus `option splice-auto` in defaults",
        "ratios_of_medians": of_medians,
        "ratios": {"method": "median over rounds of the paired ratio (same round)",
                   "lb_splice_over_direct": splice_direct, "lb_over_direct": lb_direct, "direct_over_s3": direct_s3, "redirect_over_direct": redirect_direct,
                   "redirect_pull_speed_over_direct": redirect_pull},
        "figures": figures,
    }


# --------------------------------------------------------------------------- 3. failover


def _failover_variant(env: BenchEnv, lb: str, sock: Path, repo: str, image, victim: str,
                      warm: float = 1.0, before: float = 5.0, after: float = 5.0) -> dict:
    sb = env.sandbox
    assert sb is not None
    records: list[tuple[float, float, bool, bool, str]] = []
    lock = threading.Lock()
    stop = threading.Event()

    def worker() -> None:
        for _ in range(50_000):  # bounded; the stop event ends it after `before + after` seconds
            if stop.is_set():
                return
            start = time.perf_counter()
            first_ok, ok, errs = True, False, []
            for attempt in (1, 2):  # one client retry, no back-off
                try:
                    pull(lb, repo, "v1", image, follow=0, timeout=10)
                    ok = True
                    break
                except PULL_ERRORS as exc:
                    if attempt == 1:
                        first_ok = False
                    errs.append(f"{time.perf_counter() - start:.3f}s {type(exc).__name__}: {str(exc)[:100]}")
            err = " | then ".join(errs)
            with lock:
                records.append((start, time.perf_counter(), first_ok, ok, err))

    before_counters = procs.haproxy_stats(sock)
    threads = [threading.Thread(target=worker, daemon=True) for _ in range(4)]
    for t in threads:
        t.start()
    down_after = None
    try:
        time.sleep(warm + before)
        pid = sb.components[victim].pid
        assert pid is not None and sb.healthy(victim), f"{victim} is not running"
        killed = time.perf_counter()
        os.kill(pid, signal.SIGKILL)
        while time.perf_counter() - killed < after + 5:
            if procs.haproxy_server_status(sock, victim).startswith("DOWN"):
                down_after = time.perf_counter() - killed
                break
            time.sleep(0.02)
        remaining = killed + after - time.perf_counter()
        if remaining > 0:
            time.sleep(remaining)
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    after_counters = procs.haproxy_stats(sock)
    # before: pulls that started and finished in the 5 s before the kill; after: every pull the kill
    # could touch, i.e. in flight at the kill or started in the 5 s after it
    win_before = [r for r in records if killed - before <= r[0] and r[1] < killed]
    win_after = [r for r in records if r[1] >= killed and r[0] <= killed + after]
    lat_b = [r[1] - r[0] for r in win_before if r[3]]
    lat_a = [r[1] - r[0] for r in win_after if r[3]]

    def delta(field: str) -> int:
        return int(after_counters["BACKEND"].get(field) or 0) - int(before_counters["BACKEND"].get(field) or 0)

    return {
        "pulls": len(records),
        "pulls_after_kill": len(win_after),
        "failed_no_retry": sum(1 for r in records if not r[2]),
        "failed_one_retry": sum(1 for r in records if not r[3]),
        "errors": [f"t{r[0] - killed:+.3f}s: {r[4]}" for r in sorted(records) if r[4]][:12],
        "lb_down_after_s": down_after,
        "p50_before_s": percentile(lat_b, 50),
        "p99_before_s": percentile(lat_b, 99),
        "p50_after_s": percentile(lat_a, 50),
        "p99_after_s": percentile(lat_a, 99),
        "max_after_s": max(lat_a) if lat_a else None,
        "latencies_before_s": [round(x, 4) for x in lat_b],
        "latencies_after_s": [round(x, 4) for x in lat_a],
        "haproxy_retries": delta("wretr"),
        "haproxy_redispatches": delta("wredis"),
    }


def _pool(runs: list[dict]) -> dict:
    """Rounds of one variant pooled: counts summed, latency percentiles over every round's window."""
    lat_b = [x for r in runs for x in r["latencies_before_s"]]
    lat_a = [x for r in runs for x in r["latencies_after_s"]]
    downs = [r["lb_down_after_s"] for r in runs if r["lb_down_after_s"] is not None]
    return {
        "rounds": len(runs),
        **{k: sum(r[k] for r in runs) for k in ("pulls", "pulls_after_kill", "failed_no_retry", "failed_one_retry",
                                                 "haproxy_retries", "haproxy_redispatches")},
        "lb_down_after_s": median(downs),
        "lb_down_after_each_s": downs,
        "p50_before_s": percentile(lat_b, 50),
        "p99_before_s": percentile(lat_b, 99),
        "p50_after_s": percentile(lat_a, 50),
        "p99_after_s": percentile(lat_a, 99),
        "max_after_s": max(lat_a) if lat_a else None,
        "runs": runs,
    }


def _restore(env: BenchEnv, victim: str, socks: list[Path]) -> None:
    sb = env.sandbox
    assert sb is not None
    sb.start(victim)
    for sock in socks:
        if not procs.wait_until(lambda: procs.haproxy_server_status(sock, victim) == "UP", 20, 0.1):
            raise RuntimeError(f"{victim} not UP again in {sock.name}")


def measure_failover(env: BenchEnv, quick: bool) -> dict:
    sb = env.sandbox
    assert sb is not None
    victim = "registry-2"
    image = build_image((64 * 1024, 2 * MiB), label="bench-failover")
    repo = "bench/failover"
    push(sb.components["registry-1"].address, repo, "v1", image)
    default_lb, default_sock = env.default_haproxy()
    chosen_sock = sb.state_dir / "lb.sock"
    socks = [chosen_sock, default_sock]
    for sock in socks:
        procs.wait_until(lambda: all(procs.haproxy_server_status(sock, n) == "UP" for n in sb.replica_names()), 20, 0.1)
    rounds = 1 if quick else 2
    runs: dict[str, list[dict]] = {"chosen": [], "default": []}
    try:
        for r in range(rounds):  # alternate the variants, so drift on the shared machine hits both
            for name, lb, sock in (("chosen", sb.endpoint, chosen_sock), ("default", default_lb.address, default_sock)):
                env.log(f"failover: round {r + 1}/{rounds}, {name} haproxy settings, SIGKILL {victim}")
                runs[name].append(_failover_variant(env, lb, sock, repo, image, victim))
                _restore(env, victim, socks)
    finally:
        if not sb.healthy(victim):
            sb.start(victim)
        env.stop(default_lb)
    variants = {name: _pool(rs) for name, rs in runs.items() if rs}
    c, d = variants.get("chosen"), variants.get("default")
    figures = []
    for name, v, label in (("chosen", c, "chosen (retries 1 + redispatch)"), ("default", d, "haproxy defaults")):
        if v is None:
            continue
        tgt = name == "chosen"
        figures += [
            fig(f"{label}: failed pulls, no retry / one retry (of {v['pulls']}, {v['rounds']} kill(s))",
                f"{v['failed_no_retry']} / {v['failed_one_retry']}",
                target="0 with one retry" if tgt else "", met=(v["failed_one_retry"] == 0) if tgt else None),
            fig(f"{label}: LB marks the replica DOWN after (median of {v['rounds']})", v["lb_down_after_s"], "s"),
            fig(f"{label}: p50 / p99 pull, 5 s before -> 5 s after the kill",
                f"{_s(v['p50_before_s'])} / {_s(v['p99_before_s'])} -> {_s(v['p50_after_s'])} / {_s(v['p99_after_s'])} s",
                target="p99 after < 1.5 s" if tgt else "",
                met=(v["p99_after_s"] < 1.5) if tgt and v["p99_after_s"] is not None else None),
        ]
    if c and d:
        figures.append(fig("p99 after kill: default / chosen", ratio(d["p99_after_s"], c["p99_after_s"]), "x"))
    return {"victim": victim, "image_bytes": image.total_bytes, "clients": 4, "variants": variants,
            "default_haproxy": "the sandbox's haproxy.cfg without `retries 1` and `option redispatch` "
                               "(so haproxy's defaults: retries 3, no redispatch); same health checks and timeouts",
            "figures": figures}


# --------------------------------------------------------------------------- 4. Redis effect


def measure_redis(env: BenchEnv, quick: bool) -> dict:
    """Pulls from one replica with Redis up, stopped (connection refused) and hung (SIGSTOP: accepts,
    never answers), a push in each outage, and an extra replica with the in-memory cache instead."""
    sb = env.sandbox
    assert sb is not None
    n = 15 if quick else 31
    hung_n = 5 if quick else 9
    image = build_image((64 * 1024, 2 * MiB), label="bench-redis")
    repo = "bench/redis"
    direct = sb.components["registry-1"].address
    push(direct, repo, "v1", image)
    inmem = env.replica_variant("registry-inmemory", set_inmemory_cache)
    samples: dict[str, list[float]] = {"redis": [], "inmemory": [], "redis_stopped": [], "redis_hung": []}
    failures: dict[str, int] = {k: 0 for k in samples}
    pushes: dict[str, Optional[float]] = {}
    redis = sb.components["redis"]

    def one(kind: str, address: str) -> None:
        try:
            samples[kind].append(pull(address, repo, "v1", image, timeout=30).seconds)
        except PULL_ERRORS:
            failures[kind] += 1

    def push_during(kind: str) -> None:
        fresh = build_image((32 * 1024, 256 * 1024), label=f"bench-redis-{kind}-{os.urandom(4).hex()}")
        t0 = time.monotonic()
        try:
            push(direct, f"{repo}-{kind}", "v1", fresh)
            pull(direct, f"{repo}-{kind}", "v1", fresh, verify=True, timeout=60)
            pushes[kind] = time.monotonic() - t0
        except PULL_ERRORS:
            pushes[kind] = None

    try:
        for _ in range(3):  # warm both caches
            pull(direct, repo, "v1", image, verify=True)
            pull(inmem.address, repo, "v1", image, verify=True)
        for _ in range(n):
            one("redis", direct)
            one("inmemory", inmem.address)
        sb.stop("redis")
        one("redis_stopped", direct)  # the first after the stop: not counted in the p50
        samples["redis_stopped"].clear()
        for _ in range(n):
            one("redis_stopped", direct)
        push_during("stopped")
        sb.start("redis")
        for _ in range(3):  # refill the cache
            pull(direct, repo, "v1", image)
        os.kill(redis.pid, signal.SIGSTOP)
        try:
            for _ in range(hung_n):
                one("redis_hung", direct)
            push_during("hung")
        finally:
            os.kill(redis.pid, signal.SIGCONT)
    finally:
        if not sb.healthy("redis"):
            sb.stop("redis")
            sb.start("redis")
        env.stop(inmem)
    p50 = {k: median(v) for k, v in samples.items()}
    stopped_ratio = ratio(p50["redis_stopped"], p50["redis"])
    timeouts = sb.registry_config("registry-1").get("redis", {})
    figures = [
        fig(f"one replica, Redis cache: pull p50 (of {n})", p50["redis"], "s"),
        fig("Redis stopped (connection refused): pull p50", p50["redis_stopped"], "s"),
        fig("Redis stopped / Redis up: pull p50", stopped_ratio, "x", "<= 2x",
            None if stopped_ratio is None else stopped_ratio <= 2),
        fig(f"Redis hung (SIGSTOP): pull p50 / max (of {hung_n})",
            f"{fmt(p50['redis_hung'], 's')} / {fmt(max(samples['redis_hung'], default=None), 's')}"),
        fig("redis timeouts dial/read/write, retries (the rendered config)",
            f"{timeouts.get('dialtimeout')}/{timeouts.get('readtimeout')}/{timeouts.get('writetimeout')}, "
            f"maxretries {timeouts.get('maxretries', 'default')}"),
        fig("push + pull-back during the outage: stopped / hung",
            f"{fmt(pushes.get('stopped'), 's') if pushes.get('stopped') is not None else 'FAILED'} / "
            f"{fmt(pushes.get('hung'), 's') if pushes.get('hung') is not None else 'FAILED'}"),
        fig("in-memory cache (extra replica): pull p50; / Redis",
            f"{fmt(p50['inmemory'], 's')}; {fmt(ratio(p50['inmemory'], p50['redis']), 'x')}"),
        fig("failed pulls (up / stopped / hung / in-memory)",
            f"{failures['redis']} / {failures['redis_stopped']} / {failures['redis_hung']} / {failures['inmemory']}",
            "", "0", not any(failures.values()) and None not in pushes.values()),
    ]
    return {"image_bytes": image.total_bytes, "pulls_each": n, "samples": samples, "p50_s": p50,
            "failures": failures, "pushes_s": pushes, "figures": figures}


# --------------------------------------------------------------------------- 5. mirror


def measure_mirror(env: BenchEnv, quick: bool) -> dict:
    sb = env.sandbox
    up = env.upstream
    assert sb is not None and up is not None
    cache = sb.settings.caches[0]  # the stack's first cache (Docker Hub's by default), in front of the stand-in
    mirror = sb.mirror_address(cache.host)
    if mirror is None or not sb.healthy(cache.component_name):
        raise RuntimeError(f"the sandbox's {cache.name} cache is not running")
    count = 3 if quick else 5
    s3 = sb.s3_client(admin=True)

    def cached(image) -> bool:
        for digest in (image.config_digest, *image.layer_digests):
            try:
                s3.head_object(Bucket=sb.bucket, Key=client.blob_key(cache.root_directory, digest))
            except Exception:
                return False
        return True

    def upstream_requests(offset: int) -> tuple[list, int]:
        text = up.log.read_bytes()
        return access_log_requests(text[offset:].decode(errors="replace")), len(text)

    cold, warm = [], []
    for i in range(count):
        image = build_image((64 * 1024, 2 * MiB), label=f"bench-mirror-{i}-{os.urandom(4).hex()}")
        repo = f"bench/mirror{i}"
        push(up.address, repo, "v1", image)
        time.sleep(0.2)
        _, offset = upstream_requests(0)
        p = pull(mirror, repo, "v1", image, verify=True)
        # the cache commits blobs to S3 a little after the client has the last byte: wait for it
        procs.wait_until(lambda: cached(image), 10, 0.05)
        time.sleep(0.2)
        reqs, offset = upstream_requests(offset)
        cold.append({"pull_s": p.seconds, "upstream_requests": len(reqs),
                     "upstream_blob_gets": sum(1 for m, path, _ in reqs if m == "GET" and "/blobs/" in path),
                     "requests": [f"{m} {re.sub(r'sha256:[0-9a-f]{64}', 'sha256:…', path)} {s}" for m, path, s in reqs]})
        for _ in range(2):
            p = pull(mirror, repo, "v1", image, verify=True)
            time.sleep(0.2)
            reqs, offset = upstream_requests(offset)
            warm.append({"pull_s": p.seconds, "upstream_requests": len(reqs),
                         "upstream_blob_gets": sum(1 for m, path, _ in reqs if m == "GET" and "/blobs/" in path),
                         "requests": [f"{m} {re.sub(r'sha256:[0-9a-f]{64}', 'sha256:…', path)} {s}" for m, path, s in reqs]})
    blobs = 3  # config + 2 layers
    cold_p50 = median(x["pull_s"] for x in cold)
    warm_p50 = median(x["pull_s"] for x in warm)
    warm_blob_gets = sum(x["upstream_blob_gets"] for x in warm)
    # paired per image: its warm pulls against its own cold pull
    warm_cold = median(ratio(w["pull_s"], c["pull_s"]) for c, ws in zip(cold, zip(warm[0::2], warm[1::2])) for w in ws)
    figures = [
        fig(f"cold pull through the cache, p50 of {len(cold)} images", cold_p50, "s"),
        fig(f"warm pull, p50 of {len(warm)}", warm_p50, "s"),
        fig("upstream requests per pull, cold / warm (blob GETs)",
            f"{median(x['upstream_requests'] for x in cold):.0f} ({median(x['upstream_blob_gets'] for x in cold):.0f})"
            f" / {median(x['upstream_requests'] for x in warm):.0f} ({median(x['upstream_blob_gets'] for x in warm):.0f})"),
        fig("cold: upstream blob GETs per blob (2.8 fetches each blob twice: client stream + store)",
            ratio(median(x["upstream_blob_gets"] for x in cold), blobs), "x"),
        fig("upstream blob GETs on all warm pulls", warm_blob_gets, "", "0", warm_blob_gets == 0),
        fig("warm / cold (median of warm/cold of the same image)", warm_cold, "%", "<= 40%", None if warm_cold is None else warm_cold <= 0.4),
    ]
    return {"images": count, "image_layers": [64 * 1024, 2 * MiB], "cold": cold, "warm": warm,
            "cold_p50_s": cold_p50, "warm_p50_s": warm_p50, "warm_over_cold_paired": warm_cold,
            "warm_over_cold_of_medians": ratio(warm_p50, cold_p50), "figures": figures}


# --------------------------------------------------------------------------- 6. test suite


def _pytest(args: list[str], timeout: float) -> dict:
    t0 = time.perf_counter()
    try:
        proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args], cwd=REPO_ROOT,
                              env=_clean_env(), capture_output=True, text=True, timeout=timeout)
        rc, out = proc.returncode, proc.stdout
    except subprocess.TimeoutExpired as exc:
        rc, out = None, (exc.stdout or b"").decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
    wall = time.perf_counter() - t0
    summary = next((l.strip("= ") for l in reversed(out.splitlines()) if re.search(r"\d+ (passed|failed|error)", l)), "")
    failed = [l.split(" ", 1)[1].split(" - ")[0] for l in out.splitlines() if l.startswith(("FAILED ", "ERROR "))]
    return {"wall_s": wall, "returncode": rc, "summary": summary, "failed": failed}


def measure_suite(quick: bool, with_suite: bool) -> dict:
    unit = _pytest(["tests", "--ignore=tests/integration"], timeout=900)
    result = {"unit": unit, "full": None}
    figures = [fig(f"unit tier (pytest tests --ignore=tests/integration): {unit['summary']}", unit["wall_s"], "s")]
    if unit["failed"]:
        figures.append(fig("  failing (not bench's)", ", ".join(t.rsplit("/", 1)[-1] for t in unit["failed"])))
    if with_suite:
        full = _pytest([], timeout=1800)
        result["full"] = full
        figures.append(fig(f"full suite (pytest, integration included): {full['summary']}", full["wall_s"], "s"))
        if full["failed"]:
            figures.append(fig("  failing (not bench's)", ", ".join(t.rsplit("/", 1)[-1] for t in full["failed"])))
        figures.append(fig("full / unit", ratio(full["wall_s"], unit["wall_s"]), "x"))
    else:
        figures.append(fig("full suite", "not run (add --with-suite)"))
    result["figures"] = figures
    return result
