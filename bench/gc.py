"""7. GC cost: how long `registry garbage-collect --delete-untagged` runs, and how many S3 requests it
makes, for 10, 100 and 1000 small images; and the whole read-only window of `local gc` around it.

On a sandbox of its own (a sweep would delete what the other measurements leave unreferenced): images of
one small layer each, ten tags per repository; before each point a tenth of the images is deleted by
manifest, so every sweep has work. S3 requests are SeaweedFS's own counters
(SeaweedFS_s3_request_total, per request type) read before and after the sweep; the replicas are
read-only meanwhile, so apart from their storage health checks (one request per replica per 10 s)
every request is the sweep's. The fit (requests and seconds per image) extrapolates to a registry of
any size; on AWS the sweep's requests run one after another, so its time is about requests x S3's
per-request latency (docs/day2.md works the numbers).
"""
from __future__ import annotations

import io
import re
import sys
import time
from typing import Optional

from registry_ha.gc_job import parse_summary
from registry_ha.sandbox import gc as sandbox_gc
from registry_ha.sandbox.core import Sandbox

from bench.client import build_image, push, request
from bench.env import BenchEnv
from bench.measures import fig

POINTS = (10, 100, 1000)
QUICK_POINTS = (10, 100)
TAGS_PER_REPOSITORY = 10
DELETED_SHARE = 10  # one image in ten is deleted before each sweep
METRIC = re.compile(r'^SeaweedFS_s3_request_total\{(?P<labels>[^}]*)\} (?P<value>\S+)$', re.M)


def s3_requests(sb: Sandbox) -> dict[str, int]:
    """SeaweedFS's request counters for the sandbox's bucket, summed per request type (GET, LIST, ...)."""
    import urllib.request

    port = sb.ports.weed()["metricsPort"]
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:  # noqa: S310 (loopback)
        text = response.read().decode()
    counts: dict[str, int] = {}
    for match in METRIC.finditer(text):
        labels = dict(re.findall(r'(\w+)="([^"]*)"', match.group("labels")))
        if labels.get("bucket") == sb.bucket:
            counts[labels["type"]] = counts.get(labels["type"], 0) + int(float(match.group("value")))
    return counts


def _delta(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    return {k: after.get(k, 0) - before.get(k, 0) for k in sorted(set(after) | set(before)) if after.get(k, 0) != before.get(k, 0)}


def _fit(xs: list[float], ys: list[float]) -> tuple[float, float]:
    """Least-squares line y = a + b*x."""
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    b = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx if sxx else 0.0
    return my - b * mx, b


class Store:
    """The images pushed so far: (repo, tag) -> manifest digest, live or deleted."""

    def __init__(self, sb: Sandbox):
        self.sb = sb
        self.live: list[tuple[str, str, str]] = []
        self.pushed = 0

    def grow_to(self, count: int) -> None:
        while len(self.live) < count:
            n = self.pushed
            repo, tag = f"bench/gc-{n // TAGS_PER_REPOSITORY:04d}", f"t{n % TAGS_PER_REPOSITORY}"
            image = build_image((2048,), label=f"gc-{n}")
            push(self.sb.components["registry-1"].address, repo, tag, image)
            self.live.append((repo, tag, image.manifest_digest))
            self.pushed += 1

    def delete_share(self) -> int:
        doomed = self.live[::DELETED_SHARE]
        for repo, _, digest in doomed:
            status, _, body = request(self.sb.endpoint, "DELETE", f"/v2/{repo}/manifests/{digest}")
            if status != 202:
                raise RuntimeError(f"DELETE {repo}@{digest[:19]}: {status} {body[:200]!r}")
        self.live = [entry for entry in self.live if entry not in doomed]
        return len(doomed)


def _run(sb: Sandbox, dry_run: bool, delete_untagged: bool) -> tuple[float, dict[str, int], dict]:
    """One `registry garbage-collect`: (seconds, S3 requests by type, its summary line)."""
    before = s3_requests(sb)
    t0 = time.monotonic()
    code, output = sandbox_gc.collect(sb, dry_run=dry_run, delete_untagged=delete_untagged)
    seconds = time.monotonic() - t0
    if code != 0:
        raise RuntimeError(f"garbage-collect failed: {output[-1000:]}")
    return seconds, _delta(s3_requests(sb), before), parse_summary(output) or {}


def _point(env: BenchEnv, store: Store, images: int) -> dict:
    sb = env.sandbox
    assert sb is not None
    t0 = time.monotonic()
    store.grow_to(images)
    pushed_s = time.monotonic() - t0
    deleted = store.delete_share()
    start = time.monotonic()
    with sandbox_gc.read_only(sb, out=io.StringIO()):
        switch_on = time.monotonic() - start
        # what the plain mark costs (no tag lookups), on the same store, deleting nothing
        mark_s, mark_requests, _ = _run(sb, dry_run=True, delete_untagged=False)
        sweep_s, sweep_requests, summary = _run(sb, dry_run=False, delete_untagged=True)
        t1 = time.monotonic()
        sandbox_gc.flush_registry_db(sb)
        flush_s = time.monotonic() - t1
        leaving = time.monotonic()
    switch_off = time.monotonic() - leaving
    window = switch_on + sweep_s + flush_s + switch_off  # `local gc --delete-untagged` (without the extra dry run)
    env.log(f"gc: {images} images ({deleted} deleted): sweep {sweep_s:.2f}s {sum(sweep_requests.values())} S3 requests "
            f"{sweep_requests}; plain mark {mark_s:.2f}s {sum(mark_requests.values())} requests")
    return {"images": images, "repositories": -(-store.pushed // TAGS_PER_REPOSITORY), "deleted": deleted,
            "push_s": round(pushed_s, 2), "summary": summary,
            "sweep_s": round(sweep_s, 3), "sweep_requests": sweep_requests, "sweep_requests_total": sum(sweep_requests.values()),
            "plain_mark_s": round(mark_s, 3), "plain_mark_requests": mark_requests,
            "plain_mark_requests_total": sum(mark_requests.values()),
            "switch_on_s": round(switch_on, 3), "flush_s": round(flush_s, 3), "switch_off_s": round(switch_off, 3),
            "window_s": round(window, 3)}


def measure(env: Optional[BenchEnv], quick: bool) -> dict:
    own = BenchEnv(stack=env.stack if env is not None else "staging", out=env.out if env is not None else sys.stderr)
    own.up()
    try:
        store = Store(own.sandbox)
        points = [_point(own, store, n) for n in (QUICK_POINTS if quick else POINTS)]
    finally:
        own.close()
    xs = [float(p["images"]) for p in points]
    req_a, req_b = _fit(xs, [float(p["sweep_requests_total"]) for p in points])
    sec_a, sec_b = _fit(xs, [p["sweep_s"] for p in points])
    mark_a, mark_b = _fit(xs, [float(p["plain_mark_requests_total"]) for p in points])
    figures = []
    for p in points:
        kinds = ", ".join(f"{k} {v}" for k, v in p["sweep_requests"].items())
        figures += [
            fig(f"{p['images']} images ({p['deleted']} deleted): garbage-collect --delete-untagged", p["sweep_s"], "s"),
            fig(f"{p['images']} images: its S3 requests ({kinds})", p["sweep_requests_total"]),
            fig(f"{p['images']} images: plain mark (--dry-run, no tag lookups): time / S3 requests",
                f"{p['plain_mark_s']:.3f} s / {p['plain_mark_requests_total']}"),
            fig(f"{p['images']} images: read-only window of `local gc --delete-untagged`", p["window_s"], "s"),
        ]
    figures += [
        fig(f"fit: S3 requests per image, --delete-untagged ({TAGS_PER_REPOSITORY} tags per repository)", req_b),
        fig("fit: S3 requests per image, plain mark", mark_b),
        fig("fit: sweep seconds per image on the sandbox", sec_b, "s"),
    ]
    return {"points": points, "tags_per_repository": TAGS_PER_REPOSITORY, "deleted_share": 1 / DELETED_SHARE,
            "fit": {"requests_intercept": req_a, "requests_per_image": req_b,
                    "plain_mark_requests_intercept": mark_a, "plain_mark_requests_per_image": mark_b,
                    "seconds_intercept": sec_a, "seconds_per_image": sec_b},
            "figures": figures}
