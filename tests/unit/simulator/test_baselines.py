"""Each baseline's documented behaviour on hand-computed scenarios (sources in the docstrings)."""

from __future__ import annotations

from autoscaler.simulator.baselines import CeleryAutoscalePolicy, KedaHpaPolicy, RayServePolicy
from autoscaler.simulator.model import Observation


def obs(now=0.0, waiting=0, waiting_main=None, in_flight=0, workers=1, busy=0, ready=None) -> Observation:
    return Observation(now=now, waiting=waiting, waiting_main=waiting if waiting_main is None else waiting_main,
                       in_flight=in_flight, oldest_age_s=0.0, started_total=0, workers=workers,
                       ready_workers=workers if ready is None else ready, busy_workers=busy,
                       slots_per_worker=16, cold_start_s=5.5)


def drive(policy, waiting_at, until: float, workers: int = 1, **kw) -> list[tuple[float, int]]:
    """Call the policy at its own interval; the pool follows at once. Returns (t, size) changes."""
    t, out = 0.0, []
    while t <= until + 1e-9:
        w = waiting_at(t)
        want = policy.desired(obs(now=t, waiting=w, workers=workers, **kw))
        if want != workers:
            out.append((round(t, 1), want))
            workers = want
        t = round(t + policy.interval_s, 6)
    return out


# --- KEDA + HPA

def test_keda_desired_is_ceil_llen_over_list_length_with_scale_up_limit():
    # research/autoscaler.md worked example: LLEN 120 at 10 replicas -> 24, reached as 20 then 24.
    k = KedaHpaPolicy(min_workers=1, max_workers=100)
    assert k.desired(obs(now=0, waiting=120, workers=10)) == 20          # max(+4, +100 %)
    assert k.desired(obs(now=15, waiting=120, workers=20)) == 24


def test_keda_never_scales_up_while_the_backlog_is_in_flight():
    # Prefetch hoarding / fair dispatch: LLEN reads 0 while every slot is busy (mitodl PR #5598).
    k = KedaHpaPolicy(min_workers=1, max_workers=8)
    assert drive(k, lambda t: 0, until=600, in_flight=64, busy=1) == []


def test_keda_does_not_see_priority_sub_lists():
    k = KedaHpaPolicy(min_workers=1, max_workers=8)
    assert k.desired(obs(now=0, waiting=100, waiting_main=0, workers=1)) == 1
    assert KedaHpaPolicy(min_workers=1, max_workers=8).desired(obs(now=0, waiting=100, workers=1)) == 5


def test_keda_tolerance():
    k = KedaHpaPolicy(min_workers=1, max_workers=8)
    assert k.desired(obs(now=0, waiting=21, workers=4)) == 4             # 21 / 20 = 1.05, within 10 %
    assert k.desired(obs(now=15, waiting=23, workers=4)) == 5            # 1.15: ceil(23 / 5)


def test_keda_waits_the_300s_stabilisation_window_then_drops_to_min_at_once():
    k = KedaHpaPolicy(min_workers=1, max_workers=8)
    changes = drive(k, lambda t: 40 if t < 30 else 0, until=700)
    assert changes[0] == (0.0, 5)                                        # +4 limit from 1
    assert changes[1] == (15.0, 8)                                       # ceil(40 / 5)
    assert changes[2] == (315.0, 1), changes                             # last 8 recommended at t=15, + 300 s
    assert len(changes) == 3


def test_keda_scales_to_zero_after_the_cooldown_and_back_on_a_poll():
    k = KedaHpaPolicy(min_workers=0, max_workers=8)
    changes = drive(k, lambda t: 3 if t < 10 or t >= 500 else 0, until=540)
    # active at the t=0 poll; polls every 30 s; cooldown 300 s after the last active poll (t=0)
    assert (330.0, 0) in changes, changes
    assert changes[-1] == (510.0, 1)                                     # next poll after t=500


# --- Celery --autoscale

def test_celery_grows_at_once_and_shrinks_after_keepalive():
    c = CeleryAutoscalePolicy(min_workers=1, max_workers=4, slots_per_worker=16)
    changes = drive(c, lambda t: 50 if t < 5 else 0, until=60)
    assert changes == [(0.0, 4), (31.0, 1)]                              # 50 / 16 -> 4; keepalive 30 s


def test_celery_never_shrinks_before_a_first_scale_up():
    # ``if self._last_scale_up and ...`` in celery/worker/autoscale.py
    c = CeleryAutoscalePolicy(min_workers=1, max_workers=4, slots_per_worker=16)
    assert drive(c, lambda t: 0, until=120, workers=3) == []


def test_celery_shrink_keeps_busy_workers():
    c = CeleryAutoscalePolicy(min_workers=1, max_workers=4, slots_per_worker=16)
    c._last_scale_up = 0.0
    assert c.desired(obs(now=100, waiting=0, in_flight=3, workers=4, busy=3)) == 3


# --- Ray Serve

def test_ray_waits_30s_of_consecutive_up_decisions():
    r = RayServePolicy(min_workers=1, max_workers=4, target_ongoing_requests=6.4)
    changes = drive(r, lambda t: 64, until=40)
    assert changes == [(30.0, 4)], changes                               # 301st tick of 0.1 s


def test_ray_resets_the_counter_on_an_opposite_decision():
    r = RayServePolicy(min_workers=1, max_workers=4, target_ongoing_requests=6.4, look_back_period_s=0.0)
    # high load, except one quiet tick every 20 s: never 30 s of consecutive "up"
    assert drive(r, lambda t: 0 if round(t * 10) % 200 == 199 else 64, until=120, workers=2) == []


def test_ray_waits_600s_to_scale_down():
    r = RayServePolicy(min_workers=1, max_workers=4, target_ongoing_requests=6.4, look_back_period_s=0.0)
    changes = drive(r, lambda t: 0, until=700, workers=4)
    assert changes == [(60.0 * 10, 1)], changes


def test_ray_from_zero_at_once():
    r = RayServePolicy(min_workers=0, max_workers=4)
    assert r.desired(obs(now=0, waiting=1, workers=0)) == 1


def test_keda_tuned_uses_slots_as_list_length_a_60s_window_and_the_hpa_sync():
    from autoscaler.simulator.model import SimParams

    k = KedaHpaPolicy.tuned(SimParams(min_workers=1, max_workers=8, slots_per_worker=16))
    assert (k.list_length, k.polling_interval_s, k.scale_down_window_s, k.activation_list_length) == (16, 5, 60, 1)
    assert k.interval_s == 5 and k.name == "keda-tuned"
    changes = drive(k, lambda t: 64 if t < 20 else 0, until=200)
    # HPA at t=0: ceil(64 / 16) = 4; the 5 s polls in between do not resize (the HPA syncs every 15 s);
    # the last 4 was recommended at t=15, so the drop to 1 comes at the first sync >= 75 s
    assert changes == [(0.0, 4), (75.0, 1)], changes


def test_keda_tuned_activation_needs_more_than_one_job():
    from autoscaler.simulator.model import SimParams

    k = KedaHpaPolicy.tuned(SimParams(min_workers=0, max_workers=8))
    assert k.desired(obs(now=0, waiting=1, workers=0)) == 0            # 1 is not > activationListLength 1
    assert k.desired(obs(now=5, waiting=2, workers=0)) == 1            # next 5 s poll
