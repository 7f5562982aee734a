"""A discrete-time simulation of one queue and a pool of workers; no sleeping, no real clock.

Time advances in ticks of ``tick_s`` (0.1 s). Inside a tick, jobs are dispatched exactly
(event times, not tick times): the queue is FIFO and a job starts on the slot that frees
first, at ``max(arrival, slot free)``, as fair dispatch (prefetch 1 per slot) does. Each
worker has ``slots_per_worker`` slots and takes ``cold_start_s`` from start to ready; a
worker asked to stop drains (takes no new job, finishes its running ones) and is charged
until its last job ends. Worker-seconds count every worker from start (cold start
included: it holds memory) to stop.

Defaults come from measurements on this 2-core machine (DESIGN.md, benchmarks):

- ``cold_start_s = 5.5``: a real MiniLM worker went from start to ready in 5.2 s;
- ``throughput_per_worker = 110`` jobs/s with ``slots_per_worker = 16``: 300
  single-sentence jobs ran at 108 jobs/s on one worker. A job holds a slot for
  ``size x slots / throughput`` seconds on average (0.145 s for one sentence), drawn from a
  gamma distribution with coefficient of variation ``service_cv``.

The pool is idealised: workers do not slow each other down (on 2 cores they would; the
host cap of the real policy is left off unless ``host_cpus`` is given).
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from autoscaler.traces import Trace


@dataclass(frozen=True)
class SimParams:
    slots_per_worker: int = 16
    throughput_per_worker: float = 110.0   # jobs/s of one-sentence jobs (measured 108)
    service_cv: float = 0.5                # spread of a job's slot time
    cold_start_s: float = 5.5              # start -> ready (measured 5.2 s)
    tick_s: float = 0.1
    min_workers: int = 1
    max_workers: int = 4
    slo_wait_s: float = 10.0               # a job waiting longer is "over SLO"
    seed: int = 0
    max_tail_s: float = 3600.0             # give up this long after the trace ends
    host_cpus: int | None = None           # given: the elastiq policy sees a CPU cap
    worker_threads: int = 1

    @property
    def service_time_s(self) -> float:
        """Mean seconds one sentence holds one slot."""
        return self.slots_per_worker / self.throughput_per_worker


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
    cold_start_s: float


class Policy(Protocol):
    name: str
    interval_s: float

    def initial_workers(self, params: SimParams) -> int: ...

    def desired(self, obs: Observation) -> int: ...


@dataclass
class Worker:
    wid: int
    started_at: float
    ready_at: float
    running: int = 0
    last_end: float = 0.0
    stop_at: float | None = None   # set when asked to drain: when its last job ends


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


def service_times(trace: Trace, params: SimParams) -> np.ndarray:
    """Seconds each job holds a slot; the same draws for every policy (common random numbers)."""
    rng = np.random.default_rng(params.seed)
    mean = trace.size * params.service_time_s
    if params.service_cv <= 0:
        return mean.astype(float)
    shape = 1.0 / params.service_cv ** 2
    return mean * rng.gamma(shape, 1.0 / shape, trace.jobs)


class Pool:
    """The queue and the workers; :meth:`advance` runs the jobs up to a time."""

    def __init__(self, trace: Trace, params: SimParams, initial: int):
        self.p = params
        self.arr = trace.t
        self.svc = service_times(trace, params)
        self.main_cum = np.concatenate([[0], np.cumsum(trace.priority == 0)])
        self.waits = np.full(trace.jobs, np.nan)
        self.head = 0                      # next job to start (FIFO: jobs start in order)
        self.workers: list[Worker] = []
        self.slots: list[tuple[float, int]] = []   # (free at, worker id)
        self.ends: list[tuple[float, int]] = []    # (job end, worker id) of running jobs
        for _ in range(initial):
            self.start_worker(0.0, warm=True)

    def start_worker(self, now: float, warm: bool = False) -> None:
        ready = now if warm else now + self.p.cold_start_s
        w = Worker(len(self.workers), now, ready)
        self.workers.append(w)
        for _ in range(self.p.slots_per_worker):
            heapq.heappush(self.slots, (ready, w.wid))

    def active(self) -> list[Worker]:
        return [w for w in self.workers if w.stop_at is None]

    def drain(self, now: float, count: int) -> None:
        """Stop ``count`` workers: not-ready ones first, then the least busy, newest first."""
        victims = sorted(self.active(), key=lambda w: (w.ready_at <= now, w.running, -w.wid))[:count]
        for w in victims:
            w.stop_at = now if w.ready_at > now else max(now, w.last_end)

    def advance(self, t_end: float) -> None:
        arr, svc, waits, workers = self.arr, self.svc, self.waits, self.workers
        slots, ends, head, n = self.slots, self.ends, self.head, len(arr)
        while head < n and slots:
            a = arr[head]
            if a >= t_end:
                break
            free, wid = slots[0]
            w = workers[wid]
            if w.stop_at is not None:
                heapq.heappop(slots)
                continue
            start = free if free > a else a
            if start >= t_end:
                break
            end = start + svc[head]
            waits[head] = start - a
            heapq.heapreplace(slots, (end, wid))
            heapq.heappush(ends, (end, wid))
            w.running += 1
            if end > w.last_end:
                w.last_end = end
            head += 1
        self.head = head
        while ends and ends[0][0] <= t_end:
            _, wid = heapq.heappop(ends)
            workers[wid].running -= 1

    def observe(self, now: float) -> Observation:
        arrived = int(np.searchsorted(self.arr, now, side="left"))
        waiting = max(0, arrived - self.head)
        active = self.active()
        ready = [w for w in active if w.ready_at <= now]
        return Observation(
            now=now, waiting=waiting,
            waiting_main=int(self.main_cum[arrived] - self.main_cum[min(self.head, arrived)]),
            in_flight=sum(w.running for w in active),
            oldest_age_s=float(now - self.arr[self.head]) if waiting else 0.0,
            started_total=self.head, workers=len(active), ready_workers=len(ready),
            busy_workers=sum(1 for w in ready if w.running > 0),
            slots_per_worker=self.p.slots_per_worker, cold_start_s=self.p.cold_start_s)

    def done(self) -> bool:
        return self.head >= len(self.arr) and not self.ends

    def worker_seconds(self, horizon: float) -> float:
        return sum(min(w.stop_at if w.stop_at is not None else horizon, horizon) - w.started_at
                   for w in self.workers)


def simulate(trace: Trace, policy: Policy, params: SimParams = SimParams()) -> SimResult:
    """Replay ``trace`` against ``policy``; runs until the trace is over and every job is done."""
    pool = Pool(trace, params, policy.initial_workers(params))
    tick = params.tick_s
    next_control = 0.0
    samples: list[tuple[float, int, int, int, float]] = []
    events: list[tuple[float, int, int]] = []
    k = 0
    while True:
        now = k * tick
        pool.advance(now)
        if now + 1e-9 >= next_control:
            obs = pool.observe(now)
            want = max(0, min(params.max_workers, int(policy.desired(obs))))
            if want > obs.workers:
                for _ in range(want - obs.workers):
                    pool.start_worker(now)
            elif want < obs.workers:
                pool.drain(now, obs.workers - want)
            if want != obs.workers:
                events.append((now, obs.workers, want))
            next_control += policy.interval_s
        obs = pool.observe(now)
        samples.append((now, obs.waiting, obs.workers, obs.ready_workers, obs.oldest_age_s))
        if now >= trace.duration_s and pool.done():
            break
        if now > trace.duration_s + params.max_tail_s:
            raise RuntimeError(f"{policy.name} on {trace.name}: jobs still queued "
                               f"{params.max_tail_s:.0f}s after the trace ended")
        k += 1
    s = np.array(samples, dtype=float)
    return SimResult(policy.name, trace.name, params, trace.t, pool.waits, s[:, 0], s[:, 1], s[:, 2],
                     s[:, 3], s[:, 4], events, pool.worker_seconds(now), now)
