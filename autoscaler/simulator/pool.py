"""The simulated queue, its workers, and the machine they share.

Dispatch is exact: FIFO, each job to the slot free longest, at ``max(arrival, free)``;
job ends are applied in time order before every start, so each start sees the pool as it
is at that instant.

With the machine model (``SimParams.shared_host``):

- **work**: a job of ``z`` sentences is ``1 + extra_sentence_work x (z - 1)`` units of a
  one-sentence job (per-job overhead is shared by its sentences);
- **a worker** serves the work it holds at ``throughput_per_worker`` units/s, shared by
  its running jobs (processor sharing, as its batches do): a job holds its slot
  ``max(units x single_job_s, load / throughput)`` s, where ``load`` is the units running
  on that worker with this job -- so a job alone takes ``single_job_s`` and a full worker
  serves at its measured rate;
- **the host**: a worker running any job computes flat out (that is what processor
  sharing means) and wants ``cores_per_worker = cpus x throughput_per_worker /
  host_jobs_per_s`` cores -- so ``cpus`` cores serve ``host_jobs_per_s`` however many
  workers share them -- and a loading worker wants ``cold_start_cpu`` cores; when the
  cores wanted exceed ``cpus``, every job started then -- and every cold start begun then
  -- is stretched by wanted / ``cpus``;
- **cold start**: each start draws one of the measured samples (the k-th start of every
  policy gets the same draw: common random numbers);
- **memory**: a start that would put more than ``(host_memory_mb - memory_reserve_mb) /
  worker_rss_mb`` workers (draining ones included) on the host is refused.

Slowdowns are set when a job or cold start begins and not revised later (jobs last well
under a second; the approximation is documented in docs/sim/README.md).
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass

import numpy as np

from autoscaler.simulator.model import Observation, SimParams
from autoscaler.traces import Trace


@dataclass
class Worker:
    wid: int
    started_at: float
    ready_at: float
    cold_start_s: float
    running: int = 0
    load: float = 0.0              # work units of the jobs it runs
    last_end: float = 0.0
    stop_at: float | None = None   # set when asked to drain: when its last job ends


def service_noise(jobs: int, params: SimParams) -> np.ndarray:
    """Gamma multipliers (mean 1, cv ``service_cv``); the same draws for every policy."""
    rng = np.random.default_rng(params.seed)
    if params.service_cv <= 0:
        return np.ones(jobs)
    shape = 1.0 / params.service_cv ** 2
    return rng.gamma(shape, 1.0 / shape, jobs)


class Pool:
    def __init__(self, trace: Trace, params: SimParams, initial: int):
        p = self.p = params
        self.arr = trace.t
        self.units = 1.0 + p.extra_sentence_work * (trace.size.astype(float) - 1.0)
        self.noise = service_noise(trace.jobs, params)
        self.main_cum = np.concatenate([[0], np.cumsum(trace.priority == 0)])
        self.waits = np.full(trace.jobs, np.nan)
        self.holds = np.full(trace.jobs, np.nan)           # seconds each job held its slot
        self.head = 0
        self.workers: list[Worker] = []
        self.slots: list[tuple[float, int]] = []           # (free at, worker id)
        self.ends: list[tuple[float, int, float]] = []     # (job end, worker id, units)
        self.loading: list[Worker] = []
        self.fill = 0.0                                    # workers running at least one job
        self.refused = 0
        self.cores_per_worker = (p.host_cpus * p.throughput_per_worker / p.host_jobs_per_s
                                 if p.shared_host else 0.0)
        self._cold_rng = np.random.default_rng([p.seed, 1])
        self._last_cold = (-1.0, p.cold_start_s)           # (ready at, cold start) measured last
        for _ in range(initial):
            self.start_worker(0.0, warm=True)

    # -- the machine

    def cpu_demand(self, t: float) -> float:
        """Cores the workers want at ``t`` (0 without the machine model)."""
        if not self.p.shared_host:
            return 0.0
        self.loading = [w for w in self.loading if w.ready_at > t and (w.stop_at is None or w.stop_at > t)]
        return self.cores_per_worker * self.fill + self.p.cold_start_cpu * len(self.loading)

    @staticmethod
    def _fill(load: float) -> float:
        return 1.0 if load > 1e-9 else 0.0

    def _hold(self, w: Worker, units: float, t: float) -> float:
        p = self.p
        if not p.shared_host:
            return units * p.service_time_s
        load = w.load + units
        base = max(units * (p.single_job_s or 0.0), load / p.throughput_per_worker)
        wanted = self.cpu_demand(t) + self.cores_per_worker * (self._fill(load) - self._fill(w.load))
        return base * max(1.0, wanted / p.host_cpus)

    def _add_load(self, w: Worker, units: float) -> None:
        before = w.load
        w.load = max(0.0, before + units)
        self.fill += self._fill(w.load) - self._fill(before)

    def _alive(self, t: float) -> int:
        return sum(1 for w in self.workers if w.stop_at is None or w.stop_at > t)

    def _memory_room(self, t: float) -> bool:
        p = self.p
        if p.host_memory_mb is None or not p.worker_rss_mb:
            return True
        return (self._alive(t) + 1) * p.worker_rss_mb <= p.host_memory_mb - p.memory_reserve_mb

    # -- workers

    def _draw_cold(self) -> float:
        samples = self.p.cold_start_samples
        return float(samples[self._cold_rng.integers(len(samples))]) if samples else self.p.cold_start_s

    def start_worker(self, now: float, warm: bool = False) -> bool:
        """Start one worker (``warm``: ready at once); False if the host's memory cannot hold it."""
        if not self._memory_room(now):
            self.refused += 1
            return False
        cold = self._draw_cold()
        if not warm and self.p.shared_host:
            cold *= max(1.0, (self.cpu_demand(now) + self.p.cold_start_cpu) / self.p.host_cpus)
        w = Worker(len(self.workers), now, now if warm else now + cold, cold)
        self.workers.append(w)
        if not warm:
            self.loading.append(w)
        for _ in range(self.p.slots_per_worker):
            heapq.heappush(self.slots, (w.ready_at, w.wid))
        return True

    def active(self) -> list[Worker]:
        return [w for w in self.workers if w.stop_at is None]

    def drain(self, now: float, count: int) -> None:
        """Stop ``count`` workers: not-ready ones first, then the least busy, newest first."""
        victims = sorted(self.active(), key=lambda w: (w.ready_at <= now, w.running, -w.wid))[:count]
        for w in victims:
            w.stop_at = now if w.ready_at > now else max(now, w.last_end)

    # -- jobs

    def _finish_until(self, t: float) -> None:
        ends, workers = self.ends, self.workers
        while ends and ends[0][0] <= t:
            _, wid, units = heapq.heappop(ends)
            w = workers[wid]
            w.running -= 1
            self._add_load(w, -units)

    def advance(self, t_end: float) -> None:
        arr, units, noise, waits, workers = self.arr, self.units, self.noise, self.waits, self.workers
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
            self._finish_until(start)
            u = units[head]
            hold = self._hold(w, u, start) * noise[head]
            end = start + hold
            waits[head] = start - a
            self.holds[head] = hold
            heapq.heapreplace(slots, (end, wid))
            heapq.heappush(ends, (end, wid, u))
            self._add_load(w, u)
            w.running += 1
            if end > w.last_end:
                w.last_end = end
            head += 1
        self.head = head
        self._finish_until(t_end)

    def observe(self, now: float) -> Observation:
        arrived = int(np.searchsorted(self.arr, now, side="left"))
        waiting = max(0, arrived - self.head)
        active = self.active()
        ready = [w for w in active if w.ready_at <= now]
        colds = [(w.ready_at, w.cold_start_s) for w in self.workers
                 if w.ready_at <= now and (w.stop_at is None or w.stop_at > now)]
        if colds:
            self._last_cold = max(colds + [self._last_cold])    # measured last, as the live signals
        p = self.p
        free_mem = None
        if p.host_memory_mb is not None and p.worker_rss_mb:
            free_mem = p.host_memory_mb - self._alive(now) * p.worker_rss_mb
        return Observation(
            now=now, waiting=waiting,
            waiting_main=int(self.main_cum[arrived] - self.main_cum[min(self.head, arrived)]),
            in_flight=sum(w.running for w in self.workers if w.running),
            oldest_age_s=float(now - self.arr[self.head]) if waiting else 0.0,
            started_total=self.head, workers=len(active), ready_workers=len(ready),
            busy_workers=sum(1 for w in ready if w.running > 0),
            slots_per_worker=p.slots_per_worker, cold_start_s=self._last_cold[1],
            worker_info=tuple((w.wid, w.started_at, w.ready_at <= now,
                               w.cold_start_s if w.ready_at <= now else None) for w in active),
            free_memory_mb=free_mem)

    def done(self) -> bool:
        return self.head >= len(self.arr) and not self.ends

    def worker_seconds(self, horizon: float) -> float:
        return sum(min(w.stop_at if w.stop_at is not None else horizon, horizon) - w.started_at
                   for w in self.workers)
