"""The one rate estimator shared by the live signals and the simulator, on hand-computed readings."""

from __future__ import annotations

import pytest

from autoscaler.rates import RateState, update_rates


def test_first_reading_knows_nothing_yet():
    s = update_rates(None, 10.0, started=5, waiting=3, in_flight=2)
    assert s == RateState(10.0, 5, 3) and s.arrival_rate is None and s.service_time_s is None


def test_arrivals_are_starts_plus_queue_growth_and_service_is_littles_law():
    s = update_rates(RateState(0.0, 100, 10), 2.0, started=140, waiting=30, in_flight=8)
    assert s.arrival_rate == pytest.approx((40 + 20) / 2)        # 30 jobs/s
    assert s.service_time_s == pytest.approx(8 / 20)              # 8 in flight / 20 starts/s


def test_ewma_smoothing():
    prev = RateState(0.0, 0, 0, arrival_rate=10.0, service_time_s=1.0)
    s = update_rates(prev, 1.0, started=20, waiting=0, in_flight=10, smoothing=0.5)
    assert s.arrival_rate == pytest.approx(0.5 * 20 + 0.5 * 10)
    assert s.service_time_s == pytest.approx(0.5 * 0.5 + 0.5 * 1.0)


def test_a_shrinking_queue_never_gives_negative_arrivals():
    s = update_rates(RateState(0.0, 0, 100), 1.0, started=0, waiting=0, in_flight=0)
    assert s.arrival_rate == 0.0 and s.service_time_s is None    # no starts: service unknown


def test_unknowns_and_resets():
    prev = RateState(0.0, 50, 5, arrival_rate=7.0, service_time_s=0.2)
    assert update_rates(prev, 1.0, started=60, waiting=None, in_flight=3) is prev
    assert update_rates(prev, 1.0, started=60, waiting=5, in_flight=None).service_time_s == 0.2
    reset = update_rates(prev, 1.0, started=3, waiting=5, in_flight=3)     # counter went back
    assert reset == RateState(1.0, 3, 5)
    assert update_rates(prev, 0.0, started=60, waiting=5, in_flight=3) == RateState(0.0, 60, 5)


def test_worker_rate_is_measured_only_while_the_pool_is_saturated():
    s = update_rates(None, 0.0, started=0, waiting=50, in_flight=32, ready_workers=2)
    s = update_rates(s, 1.0, started=200, waiting=60, in_flight=32, ready_workers=2)
    assert s.worker_jobs_per_s == pytest.approx(100.0)                # 200 starts/s over 2 workers
    # jobs stopped waiting: starts were limited by arrivals, not by the workers -- kept as it was
    s = update_rates(s, 2.0, started=250, waiting=0, in_flight=5, ready_workers=2)
    assert s.worker_jobs_per_s == pytest.approx(100.0)
    # the queue built up again behind the same two workers: measured (50 starts/s over 2)
    s = update_rates(s, 3.0, started=300, waiting=10, in_flight=32, ready_workers=2)
    assert s.worker_jobs_per_s == pytest.approx(0.3 * 25 + 0.7 * 100)
    # a worker became ready during the interval: not a clean measurement
    s = update_rates(s, 4.0, started=520, waiting=10, in_flight=48, ready_workers=3)
    assert s.worker_jobs_per_s == pytest.approx(77.5)
    s = update_rates(s, 5.0, started=760, waiting=10, in_flight=48, ready_workers=3)
    assert s.worker_jobs_per_s == pytest.approx(0.3 * 80 + 0.7 * 77.5)
    assert update_rates(s, 6.0, started=0, waiting=1, in_flight=0).worker_jobs_per_s == s.worker_jobs_per_s


def test_worker_rate_is_measured_when_a_scale_in_left_too_few_workers():
    """Two workers keep up (nothing waits); one is removed and jobs pile up behind the
    other within one reading: its starts are what one worker can do."""
    s = update_rates(None, 0.0, started=0, waiting=0, in_flight=4, ready_workers=2)
    s = update_rates(s, 1.0, started=420, waiting=0, in_flight=4, ready_workers=2)
    assert s.worker_jobs_per_s is None                                 # never saturated yet
    s = update_rates(s, 2.0, started=775, waiting=90, in_flight=16, ready_workers=1)
    assert s.worker_jobs_per_s == pytest.approx(355.0)
    # the pool grew back at once: the next interval is not a clean measurement, kept as it was
    s = update_rates(s, 3.0, started=1300, waiting=0, in_flight=6, ready_workers=2)
    assert s.worker_jobs_per_s == pytest.approx(355.0)
    # the pool shrank but the queue emptied: arrivals, not workers, bounded the starts
    s = update_rates(s, 4.0, started=1500, waiting=0, in_flight=2, ready_workers=1)
    assert s.worker_jobs_per_s == pytest.approx(355.0)


def test_worker_rate_is_measured_when_the_first_backlog_builds():
    """The first reading with jobs waiting: the queue grew behind the one worker there was,
    so its starts are what it can do -- known before the scale-up changes the count."""
    s = update_rates(None, 0.0, started=0, waiting=0, in_flight=0, ready_workers=1)
    s = update_rates(s, 1.0, started=355, waiting=47, in_flight=16, ready_workers=1)
    assert s.worker_jobs_per_s == pytest.approx(355.0)
    # a queue that shrank while jobs still wait, the count the same but nothing waited
    # before: not measured (it did not build up behind these workers)
    t = update_rates(None, 0.0, started=0, waiting=0, in_flight=0, ready_workers=2)
    t = update_rates(t, 1.0, started=100, waiting=0, in_flight=3, ready_workers=2)
    assert t.worker_jobs_per_s is None


def test_a_job_waiting_beside_free_slots_is_not_saturation():
    """Live, at 14 jobs/s: a job that arrived just before the reading waits while a slot is
    free; read as saturation it said "a worker serves 12/s" and added a worker. With the
    slots per worker known, only a reading with every ready slot busy counts."""
    s = update_rates(None, 0.0, started=0, waiting=0, in_flight=0, ready_workers=1, slots_per_worker=16)
    s = update_rates(s, 1.0, started=12, waiting=1, in_flight=0, ready_workers=1, slots_per_worker=16)
    assert s.worker_jobs_per_s is None
    s = update_rates(s, 2.0, started=24, waiting=2, in_flight=9, ready_workers=1, slots_per_worker=16)
    assert s.worker_jobs_per_s is None
    s = update_rates(s, 3.0, started=379, waiting=60, in_flight=16, ready_workers=1, slots_per_worker=16)
    assert s.worker_jobs_per_s == pytest.approx(355.0)
