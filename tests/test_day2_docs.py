"""docs/day2.md's generated blocks (registry_ha/day2_docs.py): the schema table comes from the builder,
the data-safety table from the stack files, the GC and restart figures from the newest benchmark result
that has them, and the extrapolation is the fit's arithmetic."""
from __future__ import annotations

import json

from registry_ha import day2_docs, docs


def test_day2_blocks_are_in_the_doc_and_registered():
    text = (docs.REPO_ROOT / "docs" / "day2.md").read_text()
    for name in ("gc-cost", "schema-differences", "restart-under-pulls", "data-safety"):
        assert f"<!-- generated: {name} -->" in text and name in docs.GENERATORS


def test_schema_table_pairs_the_redis_and_proxy_keys_of_each_schema():
    rows = {line.split(" | ")[0].strip("| "): line.split(" | ")[1:] for line in day2_docs.schema_differences().splitlines()
            if line.startswith("| ")}
    old, new = rows["private registry"]
    assert "`redis.addr`" in old and "`redis.pool.maxactive`: `64`" in old
    assert "`redis.addrs`" in new and "`redis.poolsize`: `64`" in new and "`storage.s3.forcepathstyle`: `true`" in new
    old, new = rows["a cache (Docker Hub's here)"]
    assert "`proxy.username`" in old and "`proxy.exec.command`" in new and "`proxy.ttl`: `168h`" in new
    assert rows["a cache (Docker Hub's here): files in the config Secret"][1].startswith("`credential-helper`")
    assert rows["both: where the image reads its config"] == ["`/etc/docker/registry/config.yml`",
                                                             "`/etc/distribution/config.yml` |"]


def test_data_safety_follows_the_stack_files():
    lines = day2_docs.data_safety().splitlines()
    assert "| `production` | `true` | 30 days | `true` | `false` | keeps the bucket and its images |" in lines
    assert "| `staging` | `false` | (no versions) | `false` | `true` | deletes the bucket with its images |" in lines


def _results(date: str, **measures) -> dict:
    return {"date": date, "command": "python -m bench --only gc,restart", "nproc": 2, "measures": measures}


GC = {"tags_per_repository": 10, "deleted_share": 0.1,
      "points": [{"images": 10, "deleted": 1, "sweep_s": 0.5, "sweep_requests": {"GET": 180, "LIST": 20},
                  "sweep_requests_total": 200, "plain_mark_requests_total": 120, "window_s": 3.0}],
      "fit": {"requests_intercept": 0.0, "requests_per_image": 20.0, "plain_mark_requests_per_image": 12.0,
              "seconds_intercept": 0.0, "seconds_per_image": 0.05}}


def test_gc_cost_extrapolates_requests_times_latency(tmp_path):
    (tmp_path / "bench").mkdir()
    (tmp_path / "bench" / "day2.json").write_text(json.dumps(_results("2026-12-01T00:00:00+00:00", gc=GC)))
    text = day2_docs.gc_cost(tmp_path)
    assert "| 10 | 1 | 0.50 s | 200 (GET 180, LIST 20) | 120 | 3.0 s |" in text
    # 10,000 images x 20 requests = 200,000; x 10 ms = 2,000 s = 33 min; x 30 ms = 6,000 s = 100 min
    assert "| 10,000 | 200,000 | 8 min | 33 min to 100 min |" in text
    assert "| 100,000 | 2,000,000 | 83 min | 5.6 h to 16.7 h |" in text


def test_the_newest_result_with_the_measure_wins(tmp_path):
    (tmp_path / "bench").mkdir()
    newer = dict(GC, fit=dict(GC["fit"], requests_per_image=30.0))
    (tmp_path / "bench" / "day2.json").write_text(json.dumps(_results("2026-12-01T00:00:00+00:00", gc=GC)))
    (tmp_path / "bench" / "latest.json").write_text(json.dumps(_results("2026-12-02T00:00:00+00:00", gc=newer)))
    assert "30.0 S3 requests per image" in day2_docs.gc_cost(tmp_path)
    (tmp_path / "bench" / "latest.json").write_text(json.dumps(_results("2026-12-03T00:00:00+00:00")))  # no gc in it
    assert "20.0 S3 requests per image" in day2_docs.gc_cost(tmp_path)
    assert "No benchmark result has the restart measurement" in day2_docs.restart_under_pulls(tmp_path)


def test_restart_figures_come_per_registry_version(tmp_path):
    """The benchmark runs the restart once per lane: each lane's figures, named by version."""
    (tmp_path / "bench").mkdir()
    def lane(failed: str) -> dict:
        return {"figures": [{"figure": "failed pulls, no retry / one retry", "value": failed, "unit": "", "target": "", "met": None}]}
    restart = {"lanes": {"3.1.1": lane("0 / 0"), "2.8": lane("1 / 0")}}
    (tmp_path / "bench" / "latest.json").write_text(json.dumps(_results("2026-12-03T00:00:00+00:00", restart=restart)))
    rows = day2_docs.restart_under_pulls(tmp_path).splitlines()
    assert "| 3.1.1 | failed pulls, no retry / one retry | 0 / 0 |" in rows
    assert "| 2.8 | failed pulls, no retry / one retry | 1 / 0 |" in rows
