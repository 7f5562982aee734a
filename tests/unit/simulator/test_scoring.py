"""Load phases, ratios to every baseline and the issue #19 targets, on hand-made numbers."""

from __future__ import annotations

import numpy as np

from autoscaler.simulator.model import SimParams
from autoscaler.simulator.report import Summary
from autoscaler.simulator.scoring import check_targets, dominated_by, load_phases, ratios, warm_floor
from autoscaler.traces.generate import poisson

P = SimParams(throughput_per_worker=100.0, min_workers=1, max_workers=4)


def phases(rate, duration=300.0):
    return [(round(p["start_s"]), p["level"]) for p in load_phases(poisson("x", rate, duration, seed=3), P)]


def test_a_flat_trace_is_one_phase_and_a_step_up_and_down_three():
    assert phases(lambda t: np.full_like(t, 150.0)) == [(0, 2)]
    assert phases(lambda t: np.where((t >= 100) & (t < 200), 250.0, 50.0)) == [(0, 1), (100, 3), (200, 1)]


def test_noise_at_a_level_boundary_is_not_a_phase_but_a_15s_burst_is():
    # 90 jobs/s, near one worker's 100: Poisson noise takes single 5 s windows over the boundary
    assert phases(lambda t: np.full_like(t, 90.0)) == [(0, 1)]
    burst = phases(lambda t: np.where((t >= 100) & (t < 115), 300.0, 20.0))
    assert burst == [(0, 1), (100, 3), (115, 1)]
    assert len(phases(lambda t: np.where((t >= 102) & (t < 117), 300.0, 20.0))) == 3   # not on a window edge
    assert phases(lambda t: np.where((t >= 101) & (t < 105), 300.0, 20.0)) == [(0, 1)]       # a 4 s blip


def s(policy, ws, p95, dc=0) -> Summary:
    return Summary(policy, "t", 100, 100, ws, 0.0, p95, p95, p95, 0, dc, dc, 4, 100.0)


BASE = {"keda": s("keda", 2000, 4.0, 2), "keda-tuned": s("keda-tuned", 1500, 1.5, 1),
        "celery": s("celery", 900, 3.0, 6),
        "ray": s("ray", 2300, 9.0, 0), "static": s("static", 2400, 0.0, 0)}


def test_ratios_to_every_baseline_and_to_the_best_one():
    r = ratios(s("elastiq", 1200, 1.0, 2), BASE)
    assert r["vs"]["keda"] == {"worker_seconds": 0.6, "p95_wait": 0.25, "p95_latency": None, "direction_changes": 0}
    assert r["vs"]["static"]["p95_wait"] is None                       # undefined against a zero wait
    assert r["best"]["worker_seconds"] == {"baseline": "celery", "value": 900, "ratio": 1.333}
    assert r["best"]["p95_wait"]["baseline"] == "static"
    assert r["best"]["direction_changes"] == {"baseline": "ray", "value": 0, "difference": 2}


def test_latency_is_compared_beside_the_wait():
    # more workers than cores: KEDA's jobs start sooner (wait 0.08 s) and then share the cores
    el = Summary("elastiq", "t", 100, 100, 1300, 0.0, 0.12, 0.12, 0.12, 0, 2, 2, 2, 100.0, latency_p95_s=0.275)
    keda = Summary("keda", "t", 100, 100, 1600, 0.0, 0.08, 0.08, 0.08, 0, 2, 2, 4, 100.0, latency_p95_s=0.438)
    vs = ratios(el, {"keda": keda})["vs"]["keda"]
    assert vs["p95_wait"] == 1.5 and vs["p95_latency"] == 0.628


def test_targets_all_met():
    t = check_targets(s("elastiq", 1200, 1.0, 3), BASE, phases=3)
    assert all(x["ok"] for x in t.values()), t


def test_each_target_can_miss():
    t = check_targets(s("elastiq", 1600, 2.5, 4), BASE, phases=3)
    assert not t["p95_vs_keda"]["ok"]                                  # 2.5 > 0.5 x 4.0
    assert not t["p95_vs_keda_tuned"]["ok"]                            # more worker-s and p95 than tuned KEDA
    assert not t["worker_seconds_vs_static"]["ok"]                     # 1600 / 2400 > 0.6
    assert not t["not_dominated"]["ok"] and "keda-tuned" in t["not_dominated"]["detail"]
    assert not t["direction_changes"]["ok"]                            # 4 > 0 + 3


def test_dominance_needs_both_fewer_worker_seconds_and_a_lower_p95_at_10ms():
    assert dominated_by(s("elastiq", 1000, 3.5), BASE) == ["celery"]
    assert dominated_by(s("elastiq", 1000, 3.004), BASE) == []         # 3.00 vs 3.00: not lower
    assert dominated_by(s("elastiq", 800, 9.0), BASE) == []


def test_a_p95_target_no_warm_pool_reaches_is_marked_unattainable_and_still_missed():
    main = s("elastiq", 1000, 3.5)
    floor = warm_floor({1: s("static-1", 600, 60.0), 2: s("static-2", 1200, 3.2), 3: s("static-3", 1800, 3.3)})
    assert floor == (2, 3.2)
    t = check_targets(main, BASE, 3, floor)
    # 0.5 x KEDA's 4.0 s = 2.0 s: even the best warm pool (3.2 s) misses it
    assert not t["p95_vs_keda"]["ok"] and t["p95_vs_keda"]["attainable"] is False
    assert "2 workers from t=0" in t["p95_vs_keda"]["detail"]
    # a reachable bound stays a plain miss
    t = check_targets(main, BASE, 3, (2, 1.0))
    assert not t["p95_vs_keda"]["ok"] and "attainable" not in t["p95_vs_keda"]


def test_warm_pools_run_every_size_and_more_workers_wait_less_on_an_overload():
    from autoscaler.simulator.runner import warm_pools

    trace = poisson("x", lambda t: np.where((t >= 20) & (t < 40), 180.0, 40.0), 60.0, seed=5)
    pools = warm_pools(trace, SimParams(throughput_per_worker=100.0, min_workers=1, max_workers=3))
    assert sorted(pools) == [1, 2, 3]
    assert pools[1].wait_p95_s > pools[2].wait_p95_s
    assert pools[1].worker_seconds < pools[2].worker_seconds < pools[3].worker_seconds
