"""A small run of every benchmark, through ``elastiq bench NAME --smoke --json PATH``.

Checks that each one runs end to end (real redis-server, real workers, real model) and
writes JSON with the expected fields and sane values: the git commit, the load at start,
the engine the runtime reported, A/B arms run in alternating rounds, and each ratio equal
to the median of the per-round ratios of the report's own figures. Never times: the
figures are measured in the full runs (docs/performance.md), not here.
"""

from __future__ import annotations

import json
import shutil
import statistics

import pytest

from benchmarks.provenance import git_commit
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
    assert report["git_commit"] == git_commit() and len(report["load_avg_at_start"]) == 3
    if png:
        assert (tmp_path / f"{name}.png").stat().st_size > 1000
    return report


def per_round_ratios(num: list[dict], den: list[dict], key: str) -> list[float]:
    return [round(a[key] / b[key], 3) for a, b in zip(num, den)]


def check_spread(spread: dict, per_round: list[float], rounds: int = 3) -> None:
    """A ratio's spread: its rounds, recomputed from the runs, and their median/min/max."""
    assert len(per_round) == rounds and spread["per_round"] == per_round
    assert spread["median"] == pytest.approx(statistics.median(per_round), abs=1e-3)
    assert spread["min"] == min(per_round) and spread["max"] == max(per_round)


def test_cli_lists_benchmarks(capsys):
    from benchmarks.cli import main

    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    for name in ("efficiency", "batching", "mixed", "overhead", "coldstart", "memory", "quantize", "engine",
                 "capacity", "gateway", "cascade", "sustained"):
        assert name in text


def test_overhead(tmp_path):
    r = bench("overhead", tmp_path, png=True)
    assert r["rounds"] == 3 and r["engine"] == "none"         # the model-free debug kind
    for path in ("raw_redis", "plain_celery", "elastiq", "elastiq_no_batching"):
        assert r[path]["n"] == 3 * 20 and len(r[path]["p50_ms_per_round"]) == 3
        assert 0 < r[path]["p50_ms"] <= r[path]["p99_ms"]
    rounds = {p: [{"p50_ms": x} for x in r[p]["p50_ms_per_round"]] for p in ("elastiq", "plain_celery", "raw_redis")}
    check_spread(r["ratio_p50_vs_celery_spread"], per_round_ratios(rounds["elastiq"], rounds["plain_celery"], "p50_ms"))
    check_spread(r["ratio_p50_vs_raw_redis_spread"], per_round_ratios(rounds["elastiq"], rounds["raw_redis"], "p50_ms"))
    assert r["ratio_p50_vs_celery"] == r["ratio_p50_vs_celery_spread"]["median"]


def test_coldstart(tmp_path):
    r = bench("coldstart", tmp_path)
    assert 0 < r["ready_s"] <= r["first_job_done_s"]
    assert r["engine"] == "onnx" and r["import_onnxruntime_s"] > 0 and r["load_model_s"] > 0
    # imports are measured in a separate interpreter; the worker's start is little but those
    # imports and the model load, so the share's side of 1 is load noise: not asserted


@pytest.mark.slow
def test_efficiency(tmp_path):
    r = bench("efficiency", tmp_path, png=True)
    assert r["engine"] == "onnx"
    base = r["inprocess_limit"]
    assert len(base["runs"]) == 3 and all(x["group"] == 32 and x["padding_ratio"] >= 1 for x in base["runs"])
    assert all(x["jobs"] == 240 for x in r["single"]["runs"]) and all(x["texts"] == 240 for x in r["eight"]["runs"])
    assert all(x["workers"] == 2 for x in r["single"]["runs"])     # both workers took jobs
    assert r["eight"]["mean_batch_size"] > 1                      # the micro-batcher combined jobs
    for name in ("single", "eight"):
        check_spread(r[name]["ratio_spread"], per_round_ratios(r[name]["runs"], base["runs"], "texts_per_s"))
        assert r[f"ratio_{name}"] == r[name]["ratio"] < 2
    plain = r["plain_celery"]["runs"]
    assert len(plain) == 3 and all(x["jobs"] == 240 and x["jobs_per_s"] > 0 for x in plain)
    check_spread(r["single_vs_plain_celery_spread"], per_round_ratios(r["single"]["runs"], plain, "jobs_per_s"))
    cpu = r["per_job_cpu_ms"]
    # the model's share is measured by the workers themselves, and is part of their total
    assert 0 < cpu["workers_model"] < cpu["workers"] and cpu["workers_beyond_model"] > 0


@pytest.mark.slow
def test_batching(tmp_path):
    r = bench("batching", tmp_path, png=True)
    assert r["engine"] == "onnx" and r["rounds"] == 3
    assert all(x["mean_batch_size"] == 1 for x in r["unbatched"]["runs"])
    assert r["batched"]["mean_batch_size"] > 1
    sizes = [s for stats in r["batched"]["batching_stats"].values() for s in (stats or {}).get("sizes", {})]
    assert sizes, "the heartbeat carries the batch-size histogram"
    check_spread(r["ratio_spread"], per_round_ratios(r["batched"]["runs"], r["unbatched"]["runs"], "jobs_per_s"))
    assert r["ratio"] == r["ratio_spread"]["median"]


@pytest.mark.slow
def test_mixed(tmp_path):
    r = bench("mixed", tmp_path, png=True)
    assert r["engine"] == "onnx"
    assert all(x["texts"] == 16 * 8 for x in r["fifo"]["runs"] + r["sorted"]["runs"])
    assert r["padding_ratio_sorted"] >= 1 and r["padding_ratio_fifo"] >= 1
    assert r["padding_ratio_sorted"] <= r["padding_ratio_fifo"]     # sorting never pads more
    check_spread(r["ratio_spread"], per_round_ratios(r["sorted"]["runs"], r["fifo"]["runs"], "texts_per_s"))


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
    assert r["engine"] == "torch"
    v = r["variants"]
    assert set(v) == {"minilm-torch", "minilm-int8", "minilm-int8-all", "minilm-bf16"}
    assert v["minilm-torch"]["cosine_mean"] > 0.9999
    for name in ("minilm-int8", "minilm-int8-all", "minilm-bf16"):
        assert 0 < v[name]["cosine_mean"] <= 1.0001 and v[name]["texts_per_s"] > 0
        check_spread(v[name]["speedup_spread"], per_round_ratios(v[name]["runs"], v["minilm-torch"]["runs"], "texts_per_s"))


def test_gateway(tmp_path):
    r = bench("gateway", tmp_path)
    for arm in ("client", "gateway"):
        assert r[arm]["requests"] == 128                  # every request answered (200s only)
        assert 0 < r[arm]["p50_ms"] <= r[arm]["p99_ms"]
    assert r["cosine_min_gateway_vs_client"] >= 0.9999    # the same vectors through HTTP
    assert r["settings"]["concurrency"] == 64
    assert r["git_commit"] == git_commit()
    assert r["added_p50_ms"] == round(r["gateway"]["p50_ms"] - r["client"]["p50_ms"], 3)
    cpu = r["cpu_ms_per_request"]
    assert cpu["gateway_arm_gateway"] > 0 and cpu["client_arm_this_process"] > 0
    assert cpu["client_arm_load_generator"] == cpu["client_arm_this_process"]      # the client is the load
    assert 0 < cpu["gateway_arm_load_generator"] <= cpu["gateway_arm_load_generator_with_startup"]
    assert r["gateway"]["connect_ms_max"] > 0
    u = r["unloaded"]
    assert u["client"]["requests"] == u["gateway"]["requests"] == 20
    assert 0 < u["gateway"]["p50_ms"] <= u["gateway"]["p99_ms"]


@pytest.mark.slow
def test_capacity(tmp_path):
    r = bench("capacity", tmp_path)
    assert [p["workers"] for p in r["pools"]] == [1, 2]
    assert all(p["jobs"] == 120 and p["jobs_per_s"] > 0 for p in r["pools"])
    assert r["pools"][0]["vs_one_worker"] == 1.0 and r["host_jobs_per_s"] >= r["pools"][0]["jobs_per_s"]
    assert r["alone"]["jobs"] == 5 and 0 < r["alone"]["service_s_median"] <= r["alone"]["service_s_p90"]
    assert r["machine"]["memory_mb"] > 0


@pytest.mark.slow
def test_sustained(tmp_path):
    r = bench("sustained", tmp_path, png=True)
    assert r["model"] == "debug" and r["failed"] == 0 and r["jobs"] >= 200
    assert r["settings"]["appendfsync"] == "everysec" and r["settings"]["result_ttl_s"] > 0
    assert len(r["windows"]) >= 1 and r["jobs_per_s"] > 0 and r["kb_per_job"] > 0   # results kept in Redis
    assert r["redis_mb_at_result_ttl"] > 0


@pytest.mark.slow
def test_reaction(tmp_path):
    r = bench("reaction", tmp_path)
    assert r["model"] == "debug" and r["jobs"] == 200
    assert 0 < r["decision_s"] <= r["burst_done_s"]                # the burst made the controller add a worker
    assert r["keda_hpa_decision_worst_s"] == 45 and r["target_new_worker_s"] == 2.0
    assert isinstance(r["meets_target"], bool)
    for key in ("first_job_started_on_new_worker_s", "pool_at_new_size_serving_s", "new_size"):
        assert key in r


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
    for s in r["spawn"].values():
        assert 0 < s["ready_s"] <= s["first_result_s"] and s["worker_rss_mb"] > 50


@pytest.mark.slow
def test_cascade(tmp_path):
    """Trains a tiny version in the pool, serves it, runs the real EdgeClient on a test slice."""
    r = bench("cascade", tmp_path, png=True)
    s = r["settings"]
    assert s["test_size"] == 60 and s["version"].startswith("v") and s["base"] == "tiny-enc"
    assert "validation" in s["threshold_selection"]["target"]
    assert set(s["splits"]) == {"train", "validation", "test"}
    a = r["accuracy"]
    assert all(0 <= a[k] <= 1 for k in ("cloud", "edge", "cascade", "frozen_lr"))
    assert 0 <= r["escalated"] <= 1 and len(r["curve"]) >= 2
    assert r["curve"][-1]["escalated"] == 1.0 and r["curve"][-1]["accuracy"] == pytest.approx(a["cloud"])
    cpu = r["cpu_ms_per_text"]
    assert cpu["cloud"]["batch_1"] > 0 and cpu["edge"]["batch_1"] > 0
    assert r["baseline_lr"]["train_size"] == 160 and set(r["meets"]) >= {"cloud_beats_frozen_lr", "escalated_le_35pct"}
