"""The policy, as named scenarios with an injected clock: one per way the anchors fail."""

from __future__ import annotations

from dataclasses import replace

import pytest

from autoscaler.policy import Decision, PolicyConfig, PolicyState, decide
from autoscaler.snapshot import HostSnapshot, QueueSnapshot, Snapshot, WorkerInfo
from elastiq.errors import ConfigError

CFG = PolicyConfig(min_workers=1, max_workers=8, target_per_worker=16, stabilisation_min_s=15,
                   cold_start_factor=3, max_step_up=4)
ROOMY = HostSnapshot(cpus=64, free_cpu=60, free_memory_mb=64_000, worker_rss_mb=500, threads_per_worker=1)


def q(**kw) -> QueueSnapshot:
    """A snapshot; every worker is ready unless ``ready_workers`` says otherwise."""
    base = dict(queue="elastiq.minilm", waiting=0, in_flight=0, oldest_age_s=0.0, arrival_rate=None,
                service_time_s=None, workers=1, busy_workers=0, slots_per_worker=16, cold_start_s=5.0)
    kw = {**base, **kw}
    kw.setdefault("ready_workers", kw["workers"])
    return QueueSnapshot(**kw)


def once(queue: QueueSnapshot, host: HostSnapshot = ROOMY, cfg: PolicyConfig = CFG,
         state: PolicyState | None = None, now: float = 1000.0) -> Decision:
    state = state or PolicyState()
    return decide(Snapshot(now, queue, host), state, cfg, now)


def run(ticks, cfg: PolicyConfig = CFG, host: HostSnapshot = ROOMY, dt: float = 1.0) -> list[Decision]:
    """Feed snapshots one per tick; the pool follows each decision (as the controller does)."""
    state, workers, out = PolicyState(), None, []
    for i, snap in enumerate(ticks):
        if workers is not None:
            snap = replace(snap, workers=workers, ready_workers=workers)
        d = decide(Snapshot(i * dt, snap, host), state, cfg, i * dt)
        state, workers = d.state, d.desired
        out.append(d)
    return out


@pytest.mark.parametrize("name,queue,host,cfg,desired,capacity", [
    ("idle pool stays at min", q(), ROOMY, CFG, 1, False),
    ("backlog 48 -> 3", q(waiting=48), ROOMY, CFG, 3, False),
    # KEDA reads LLEN only: 0 here. The jobs sit in the workers' slots.
    ("backlog held by workers is seen", q(waiting=0, in_flight=64, workers=2, busy_workers=2), ROOMY, CFG, 4, False),
    ("priority sub-lists count (waiting is their sum)", q(waiting=40), ROOMY, CFG, 3, False),
    ("step limit +4 per decision", q(waiting=16 * 20), ROOMY, CFG, 5, False),
    ("max workers", q(waiting=16 * 20, workers=6), ROOMY, CFG, 8, False),
    # Strict rule: never fewer workers than are busy (keda #6719, #2900: busy pods removed).
    ("a busy victim is never removed (strict)", q(waiting=0, in_flight=3, workers=3, busy_workers=3), ROOMY,
     replace(CFG, keep_busy_workers=True), 3, False),
    # Default: the controller drains victims, so only the slots in flight are kept...
    ("busy workers drain down to the slots in flight", q(waiting=0, in_flight=40, workers=4, busy_workers=4),
     ROOMY, replace(CFG, stabilisation_min_s=0, cold_start_factor=0), 3, False),
    # ... and never below them, whatever the (lower) demand terms say.
    ("in-flight jobs floor the scale-in", q(waiting=0, in_flight=40, workers=4, busy_workers=4),
     ROOMY, replace(CFG, target_per_worker=64, stabilisation_min_s=0, cold_start_factor=0), 3, False),
    ("within tolerance keeps the count", q(waiting=2, in_flight=32, workers=2, busy_workers=2), ROOMY, CFG, 2, False),
    ("memory cap binds", q(waiting=160), HostSnapshot(64, 60, 1_512, 500, 1), CFG, 3, True),
    ("CPU cap binds", q(waiting=160), HostSnapshot(2, 1.5, 64_000, 500, 1), CFG, 2, True),
    # 64 CPUs, but a neighbour keeps all but 0.1 busy: a new worker would only share busy cores
    ("no idle CPU: no worker more", q(waiting=160, workers=2), HostSnapshot(64, 0.1, 64_000, 500, 1), CFG, 2, True),
    ("idle CPU enough for one more thread", q(waiting=160, workers=2), HostSnapshot(64, 0.3, 64_000, 500, 1),
     CFG, 6, False),
    ("idle CPU is per worker thread", q(waiting=160, workers=2), HostSnapshot(64, 0.3, 64_000, 500, 2), CFG, 2, True),
    ("no idle CPU never blocks the first worker", q(waiting=1, workers=0, ready_workers=0),
     HostSnapshot(64, 0.0, 64_000, 500, 1), replace(CFG, min_workers=0), 1, False),
    ("Little's law", q(waiting=0, in_flight=10, arrival_rate=100, service_time_s=0.5), ROOMY, CFG, 4, False),
    # few jobs in flight, but 150 arrive per s where a saturated worker served 120: 150 / (0.8 x 120) -> 2
    ("throughput: arrivals over what a worker serves", q(waiting=0, in_flight=3, arrival_rate=150,
     service_time_s=0.02, worker_jobs_per_s=120.0), ROOMY, CFG, 2, False),
    # big jobs fill the slots, 6 wait: the ready worker clears them in 6 / (50 - 20) = 0.2 s, a new
    # worker would take 5 s to load -- none is added; with arrivals outpacing the worker, it is
    ("a backlog cleared before a new worker could load adds none", q(waiting=6, in_flight=16, arrival_rate=20,
     worker_jobs_per_s=50.0), ROOMY, CFG, 1, False),
    ("a backlog arrivals outpace adds a worker", q(waiting=6, in_flight=16, arrival_rate=60,
     worker_jobs_per_s=50.0), ROOMY, CFG, 2, False),
    ("old job adds a worker", q(waiting=3, oldest_age_s=6.0), ROOMY, CFG, 2, False),
    ("job past the SLO adds two", q(waiting=3, oldest_age_s=12.0), ROOMY, CFG, 3, False),
    ("scale from zero", q(waiting=1, workers=0, ready_workers=0), ROOMY, replace(CFG, min_workers=0), 1, False),
])
def test_single_decisions(name, queue, host, cfg, desired, capacity):
    d = once(queue, host, cfg)
    assert d.desired == desired, d.reason
    assert d.capacity_limited is capacity
    assert d.reason
    if capacity:
        assert "capacity-limited" in d.reason


def test_reason_names_the_winning_term():
    assert once(q(waiting=48)).reason.startswith("backlog 48 (waiting 48 + in flight 0) / 16 per worker -> 3")
    assert "oldest job waited" in once(q(waiting=3, oldest_age_s=6.0)).reason


def test_scale_up_acts_at_once_and_scale_down_waits_the_window():
    ticks = [q(waiting=64)] + [q(waiting=0)] * 30
    ds = run(ticks)
    assert ds[0].desired == 4                                 # up on the first tick
    window = 3 * 5.0                                          # 3 x cold start 5 s
    assert all(d.desired == 4 for d in ds[1:int(window)]), [d.desired for d in ds]
    assert ds[int(window) + 1].desired == 1
    assert "waits a 15s window" in ds[5].reason


def test_slow_cold_start_stretches_the_window():
    # A worker that took 8 s to load is not dropped for a 2 s lull (window 24 s, not 15).
    ticks = [q(waiting=64, cold_start_s=8.0)] + [q(waiting=0, cold_start_s=8.0)] * 2 + [q(waiting=64, cold_start_s=8.0)]
    ds = run(ticks)
    assert [d.desired for d in ds] == [4, 4, 4, 4]
    lull = [q(waiting=64, cold_start_s=8.0)] + [q(waiting=0, cold_start_s=8.0)] * 30
    ds = run(lull)
    assert ds[20].desired == 4 and ds[25].desired == 1


# --- the scale-down back-off: a scale-in undone within its window doubles the next window


def test_a_scale_in_undone_within_its_window_doubles_the_next_window():
    ticks = [q(waiting=64)] + [q()] * 19 + [q(waiting=64)] + [q()] * 45
    ds = run(ticks)
    sizes = [d.desired for d in ds]
    assert sizes[14] == 4 and sizes[15] == 1                  # the base window: 15 s
    assert sizes[20] == 4 and "the scale-in 5s ago is undone: the next one waits 30s" in ds[20].reason
    assert ds[21].terms["window_s"] == 30 and ds[21].terms["backoff"] == 1
    assert sizes[21:50] == [4] * 29 and sizes[50] == 1, sizes   # 30 s from the last need for 4


def test_a_scale_in_that_stands_longer_than_max_window_keeps_the_base_window():
    ticks = [q(waiting=64)] + [q()] * 39 + [q(waiting=64)] + [q()] * 20
    ds = run(ticks, cfg=replace(CFG, max_window_s=20.0))
    sizes = [d.desired for d in ds]
    assert sizes[15] == 1 and sizes[40] == 4                  # up again 25 s (> 20) after the scale-in
    assert "undone" not in ds[40].reason and ds[41].terms["backoff"] == 0
    assert sizes[54] == 4 and sizes[55] == 1


def test_a_scale_in_undone_within_max_window_backs_off_even_after_its_own_window():
    # up again 25 s after the scale-in: past its 15 s window, inside max_window_s (300 s)
    ds = run([q(waiting=64)] + [q()] * 39 + [q(waiting=64)] + [q()] * 40)
    assert "the scale-in 25s ago is undone: the next one waits 30s" in ds[40].reason
    sizes = [d.desired for d in ds]
    assert sizes[69] == 4 and sizes[70] == 1


@pytest.mark.parametrize("backoff,scale_in_ago_s,changed_ago_s,max_window_s,window_s", [
    (1, 59.0, 80.0, 60.0, 30.0),      # the scale-in has stood 59 s < 60: still doubled
    (1, 60.0, 80.0, 60.0, 15.0),      # it stood max_window_s: one doubling off
    (2, 200.0, 30.0, 60.0, 60.0),     # one off, then the next only a max_window_s after that
    (1, None, 900.0, 60.0, 30.0),     # no scale-in since the last scale-up: kept, however long
    (5, None, 10.0, 300.0, 300.0),    # 15 x 32 = 480, capped at max_window_s
    (5, None, 10.0, 10.0, 15.0),      # max_window_s <= the base window: no back-off
])
def test_backoff_window_cap_and_decay(backoff, scale_in_ago_s, changed_ago_s, max_window_s, window_s):
    state = PolicyState(backoff=backoff, backoff_at=1000.0 - changed_ago_s,
                        last_scale_in=None if scale_in_ago_s is None else 1000.0 - scale_in_ago_s)
    d = once(q(workers=2), cfg=replace(CFG, max_window_s=max_window_s), state=state)
    assert d.terms["window_s"] == window_s


def test_bursts_that_keep_coming_keep_the_worker():
    # a burst every 40 s: each scale-in undone doubles the window until it outlasts the gaps
    ticks = [q(waiting=64 if i % 40 == 0 else 0) for i in range(400)]
    sizes = [d.desired for d in run(ticks)]
    scale_ins = [i for i in range(1, len(sizes)) if sizes[i] < sizes[i - 1]]
    assert len(scale_ins) == 2 and all(s == 4 for s in sizes[scale_ins[-1] + 25:]), (scale_ins, sizes)


def test_an_alternating_signal_holds_the_scaled_up_size():
    ticks = [q(waiting=64 if i % 2 == 0 else 0) for i in range(40)]
    sizes = [d.desired for d in run(ticks)]
    changes = sum(1 for a, b in zip(sizes, sizes[1:]) if a != b)
    assert changes == 0, sizes


def test_steady_poisson_load_does_not_flap():
    """The built-in steady trace (150 jobs/s Poisson for 600 s: one load phase) replayed through
    the real policy on the machine model: at most one direction change (the fewest of any baseline,
    0, + 1 per load phase) and no scale event after the first minute."""
    from autoscaler.simulator import machine
    from autoscaler.simulator.model import SimParams, simulate
    from autoscaler.simulator.policies import ElastiqPolicy
    from autoscaler.simulator.report import direction_changes
    from autoscaler.simulator.scoring import load_phases
    from autoscaler.traces import load

    params = SimParams.for_machine(machine.calibration())
    trace = load("steady")
    assert len(load_phases(trace, params)) == 1
    result = simulate(trace, ElastiqPolicy.for_params(params), params)
    assert direction_changes(result.events) <= 1, result.events
    assert all(t < 60 for t, _, _ in result.events), result.events


def test_metric_outage_holds_instead_of_scaling_in():
    ds = run([q(waiting=64)] + [q(waiting=None, in_flight=None, oldest_age_s=None)] * 40)
    assert all(d.desired == 4 for d in ds), [d.desired for d in ds]
    assert "metrics unknown" in ds[-1].reason
    # ... and a known backlog still scales up while heartbeats are unknown.
    assert once(q(waiting=48, in_flight=None, workers=1)).desired == 3


def test_scale_to_zero_after_the_window_and_back():
    cfg = replace(CFG, min_workers=0)
    ds = run([q(waiting=16)] + [q()] * 20 + [q(waiting=2)], cfg=cfg)
    assert ds[0].desired == 1
    assert ds[19].desired == 0                                # idle for the whole window
    assert ds[-1].desired == 1 and "scale from zero" in ds[-1].reason


def test_poisson_noise_on_a_steady_load_does_not_flap():
    # 150 jobs/s, each holding a slot 0.145 s: about 22 in flight on 2 workers, Poisson noise.
    import numpy as np

    rng = np.random.default_rng(7)
    ticks = [q(waiting=max(0, n - 32), in_flight=min(n, 32), workers=2, busy_workers=2, arrival_rate=150.0,
               service_time_s=0.145) for n in rng.poisson(22, 300)]
    sizes = [d.desired for d in run(ticks)]
    changes = sum(1 for a, b in zip(sizes, sizes[1:]) if a != b)
    assert changes <= 2, sizes


def test_age_counts_from_serving_workers_not_starting_ones():
    # 1 ready, 2 starting, an old job: the age term asks for 2, which the starting ones cover.
    d = once(q(waiting=40, in_flight=16, oldest_age_s=6.0, workers=3, ready_workers=1, busy_workers=1))
    assert d.terms["age"] == 2 and d.desired == 4, d.reason   # backlog 56/16 -> 4 still wins


def test_terms_are_reported_for_metrics():
    d = once(q(waiting=160), HostSnapshot(2, 1.5, 1_512, 500, 1))
    assert d.terms["cap_memory"] == 3 and d.terms["cap_cpu"] == 2 and d.terms["backlog"] == 10
    assert d.desired == 2 and d.capacity_limited and "CPU" in d.reason


def test_no_idle_cpu_never_removes_a_worker():
    busy_host = HostSnapshot(64, 0.0, 64_000, 500, 1)
    d = once(q(waiting=160, in_flight=48, workers=3, busy_workers=3), busy_host)
    assert d.desired == 3 and d.terms["cap_free_cpu"] == 3 and "idle" in d.reason


def test_decide_is_pure():
    snap, state = q(waiting=48), PolicyState(((990.0, 2),))
    a = once(snap, state=state)
    b = once(snap, state=state)
    assert a == b and state.recommendations == ((990.0, 2),)


@pytest.mark.parametrize("kwargs", [dict(min_workers=3, max_workers=2), dict(max_workers=0),
                                    dict(target_per_worker=0), dict(target_utilisation=1.5),
                                    dict(max_step_up=0), dict(tolerance=1.0)])
def test_bad_config_is_a_config_error(kwargs):
    with pytest.raises(ConfigError):
        PolicyConfig(**kwargs)


def test_from_env():
    cfg = PolicyConfig.from_env({"ELASTIQ_AUTOSCALE_MAX_WORKERS": "6", "ELASTIQ_AUTOSCALE_SLO_WAIT_S": "2.5"})
    assert cfg.max_workers == 6 and cfg.slo_wait_s == 2.5
    assert PolicyConfig.from_env({"ELASTIQ_AUTOSCALE_KEEP_BUSY_WORKERS": "true"}).keep_busy_workers is True
    with pytest.raises(ConfigError, match="KEEP_BUSY"):
        PolicyConfig.from_env({"ELASTIQ_AUTOSCALE_KEEP_BUSY_WORKERS": "maybe"})
    with pytest.raises(ConfigError, match="ELASTIQ_AUTOSCALE_MAX_WORKERS"):
        PolicyConfig.from_env({"ELASTIQ_AUTOSCALE_MAX_WORKERS": "lots"})


def _surges(starts, cfg, until):
    """Bursts of demand (waiting 200 for 10 s) at ``starts``; otherwise idle. Returns decisions by second."""
    def at(t):
        return q(waiting=200 if any(s <= t < s + 10 for s in starts) else 0)
    return run([at(t) for t in range(until)], cfg=cfg)


def test_prewarm_is_off_by_default_and_starts_workers_before_a_regular_surge():
    starts = [100, 220, 340]
    cold = _surges(starts, CFG, 460)
    assert all(d.desired == 1 for d in cold[440:455])               # nothing before the 4th surge
    warm = _surges(starts, replace(CFG, prewarm=True), 460)
    # next surge expected at 460; lead 1.5 x 5 s cold start: from 452.5, +4 per step up to the peak 8
    assert all(d.desired == 1 for d in warm[420:453])
    assert warm[453].desired == 5 and "pre-warm: surges every 120s, next expected in 7s" in warm[453].reason
    assert warm[454].desired == 8


def test_prewarm_needs_a_regular_period():
    warm = _surges([100, 220, 400], replace(CFG, prewarm=True), 600)
    assert all("pre-warm" not in d.reason for d in warm)


# --- no scale-in while a worker loads, nor inside a worker's own window from its start

def _workers(now, *specs):
    """(id, started_at, ready_after_s) -> WorkerInfo at ``now``."""
    return tuple(WorkerInfo(wid, at, now >= at + load, load if now >= at + load else None)
                 for wid, at, load in specs)


def test_a_loading_worker_blocks_any_scale_in():
    # the window saw only low demand, so without the rule this would drop to 1
    state = PolicyState(((900.0, 1),))
    d = once(q(workers=2, ready_workers=1), state=state)
    assert d.desired == 2 and "1 worker(s) still loading, no scale-in" in d.reason
    info = (WorkerInfo("a", 0.0, True, 4.0), WorkerInfo("b", 995.0, False))
    d = once(q(workers=2, worker_info=info), state=state)
    assert d.desired == 2 and "still loading" in d.reason
    # ... but scale-up is never held by it
    assert once(q(waiting=64, workers=2, worker_info=info)).desired == 4


def test_up_with_two_workers_does_not_drain_a_loading_one():
    """`elastiq up --workers 2 --autoscale`: both start at t=0, load for 4.4 s, no demand.

    Neither is drained while loading, nor before the 15 s window from its own start; then
    the pool goes to min 1 once.
    """
    state, workers, sizes = PolicyState(), 2, []
    for t in range(0, 40):
        info = _workers(t, ("a", 0.0, 4.4), ("b", 0.0, 4.4))[:workers]
        snap = q(workers=workers, ready_workers=sum(w.ready for w in info), worker_info=info, cold_start_s=4.4)
        d = decide(Snapshot(t, snap, ROOMY), state, CFG, float(t))
        state, workers = d.state, d.desired
        sizes.append(d.desired)
        if t < 5:
            assert "still loading" in d.reason, (t, d.reason)
        elif t < 15:
            assert "started less than 15s ago" in d.reason, (t, d.reason)
    assert sizes[:15] == [2] * 15 and sizes[15:] == [1] * 25, sizes


def test_no_scale_in_inside_any_workers_window_from_its_start():
    # demand for 1 and the recommendations' window long past; one worker started 5 s ago
    info = (WorkerInfo("old", 0.0, True, 4.0), WorkerInfo("old2", 10.0, True, 4.0), WorkerInfo("new", 995.0, True, 4.0))
    d = once(q(workers=3, worker_info=info), state=PolicyState(((900.0, 1),)))
    assert d.desired == 3 and "1 worker(s) started less than 15s ago" in d.reason
    d = once(q(workers=3, worker_info=info), state=PolicyState(((900.0, 1),)), now=1010.0)
    assert d.desired == 1


def test_a_worker_stuck_loading_does_not_pin_the_pool_forever():
    # loading for 100 s with a 5 s cold start: still "loading" (under max(120, 25) s) ...
    info = (WorkerInfo("a", 0.0, True, 5.0), WorkerInfo("b", 900.0, False))
    d = once(q(workers=2, ready_workers=1, worker_info=info), state=PolicyState(((800.0, 1),)))
    assert d.desired == 2 and "still loading" in d.reason
    # ... at 130 s it is stuck: the scale-in goes ahead (the controller drains a starting one after idle ones)
    d = once(q(workers=2, ready_workers=1, worker_info=info), state=PolicyState(((800.0, 1),)), now=1030.0)
    assert d.desired == 1, d.reason
