"""A small run of every benchmark, through ``elastiq bench NAME --smoke --json PATH``.

Checks that each one runs end to end (real redis-server, real workers, real model) and
writes JSON with the expected fields and sane values. Never times: the figures are
ratios measured in the full runs (docs/performance.md), not here.
"""

from __future__ import annotations

import json
import shutil

import pytest

from tests.conftest import require

pytestmark = pytest.mark.integration


def bench(name: str, tmp_path, png: bool = False) -> dict:
    require(shutil.which("redis-server") is not None, "redis-server is not installed")
    from benchmarks.cli import main

    out = tmp_path / f"{name}.json"
    args = [name, "--smoke", "--json", str(out)]
    if png:
        args += ["--png", str(tmp_path / f"{name}.png")]
    assert main(args) == 0
    report = json.loads(out.read_text())
    assert report["benchmark"] == name and report["smoke"] is True
    assert report["machine"]["cpus"] >= 1
    if png:
        assert (tmp_path / f"{name}.png").stat().st_size > 1000
    return report


def test_cli_lists_benchmarks(capsys):
    from benchmarks.cli import main

    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    for name in ("efficiency", "batching", "mixed", "overhead", "coldstart", "memory", "quantize", "capacity"):
        assert name in text


def test_overhead(tmp_path):
    r = bench("overhead", tmp_path, png=True)
    for path in ("raw_redis", "plain_celery", "elastiq"):
        assert r[path]["n"] == 60
        assert 0 < r[path]["p50_ms"] <= r[path]["p99_ms"]
    assert r["ratio_p50_vs_celery"] > 0 and r["ratio_p50_vs_raw_redis"] > 0


def test_coldstart(tmp_path):
    r = bench("coldstart", tmp_path)
    assert 0 < r["ready_s"] <= r["first_job_done_s"]
    assert r["import_torch_s"] > 0 and r["load_model_s"] > 0
    assert 0 < r["import_share_of_ready"] < 1


@pytest.mark.slow
def test_efficiency(tmp_path):
    r = bench("efficiency", tmp_path, png=True)
    assert r["inprocess_limit"]["texts_per_s"] > 0
    assert r["single"]["jobs"] == 240 and r["eight"]["texts"] == 240
    assert r["single"]["workers"] == 2            # both workers took jobs
    assert r["eight"]["mean_batch_size"] > 1      # the micro-batcher combined jobs
    assert 0 < r["ratio_single"] < 2 and 0 < r["ratio_eight"] < 2


@pytest.mark.slow
def test_batching(tmp_path):
    r = bench("batching", tmp_path, png=True)
    assert r["unbatched"]["mean_batch_size"] == 1
    assert r["batched"]["mean_batch_size"] > 1
    sizes = [s for stats in r["batched"]["batching_stats"].values() for s in (stats or {}).get("sizes", {})]
    assert sizes, "the heartbeat carries the batch-size histogram"
    assert r["ratio"] > 0


@pytest.mark.slow
def test_mixed(tmp_path):
    r = bench("mixed", tmp_path, png=True)
    assert r["fifo"]["texts"] == r["sorted"]["texts"] == 16 * 8
    assert r["padding_ratio_sorted"] >= 1 and r["padding_ratio_fifo"] >= 1
    assert r["padding_ratio_sorted"] <= r["padding_ratio_fifo"]     # sorting never pads more


@pytest.mark.slow
def test_memory(tmp_path):
    r = bench("memory", tmp_path, png=True)
    assert [p["workers"] for p in r["pools"]] == [1, 2]
    assert 50 < r["rss_mb_per_worker"] < 8000
    assert r["pools"][1]["total_rss_mb"] > r["pools"][0]["total_rss_mb"]


@pytest.mark.slow
def test_quantize(tmp_path):
    r = bench("quantize", tmp_path)
    v = r["variants"]
    assert set(v) == {"minilm", "minilm-int8", "minilm-int8-all", "minilm-bf16"}
    assert v["minilm"]["cosine_mean"] > 0.9999 and v["minilm"]["speedup"] == 1.0
    for name in ("minilm-int8", "minilm-int8-all", "minilm-bf16"):
        assert 0 < v[name]["cosine_mean"] <= 1.0001 and v[name]["texts_per_s"] > 0


@pytest.mark.slow
def test_capacity(tmp_path):
    r = bench("capacity", tmp_path)
    assert [p["workers"] for p in r["pools"]] == [1, 2]
    assert all(p["jobs"] == 120 and p["jobs_per_s"] > 0 for p in r["pools"])
    assert r["pools"][0]["vs_one_worker"] == 1.0 and r["host_jobs_per_s"] >= r["pools"][0]["jobs_per_s"]
    assert r["alone"]["jobs"] == 5 and 0 < r["alone"]["service_s_median"] <= r["alone"]["service_s_p90"]
    assert r["machine"]["memory_mb"] > 0


@pytest.mark.slow
def test_reaction(tmp_path):
    r = bench("reaction", tmp_path)
    assert r["model"] == "debug" and r["jobs"] == 200
    assert 0 < r["decision_s"] <= r["burst_done_s"]                # the burst made the controller add a worker
    assert r["keda_hpa_decision_worst_s"] == 45 and r["target_new_worker_s"] == 2.0
    assert isinstance(r["meets_target"], bool)
    for key in ("first_job_started_on_new_worker_s", "pool_at_new_size_serving_s", "new_size"):
        assert key in r
