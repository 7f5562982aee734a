"""A discrete-time simulation of one queue and a pool of workers; no sleeping, no real clock.

Time advances in ticks of ``tick_s`` (0.1 s); each policy is asked at its own interval.
Inside a tick, jobs are dispatched exactly (event times, not tick times) by
:class:`autoscaler.simulator.pool.Pool`: the queue is FIFO and a job starts on the slot
that has been free longest, at ``max(arrival, slot free)``, as fair dispatch (prefetch 1
per slot) does. A worker asked to stop drains (takes no new job, finishes its running
ones) and is charged until its last job ends. Worker-seconds count every worker from
start (cold start included: it holds memory and burns CPU) to stop.

Two worker models:

- **the machine** (``SimParams.for_machine(calibration)``, what ``elastiq simulate`` uses):
  workers share the host's CPUs and memory, cold starts are drawn from measurements, a
  job's slot time follows the worker's load; see :mod:`autoscaler.simulator.pool`;
- **idealised** (``SimParams()``, for hand-computed unit tests): a job holds a slot
  ``size x slots / throughput_per_worker`` s, every cold start is ``cold_start_s``, and
  workers never slow each other down.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from autoscaler.traces import Trace
from elastiq import contract


@dataclass(frozen=True)
class SimParams:
    slots_per_worker: int = contract.DEFAULT_SLOTS
    throughput_per_worker: float = 110.0   # jobs/s of one worker alone, saturated, 1-sentence jobs
    service_cv: float = 0.5                # spread of a job's slot time (gamma, mean 1)
    cold_start_s: float = 5.5              # start -> ready when no samples are given
    tick_s: float = 0.1
    min_workers: int = 1
    max_workers: int = 4
    slo_wait_s: float = 10.0               # a job waiting longer is "over SLO"
    seed: int = 0
    max_tail_s: float = 3600.0             # give up this long after the trace ends
    host_cpus: int | None = None           # the host's cores (the elastiq policy sees the cap)
    worker_threads: int = 1
    # The machine (all None/empty: the idealised model).
    host_jobs_per_s: float | None = None   # every worker together, saturated: the host's limit
    single_job_s: float | None = None      # a 1-sentence job alone holds its slot this long
    extra_sentence_work: float = 1.0       # work of each sentence past a job's first (1-sentence job = 1)
    cold_start_samples: tuple[float, ...] = ()   # measured start -> ready; one drawn per start
    cold_start_cpu: float = 1.0            # cores a loading worker burns (imports are CPU-bound)
    worker_rss_mb: float | None = None
    host_memory_mb: float | None = None
    memory_reserve_mb: float = 512.0       # never handed to workers (the policy's default too)

    @property
    def service_time_s(self) -> float:
        """Mean seconds one sentence holds one slot in a saturated worker."""
        return self.slots_per_worker / self.throughput_per_worker

    @property
    def shared_host(self) -> bool:
        return self.host_cpus is not None and self.host_jobs_per_s is not None

    @classmethod
    def for_machine(cls, cal, **overrides) -> SimParams:
        """Parameters of the machine a :class:`~autoscaler.simulator.machine.Calibration` measured."""
        values = dict(throughput_per_worker=cal.worker_jobs_per_s, host_cpus=cal.cpus,
                      host_jobs_per_s=cal.host_jobs_per_s, single_job_s=cal.single_job_s,
                      extra_sentence_work=cal.extra_sentence_work,
                      cold_start_samples=tuple(cal.cold_start_s),
                      cold_start_s=statistics.median(cal.cold_start_s),
                      worker_rss_mb=cal.worker_rss_mb, host_memory_mb=cal.host_memory_mb)
        values.update(overrides)
        return cls(**values)


@dataclass(frozen=True)
class Observation:
    """What a scaling policy can see at a control tick (each baseline uses a subset)."""
    now: float
    waiting: int              # jobs in the queue, every priority sub-list included
    waiting_main: int         # jobs in the main list only (what one LLEN returns)
    in_flight: int            # jobs running on workers that are not draining
    oldest_age_s: float       # age of the oldest waiting job, 0 if none
    started_total: int        # jobs started since t=0 (a counter, like the stats key)
    workers: int              # workers not draining (starting ones included)
    ready_workers: int
    busy_workers: int
    slots_per_worker: int
    cold_start_s: float       # the cold start of the worker ready last (as heartbeats say)
    # (worker id, started at, ready, own cold start or None) of each worker not draining
    worker_info: tuple[tuple[int, float, bool, float | None], ...] = ()
    free_memory_mb: float | None = None


class Policy(Protocol):
    name: str
    interval_s: float

    def initial_workers(self, params: SimParams) -> int: ...

    def desired(self, obs: Observation) -> int: ...


@dataclass
class SimResult:
    policy: str
    trace: str
    params: SimParams
    arrivals: np.ndarray
    waits: np.ndarray          # queue wait of each job, seconds
    t: np.ndarray              # sample times (every tick)
    waiting: np.ndarray
    workers: np.ndarray        # not draining, starting included
    ready: np.ndarray
    oldest: np.ndarray         # oldest waiting job's age at each sample
    events: list[tuple[float, int, int]] = field(default_factory=list)   # (t, from, to)
    worker_seconds: float = 0.0
    horizon_s: float = 0.0
    cpu_demand: np.ndarray | None = None   # host cores wanted at each sample (machine model)
    refused_starts: int = 0                # starts the host's memory could not hold
    holds: np.ndarray | None = None        # seconds each job held its slot (wait + hold = latency)


def simulate(trace: Trace, policy: Policy, params: SimParams = SimParams()) -> SimResult:
    """Replay ``trace`` against ``policy``; runs until the trace is over and every job is done."""
    from autoscaler.simulator.pool import Pool

    pool = Pool(trace, params, policy.initial_workers(params))
    tick = params.tick_s
    next_control = 0.0
    samples: list[tuple[float, int, int, int, float, float]] = []
    events: list[tuple[float, int, int]] = []
    k = 0
    while True:
        now = k * tick
        pool.advance(now)
        if now + 1e-9 >= next_control:
            obs = pool.observe(now)
            want = max(0, min(params.max_workers, int(policy.desired(obs))))
            if want > obs.workers:
                want = obs.workers + sum(pool.start_worker(now) for _ in range(want - obs.workers))
            elif want < obs.workers:
                pool.drain(now, obs.workers - want)
            if want != obs.workers:
                events.append((now, obs.workers, want))
            next_control += policy.interval_s
        obs = pool.observe(now)
        samples.append((now, obs.waiting, obs.workers, obs.ready_workers, obs.oldest_age_s, pool.cpu_demand(now)))
        if now >= trace.duration_s and pool.done():
            break
        if now > trace.duration_s + params.max_tail_s:
            raise RuntimeError(f"{policy.name} on {trace.name}: jobs still queued "
                               f"{params.max_tail_s:.0f}s after the trace ended")
        k += 1
    s = np.array(samples, dtype=float)
    return SimResult(policy.name, trace.name, params, trace.t, pool.waits, s[:, 0], s[:, 1], s[:, 2],
                     s[:, 3], s[:, 4], events, pool.worker_seconds(now), now, s[:, 5], pool.refused, pool.holds)
