"""The machine model: workers share the host's CPUs and memory; cold starts and slot times as measured."""

from __future__ import annotations

import json

import numpy as np
import pytest

from autoscaler.simulator import machine
from autoscaler.simulator.model import SimParams, simulate
from autoscaler.simulator.policies import StaticPolicy
from autoscaler.simulator.pool import Pool
from autoscaler.traces import make_trace
from autoscaler.traces.generate import poisson
from elastiq.errors import ConfigError

# A 2-core host where one worker alone serves 120 jobs/s and any number together 200.
HOST = SimParams(throughput_per_worker=120.0, host_cpus=2, host_jobs_per_s=200.0, single_job_s=0.004,
                 cold_start_samples=(3.0,), service_cv=0.0, min_workers=1, max_workers=4)


def saturated_rate(workers: int, params: SimParams = HOST) -> float:
    """Jobs/s a warm static pool starts while far more arrive than it can serve."""
    trace = poisson("flood", lambda t: np.full_like(t, 600.0), 30.0, seed=1)
    r = simulate(trace, StaticPolicy(workers=workers), params)
    started = trace.t + r.waits
    return float(np.sum((started >= 10) & (started < 25)) / 15.0)


def test_the_host_caps_throughput_however_many_workers_run():
    assert saturated_rate(1) == pytest.approx(120, rel=0.03)        # one worker: its own rate
    assert saturated_rate(2) == pytest.approx(200, rel=0.03)        # two: the host's, not 2 x 120
    assert saturated_rate(4) == pytest.approx(200, rel=0.03)        # four: still the host's


def test_the_idealised_model_has_no_host():
    ideal = SimParams(throughput_per_worker=120.0, service_cv=0.0, max_workers=4)
    assert saturated_rate(4, ideal) == pytest.approx(480, rel=0.03)


def test_a_job_alone_holds_its_slot_for_the_measured_time():
    pool = Pool(make_trace("one", [0.5, 5.0], size=[1, 9], duration_s=10), HOST, initial=1)
    pool.advance(1.0)
    assert pool.workers[0].last_end - 0.5 == pytest.approx(max(0.004, 1 / 120))
    pool.advance(6.0)                                             # 9 sentences: 1 + 8 x extra work (1.0)
    assert pool.workers[0].last_end - 5.0 == pytest.approx(9 / 120)


def test_cold_starts_are_drawn_from_the_samples_and_stretched_when_the_host_is_busy():
    params = SimParams(throughput_per_worker=120.0, host_cpus=12, host_jobs_per_s=1200.0,
                       cold_start_samples=(2.0, 6.0), max_workers=12)
    empty = make_trace("none", [], duration_s=1)
    a, b = Pool(empty, params, 0), Pool(empty, params, 0)
    for pool in (a, b):
        for _ in range(12):
            assert pool.start_worker(0.0)
    draws = [w.ready_at - w.started_at for w in a.workers]
    assert set(draws) == {2.0, 6.0}                                # both samples drawn, 12 loaders on 12 cores
    assert draws == [w.ready_at - w.started_at for w in b.workers]  # the k-th start of every run: same draw
    # 2 cores, each loader wants one: the third loader starts on an oversubscribed host
    p1 = SimParams(throughput_per_worker=120.0, host_cpus=2, host_jobs_per_s=200.0, cold_start_samples=(4.0,))
    pool = Pool(empty, p1, initial=0)
    for _ in range(3):
        pool.start_worker(0.0)
    assert [w.ready_at for w in pool.workers] == pytest.approx([4.0, 4.0, 4.0 * 3 / 2])
    assert pool.cpu_demand(1.0) == 3.0 and pool.cpu_demand(5.0) == 1.0


def test_a_start_the_hosts_memory_cannot_hold_is_refused():
    params = SimParams(worker_rss_mb=600.0, host_memory_mb=1900.0, memory_reserve_mb=500.0, max_workers=4)

    class WantFour:
        name, interval_s = "four", 1.0

        def initial_workers(self, params):
            return 1

        def desired(self, obs):
            return 4

    r = simulate(make_trace("m", [0.1], duration_s=3.0), WantFour(), params)
    assert r.workers.max() == 2 and r.refused_starts >= 2      # (1900 - 500) / 600 = 2 workers fit


def _bench(tmp_path, **extra):
    files = {
        "efficiency.json": {"machine": {"cpus": 2, "cpu_budget": 2},
                            "single": {"jobs": 3000, "texts": 3000, "jobs_per_s": 200.0, "workers": 2,
                                       "cpu_ms_per_job": {"workers": 8.0}},
                            "eight": {"jobs": 375, "texts": 3000, "cpu_ms_per_job": {"workers": 36.0}}},
        "batching.json": {"inprocess_batch1_texts_per_s": 250.0},
        "coldstart.json": {"model": "minilm", "ready_s": 4.0, "runs_detail": [{"ready_s": 4.0}, {"ready_s": 5.0}]},
        "memory.json": {"pools": [{"workers": 1, "rss_mb_per_worker": 600.0},
                                  {"workers": 2, "rss_mb_per_worker": 500.0}]},
        **extra,
    }
    for name, body in files.items():
        (tmp_path / name).write_text(json.dumps(body))
    return tmp_path


def test_calibration_is_read_from_the_benchmark_reports(tmp_path):
    cal = machine.from_bench(_bench(tmp_path))
    assert cal.cpus == 2 and cal.host_jobs_per_s == 200.0
    assert cal.worker_jobs_per_s == 125.0                          # 1000 / 8 ms of worker CPU per job
    assert cal.extra_sentence_work == pytest.approx((36 - 8) / 7 / 8)
    assert cal.single_job_s == 0.004 and cal.cold_start_s == (4.0, 5.0) and cal.worker_rss_mb == 600.0
    assert "derived" in cal.sources["worker_jobs_per_s"] and cal.host_memory_mb > 0
    params = SimParams.for_machine(cal)
    assert params.shared_host and params.cold_start_samples == (4.0, 5.0) and params.cold_start_s == 4.5


def test_capacity_measurements_win_over_derived_numbers(tmp_path):
    capacity = {"machine": {"memory_mb": 8000.0}, "alone": {"service_s_median": 0.009},
                "pools": [{"workers": 1, "jobs_per_s": 110.0}, {"workers": 2, "jobs_per_s": 190.0},
                          {"workers": 4, "jobs_per_s": 185.0}]}
    cal = machine.from_bench(_bench(tmp_path, **{"capacity.json": capacity}))
    assert (cal.worker_jobs_per_s, cal.host_jobs_per_s, cal.single_job_s, cal.host_memory_mb) == (110, 190, 0.009, 8000)
    assert machine.load(machine.save(cal, tmp_path / "cal.json")) == cal
    assert machine.calibration(tmp_path / "cal.json") == cal


def test_a_smoke_report_or_a_missing_one_is_a_config_error(tmp_path):
    smoke = tmp_path / "smoke"
    smoke.mkdir()
    with pytest.raises(ConfigError, match="smoke"):
        machine.from_bench(_bench(smoke, **{"coldstart.json": {"ready_s": 1.0, "smoke": True}}))
    _bench(tmp_path)
    (tmp_path / "memory.json").unlink()
    with pytest.raises(ConfigError, match="memory.json"):
        machine.from_bench(tmp_path)
    with pytest.raises(ConfigError):
        machine.load(tmp_path / "nope.json")


def test_the_repository_calibration_reads():
    cal = machine.calibration()
    assert cal.cpus >= 1 and cal.host_jobs_per_s > 0 and cal.cold_start_s


def test_latency_shows_the_slowdown_that_queue_wait_does_not():
    # 180 jobs/s on a host that serves 200: four workers start every job at once (no wait) but
    # share two cores, so each job's slot time stretches; latency = wait + slot time shows it
    from autoscaler.simulator.report import summarise

    trace = poisson("busy", lambda t: np.full_like(t, 180.0), 30.0, seed=2)
    four = summarise(simulate(trace, StaticPolicy(workers=4), HOST))
    one_job_alone = max(HOST.single_job_s, 1 / HOST.throughput_per_worker)
    assert four.wait_p95_s < 0.01 and four.latency_p95_s > 3 * one_job_alone
    assert four.latency_p95_s >= four.wait_p95_s


def test_the_current_bench_reports_read_in_their_per_round_format():
    """docs/bench (reports from 33fc26d on) keeps efficiency's CPU per job per round: the
    reader takes the median round, and capacity.json for the throughputs."""
    import json

    bench = machine.ROOT / "docs" / "bench"
    cal = machine.calibration(bench)
    capacity = json.loads((bench / "capacity.json").read_text())
    assert cal.worker_jobs_per_s == round(float(capacity["pools"][0]["jobs_per_s"]), 2)
    eff = json.loads((bench / "efficiency.json").read_text())
    singles = sorted(r["cpu_ms_per_job"]["workers"] for r in eff["single"]["runs"])
    eights = sorted(r["cpu_ms_per_job"]["workers"] for r in eff["eight"]["runs"])
    per_job = eff["eight"]["runs"][0]["texts"] / eff["eight"]["runs"][0]["jobs"]
    expected = (eights[len(eights) // 2] - singles[len(singles) // 2]) / (per_job - 1) / singles[len(singles) // 2]
    assert cal.extra_sentence_work == pytest.approx(expected, abs=1e-4)
    assert 0 < cal.extra_sentence_work <= 1
