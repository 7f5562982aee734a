"""The one rate estimator: arrival rate and service time from counters. Pure.

Used by the live signals (``autoscaler.signals``) and by the simulator
(``autoscaler.simulator.policies``), so the policy sees the same numbers in both.

Per reading: ``started`` (a monotonic counter of jobs started), ``waiting`` (jobs in the
queue) and ``in_flight`` (jobs running). Between two readings ``dt`` apart:

- arrivals = (jobs started + growth of the queue) / dt, never negative;
- service time = in flight / start rate (Little's law on the slots), when jobs started;
- worker rate = start rate / ready workers, measured only while the pool was saturated,
  so that starts were limited by what the workers could do, not by arrivals: no worker
  became ready during the interval, jobs wait at its end *with every slot of the ready
  workers busy* (when the slots per worker are known: a job that arrived a moment before
  the reading waits too, while slots are free -- live, at 14 jobs/s, that read as "a
  worker serves 12/s" and added a worker), and either jobs also waited at the interval's
  start or the queue grew (it built up behind the workers there were). The second
  case matters once workers start fast: the scale-up answers the first backlog at the
  next reading, and a scale-in that leaves too few workers is undone at the next one, so
  "waited at both readings, same count" may never hold; without the rate the throughput
  term is missing and the same scale-in repeats every window (the steady trace with a
  0.4 s cold start: 71 direction changes). A start rate that was arrival-bound for part
  of the interval understates the workers: the error is towards more workers. What one
  worker serves on this host, contention included;

each smoothed by an EWMA with factor ``smoothing`` (0.3); the worker rate keeps its last
value while the pool is not saturated. A counter that went back (the
stats key was reset) or a non-advancing clock restarts the estimate; an unknown
``waiting`` keeps the previous estimate; an unknown ``in_flight`` keeps the service time.
"""

from __future__ import annotations

from dataclasses import dataclass

SMOOTHING = 0.3


@dataclass(frozen=True)
class RateState:
    at: float
    started: int
    waiting: int
    arrival_rate: float | None = None
    service_time_s: float | None = None
    worker_jobs_per_s: float | None = None
    ready_workers: int | None = None


def _ewma(sample: float, prev: float | None, a: float) -> float:
    return sample if prev is None else a * sample + (1 - a) * prev


def _saturated(prev: RateState, waiting: int, in_flight: int | None, ready_workers: int,
               slots_per_worker: int | None) -> bool:
    """Starts over the interval were bounded by the ``ready_workers`` (see the module doc);
    the caller has checked that jobs wait now."""
    if prev.ready_workers is None or ready_workers > prev.ready_workers:
        return False
    if slots_per_worker and (in_flight is None or in_flight < slots_per_worker * ready_workers):
        return False            # a slot is free: the waiting job is about to be taken
    return (ready_workers == prev.ready_workers and prev.waiting > 0) or waiting > prev.waiting


def update_rates(prev: RateState | None, now: float, started: int, waiting: int | None,
                 in_flight: int | None, smoothing: float = SMOOTHING,
                 ready_workers: int | None = None, slots_per_worker: int | None = None) -> RateState | None:
    """The next state after one reading; ``None`` while nothing is known yet."""
    if waiting is None:
        return prev
    if prev is None or now <= prev.at or started < prev.started:
        return RateState(now, started, waiting, worker_jobs_per_s=prev.worker_jobs_per_s if prev else None,
                         ready_workers=ready_workers)
    dt = now - prev.at
    start_rate = (started - prev.started) / dt
    arrivals = max(0.0, (started - prev.started + waiting - prev.waiting) / dt)
    arrival = _ewma(arrivals, prev.arrival_rate, smoothing)
    service = prev.service_time_s
    if start_rate > 0 and in_flight is not None:
        service = _ewma(in_flight / start_rate, service, smoothing)
    per_worker = prev.worker_jobs_per_s
    if ready_workers and waiting > 0 and start_rate > 0 and \
            _saturated(prev, waiting, in_flight, ready_workers, slots_per_worker):
        per_worker = _ewma(start_rate / ready_workers, per_worker, smoothing)
    return RateState(now, started, waiting, arrival, service, per_worker, ready_workers)
