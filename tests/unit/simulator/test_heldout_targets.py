"""CI: the simulator comparison on held-out traces, asserting issue #19's "Done when" bounds.

The held-out ``flash`` trace (a flash crowd on a low base, never used to tune the policy)
and ``bursts`` (irregular bursts: without the scale-down back-off it made 23 direction
changes) are each replayed on the machine calibrated from docs/bench against every baseline; elastiq
must use <= 0.6x static-max's worker-seconds, have a p95 wait <= 0.5x KEDA-at-defaults'
and <= tuned KEDA's at no more worker-seconds than either, be dominated by no baseline,
and change direction no more than the fewest of any baseline + 1 per load phase.
"""

from __future__ import annotations

import pytest

from autoscaler.simulator import machine
from autoscaler.simulator.model import SimParams
from autoscaler.simulator.report import summarise
from autoscaler.simulator.runner import POLICIES, run_trace
from autoscaler.simulator.scoring import score_trace
from autoscaler.traces import HELDOUT, load

TRACES = ("flash", "bursts")     # a flash crowd; irregular bursts (the scale-down back-off)


@pytest.mark.parametrize("name", TRACES)
def test_elastiq_meets_the_done_when_bounds_on_a_held_out_trace(name):
    assert name in HELDOUT
    params = SimParams.for_machine(machine.calibration())
    trace = load(name)
    summaries = [summarise(r) for r in run_trace(trace, POLICIES, params)]
    assert all(s.completed == s.jobs == trace.jobs for s in summaries)
    scored = score_trace(trace, params, summaries)
    failed = {k: t["detail"] for k, t in scored["targets"].items() if not t["ok"]}
    assert set(scored["targets"]) == {"worker_seconds_vs_static", "p95_vs_keda", "p95_vs_keda_tuned",
                                      "not_dominated", "direction_changes"}
    assert not failed, failed
    by = {s.policy: s for s in summaries}
    # the machine is modelled: no pool, however large, serves more than the host can
    assert by["static"].max_workers_seen == params.max_workers and by["elastiq"].max_workers_seen <= params.host_cpus
