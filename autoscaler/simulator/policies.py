"""The elastiq policy and the static pool, as simulator policies.

:class:`ElastiqPolicy` calls the real :func:`autoscaler.policy.decide` every control tick
(1 s, the controller's default interval) on a :class:`~autoscaler.snapshot.Snapshot` built
from the simulated queue, with the arrival rate and service time from the live signals'
own estimator, :func:`autoscaler.rates.update_rates` (EWMA, factor 0.3): arrivals = jobs
started + queue growth per interval; service time = in flight / start rate.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from autoscaler.policy import PolicyConfig, PolicyState, decide
from autoscaler.rates import SMOOTHING, RateState, update_rates
from autoscaler.simulator.model import Observation, SimParams
from autoscaler.snapshot import HostSnapshot, QueueSnapshot, Snapshot, WorkerInfo


@dataclass
class RateEstimator:
    """The controller's smoothed arrival rate and service time: :func:`autoscaler.rates.update_rates`."""
    smoothing: float = SMOOTHING
    state: RateState | None = None

    def update(self, now: float, started: int, waiting: int, in_flight: int, ready: int | None = None,
               slots: int | None = None) -> None:
        self.state = update_rates(self.state, now, started, waiting, in_flight, self.smoothing, ready, slots)

    @property
    def arrival_rate(self) -> float | None:
        return self.state.arrival_rate if self.state else None

    @property
    def service_time_s(self) -> float | None:
        return self.state.service_time_s if self.state else None

    @property
    def worker_jobs_per_s(self) -> float | None:
        return self.state.worker_jobs_per_s if self.state else None


@dataclass
class ElastiqPolicy:
    config: PolicyConfig = field(default_factory=PolicyConfig)
    interval_s: float = 1.0
    host_cpus: int | None = None
    worker_threads: int = 1
    worker_rss_mb: float | None = None
    name: str = "elastiq"
    initial: int | None = None          # workers warm at t=0 (default: min_workers)
    state: PolicyState = field(default_factory=PolicyState)
    rates: RateEstimator = field(default_factory=RateEstimator)
    reasons: list[tuple[float, int, str]] = field(default_factory=list)

    @classmethod
    def for_params(cls, params: SimParams, config: PolicyConfig | None = None) -> ElastiqPolicy:
        base = config or PolicyConfig()
        cfg = replace(base, min_workers=params.min_workers, max_workers=params.max_workers,
                      slo_wait_s=params.slo_wait_s, memory_reserve_mb=params.memory_reserve_mb)
        return cls(cfg, host_cpus=params.host_cpus, worker_threads=params.worker_threads,
                   worker_rss_mb=params.worker_rss_mb)

    def initial_workers(self, params: SimParams) -> int:
        return self.config.min_workers if self.initial is None else self.initial

    def snapshot(self, obs: Observation) -> Snapshot:
        self.rates.update(obs.now, obs.started_total, obs.waiting, obs.in_flight, obs.ready_workers,
                          obs.slots_per_worker)
        q = QueueSnapshot(
            queue="sim", waiting=obs.waiting, in_flight=obs.in_flight, oldest_age_s=obs.oldest_age_s,
            arrival_rate=self.rates.arrival_rate, service_time_s=self.rates.service_time_s,
            worker_jobs_per_s=self.rates.worker_jobs_per_s,
            workers=obs.workers, ready_workers=obs.ready_workers, busy_workers=obs.busy_workers,
            slots_per_worker=obs.slots_per_worker, cold_start_s=obs.cold_start_s,
            worker_info=tuple(WorkerInfo(str(wid), at, ready, cold) for wid, at, ready, cold in obs.worker_info))
        # Idle CPU is not modelled (None: the policy's idle-CPU cap is off here); the machine
        # model already shares the host's CPUs among the workers, and no neighbour runs.
        host = HostSnapshot(cpus=self.host_cpus, free_cpu=None, free_memory_mb=obs.free_memory_mb,
                            worker_rss_mb=self.worker_rss_mb, threads_per_worker=self.worker_threads)
        return Snapshot(obs.now, q, host)

    def desired(self, obs: Observation) -> int:
        d = decide(self.snapshot(obs), self.state, self.config, obs.now)
        self.state = d.state
        if d.desired != d.current:
            self.reasons.append((obs.now, d.desired, d.reason))
        return d.desired


@dataclass
class StaticPolicy:
    """A fixed pool at ``max_workers``, warm from the start: the cost ceiling, the latency floor."""
    workers: int | None = None
    name: str = "static"
    interval_s: float = 60.0

    def initial_workers(self, params: SimParams) -> int:
        if self.workers is None:
            self.workers = params.max_workers
        return self.workers

    def desired(self, obs: Observation) -> int:
        return self.workers if self.workers is not None else obs.workers
