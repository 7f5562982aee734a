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
    for name in ("efficiency", "batching", "mixed", "overhead", "coldstart", "memory", "quantize", "engine"):
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
    assert r["engine"] == "onnx" and r["import_onnxruntime_s"] > 0 and r["load_model_s"] > 0
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
    assert r["engine"] == "onnx"                  # the registry's default engine
    assert 50 < r["rss_mb_per_worker"] < 8000
    assert r["pools"][1]["total_rss_mb"] > r["pools"][0]["total_rss_mb"]


@pytest.mark.slow
def test_quantize(tmp_path):
    r = bench("quantize", tmp_path)
    v = r["variants"]
    assert set(v) == {"minilm-torch", "minilm-int8", "minilm-int8-all", "minilm-bf16"}
    assert v["minilm-torch"]["cosine_mean"] > 0.9999 and v["minilm-torch"]["speedup"] == 1.0
    for name in ("minilm-int8", "minilm-int8-all", "minilm-bf16"):
        assert 0 < v[name]["cosine_mean"] <= 1.0001 and v[name]["texts_per_s"] > 0


@pytest.mark.slow
def test_engine(tmp_path):
    r = bench("engine", tmp_path, png=True)
    assert len(r["git_commit"]) >= 40 or r["git_commit"] == "unknown"
    assert set(r["throughput"]) == set(r["agreement"]) == set(r["spawn"]) == {"torch-fp32", "onnx-fp32", "onnx-int8"}
    assert r["warm"]["onnx-fp32"]["engine"] == "onnx" and r["warm"]["torch-fp32"]["engine"] == "torch"
    assert r["agreement"]["onnx-fp32"]["cosine_min"] >= 0.99999
    int8 = r["agreement"]["onnx-int8"]
    assert int8["cosine_mean"] >= 0.99 and 0.97 <= int8["cosine_min"] < 0.99999     # quantized, and close
    for rows in r["throughput"].values():
        assert set(rows) == {"1", "8", "32"} and all(x["texts_per_s"] > 0 and x["rss_mb"] > 0 for x in rows.values())
    assert r["throughput"]["torch-fp32"]["32"]["speedup"] == 1.0
    for name, s in r["spawn"].items():
        assert 0 < s["ready_s"] <= s["first_result_s"] and s["worker_rss_mb"] > 50
