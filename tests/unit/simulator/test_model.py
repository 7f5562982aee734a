"""The simulator itself: exact on hand-computed cases, conserving jobs, deterministic."""

from __future__ import annotations

import numpy as np
import pytest

from autoscaler.simulator.model import SimParams, simulate
from autoscaler.simulator.policies import ElastiqPolicy, StaticPolicy
from autoscaler.simulator.report import direction_changes, summarise
from autoscaler.simulator.runner import POLICIES, make_policy, run_trace
from autoscaler.traces import make_trace
from autoscaler.traces.generate import poisson

EXACT = SimParams(slots_per_worker=2, throughput_per_worker=2.0, service_cv=0.0, cold_start_s=5.0,
                  min_workers=1, max_workers=1)            # 1 s per job per slot


def test_fifo_waits_are_exact():
    # 1 worker, 2 slots, 1 s jobs; 4 jobs at t=0: two start at 0, two at 1.
    trace = make_trace("hand", [0.0, 0.0, 0.0, 0.0, 2.5], duration_s=5.0)
    r = simulate(trace, StaticPolicy(), EXACT)
    assert list(np.round(r.waits, 6)) == [0.0, 0.0, 1.0, 1.0, 0.0]
    assert r.worker_seconds == pytest.approx(r.horizon_s)     # one worker the whole time


class Fixed:
    """Start with 1 worker, ask for 2 at t=1."""
    name, interval_s = "fixed", 1.0

    def initial_workers(self, params):
        return 1

    def desired(self, obs):
        return 2 if obs.now >= 1.0 else 1


def test_a_new_worker_pays_the_cold_start():
    params = SimParams(slots_per_worker=1, throughput_per_worker=1.0 / 100, service_cv=0.0, cold_start_s=5.0,
                       max_workers=2)                      # 100 s jobs: the first worker stays busy
    trace = make_trace("cold", [0.0, 1.5], duration_s=10.0)
    r = simulate(trace, Fixed(), params)
    assert r.waits[1] == pytest.approx(4.5)                 # second worker asked at 1.0, ready at 6.0
    assert r.events == [(1.0, 1, 2)]


def test_every_arrival_completes_under_every_policy():
    trace = poisson("burst", lambda t: np.where((t > 20) & (t < 40), 300.0, 20.0), 90.0, seed=5)
    for r in run_trace(trace):
        s = summarise(r)
        assert s.completed == s.jobs == trace.jobs, r.policy
        assert not np.isnan(r.waits).any()


def test_same_seed_same_result_other_seed_other_draws():
    trace = poisson("p", lambda t: np.full_like(t, 150.0), 60.0, seed=1)
    a = summarise(simulate(trace, make_policy("elastiq", SimParams()), SimParams()))
    b = summarise(simulate(trace, make_policy("elastiq", SimParams()), SimParams()))
    assert a == b
    r1 = simulate(trace, StaticPolicy(), SimParams(seed=1, max_workers=1))   # overloaded: waits
    r2 = simulate(trace, StaticPolicy(), SimParams(seed=2, max_workers=1))
    assert not np.array_equal(r1.waits, r2.waits)
    assert np.array_equal(r1.waits, simulate(trace, StaticPolicy(), SimParams(seed=1, max_workers=1)).waits)


def test_static_costs_max_workers_for_the_whole_run():
    trace = make_trace("few", [1.0, 2.0], duration_s=100.0)
    r = simulate(trace, StaticPolicy(), SimParams(max_workers=3))
    assert r.worker_seconds == pytest.approx(3 * r.horizon_s)
    assert r.horizon_s == pytest.approx(100.0)


def test_elastiq_in_the_simulator_scales_up_on_a_burst_and_back_down():
    trace = poisson("b", lambda t: np.where((t >= 10) & (t < 40), 350.0, 10.0), 120.0, seed=3)
    policy = ElastiqPolicy.for_params(SimParams())
    r = simulate(trace, policy, SimParams())
    assert r.workers.max() == 4 and r.workers[-1] == 1
    assert policy.reasons and all(reason for _, _, reason in policy.reasons)


def test_direction_changes():
    assert direction_changes([(0, 1, 2), (1, 2, 3), (2, 3, 1), (3, 1, 2)]) == 2


def test_policy_names():
    assert set(POLICIES) == {"elastiq", "keda", "keda-tuned", "celery", "ray", "static"}
    with pytest.raises(ValueError):
        make_policy("hpa", SimParams())
