"""Baseline policies, re-implemented from their documented algorithms and defaults.

Each works in *workers* of ``slots_per_worker`` slots, the unit our pool scales. Sources
are cited per class; the numbers are also in research/autoscaler.md sections 1-2 and 5.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

from autoscaler.simulator.model import Observation, SimParams
from elastiq import contract


@dataclass
class KedaHpaPolicy:
    """KEDA Redis list scaler driving a Kubernetes HPA.

    - Metric: ``LLEN`` of the one list named in the trigger (kedacore/keda
      ``pkg/scalers/redis_scaler.go``): no in-flight or prefetched jobs, no Celery priority
      sub-lists (``Observation.waiting_main``). ``listLength`` 5, AverageValue.
    - KEDA operator polls every ``pollingInterval`` 30 s (``withtriggers_types.go``) and owns
      0 <-> 1: activates when LLEN > ``activationListLength`` 0, scales to 0 once
      ``lastActiveTime + cooldownPeriod (300 s) < now`` (``scale_executor.go``,
      ``scale_scaledobjects.go``); from 0 it goes to ``max(minReplicaCount, 1)``.
    - HPA syncs every 15 s (kube-controller-manager ``--horizontal-pod-autoscaler-sync-period``):
      ``usageRatio = LLEN / (listLength x replicas)``; inside the 10 % tolerance keep the
      replicas, else ``ceil(LLEN / listLength)`` (``replica_calculator.go``
      ``GetExternalPerPodMetricReplicas``), clamped to [max(1, min), max].
    - HPA default behaviour (k8s docs "Default Behavior"): scale-down stabilisation 300 s
      (the highest recommendation in the window), scale-down 100 % per 15 s; scale-up no
      stabilisation, at most ``max(+4 pods, +100 %)`` per 15 s.
    """
    min_workers: int = 0
    max_workers: int = 4
    list_length: int = 5
    activation_list_length: int = 0
    polling_interval_s: float = 30.0
    hpa_sync_s: float = 15.0
    tolerance: float = 0.1
    scale_down_window_s: float = 300.0
    cooldown_s: float = 300.0
    scale_up_pods: int = 4
    scale_up_percent: float = 100.0
    name: str = "keda"
    _recs: list[tuple[float, int]] = field(default_factory=list)
    _last_active: float = 0.0
    _next_poll: float = 0.0
    _next_sync: float = 0.0

    @property
    def interval_s(self) -> float:
        return math.gcd(int(self.polling_interval_s), int(self.hpa_sync_s)) or self.hpa_sync_s

    @classmethod
    def for_params(cls, params: SimParams, **kw) -> KedaHpaPolicy:
        return cls(min_workers=params.min_workers, max_workers=params.max_workers, **kw)

    @classmethod
    def tuned(cls, params: SimParams, **kw) -> KedaHpaPolicy:
        """KEDA as a competent operator would set it for this pool (issue #19).

        ``listLength`` = one worker's slots (the backlog one worker holds), KEDA polling
        every 5 s, a 60 s scale-down window, ``activationListLength`` 1. The HPA's 15 s
        sync period stays: it is a kube-controller-manager flag, not a KEDA setting, and
        managed clusters do not expose it; between 1 and N replicas the HPA, not KEDA's
        polling, sets the pace.
        """
        values = dict(list_length=params.slots_per_worker, polling_interval_s=5.0, scale_down_window_s=60.0,
                      activation_list_length=1, name="keda-tuned")
        values.update(kw)
        return cls.for_params(params, **values)

    def initial_workers(self, params: SimParams) -> int:
        return self.min_workers

    def desired(self, obs: Observation) -> int:
        now, llen, current = obs.now, obs.waiting_main, obs.workers
        if now + 1e-9 >= self._next_poll:                       # KEDA operator: 0 <-> 1
            self._next_poll += self.polling_interval_s
            if llen > self.activation_list_length:
                self._last_active = now
                if current == 0:
                    return max(self.min_workers, 1)
            elif current > 0 and self.min_workers == 0 and self._last_active + self.cooldown_s < now:
                self._recs.clear()
                return 0
        if current == 0:
            return 0
        if now + 1e-9 >= self._next_sync:                       # HPA: every sync period
            self._next_sync = now + self.hpa_sync_s
            return self.hpa(now, llen, current)
        return current

    def hpa(self, now: float, llen: int, current: int) -> int:
        ratio = llen / (self.list_length * current)
        rec = current if abs(1.0 - ratio) <= self.tolerance else math.ceil(llen / self.list_length)
        rec = max(max(1, self.min_workers), min(self.max_workers, rec))
        self._recs = [(t, r) for t, r in self._recs if now - t < self.scale_down_window_s]
        self._recs.append((now, rec))
        down = max(r for _, r in self._recs)       # scale down only to the window's highest
        result = max(current, rec)                  # scale-up window is 0 s
        result = min(result, down)
        limit = max(current + self.scale_up_pods, math.floor(current * (1 + self.scale_up_percent / 100)))
        return min(result, limit, self.max_workers)


@dataclass
class CeleryAutoscalePolicy:
    """Celery ``--autoscale=max,min``, scaled from processes to workers.

    ``celery/worker/autoscale.py``: ``qty = len(state.reserved_requests)`` (received and
    not finished, active included), capped by what prefetch lets the worker reserve,
    ``max_concurrency x worker_prefetch_multiplier (4)`` (``celery/worker/components.py``).
    Grow at once to ``min(qty, max)``; shrink to ``max(qty, min)`` only when
    ``monotonic() - _last_scale_up > keepalive`` (``AUTOSCALE_KEEPALIVE``, 30 s) -- and,
    as in the source (``if self._last_scale_up and ...``), never before a first scale-up.
    ``pool.shrink`` removes idle processes only, so busy workers are kept. Checked every
    1 s (the background-thread cadence). Every new process loads the model again: each
    grow pays the cold start (the simulator charges it).
    """
    min_workers: int = 1
    max_workers: int = 4
    slots_per_worker: int = contract.DEFAULT_SLOTS
    keepalive_s: float = 30.0
    prefetch_multiplier: int = 4
    interval_s: float = 1.0
    name: str = "celery"
    _last_scale_up: float | None = None

    @classmethod
    def for_params(cls, params: SimParams, **kw) -> CeleryAutoscalePolicy:
        return cls(min_workers=params.min_workers, max_workers=params.max_workers,
                   slots_per_worker=params.slots_per_worker, **kw)

    def initial_workers(self, params: SimParams) -> int:
        return self.min_workers

    def desired(self, obs: Observation) -> int:
        reservable = self.max_workers * self.slots_per_worker * self.prefetch_multiplier
        qty = min(obs.waiting + obs.in_flight, reservable)
        need = math.ceil(qty / self.slots_per_worker)
        procs = obs.workers
        cur = min(need, self.max_workers)
        if cur > procs:
            self._last_scale_up = obs.now
            return cur
        cur = max(need, self.min_workers, obs.busy_workers)
        if cur < procs and self._last_scale_up is not None and obs.now - self._last_scale_up > self.keepalive_s:
            return cur
        return procs


@dataclass
class RayServePolicy:
    """Ray Serve autoscaling, the async-inference flavour (a Celery queue in front).

    ``python/ray/serve/autoscaling_policy.py``: ``total = queue_length (LLEN of the
    broker list, QueueMonitorActor) + ongoing requests``, averaged (MEAN) over
    ``look_back_period_s`` 30 s; ``error_ratio = total / (target x running)``;
    ``desired = ceil(running x (1 + (error_ratio - 1) x factor))`` with factors 1.0.
    Smoothing (``_apply_scaling_decision_smoothing``): a signed counter of consecutive
    decisions, checked every ``CONTROL_LOOP_INTERVAL_S`` 0.1 s; scale up after more than
    ``upscale_delay_s`` 30 s of "up" decisions, down after ``downscale_delay_s`` 600 s;
    any other decision resets it. Non-zero downscales are floored at 1; 1 -> 0 only when
    min is 0; from 0 any queued request goes to 1 at once.

    ``target_ongoing_requests`` defaults to 2 per replica with ``max_ongoing_requests`` 5,
    i.e. a replica is kept at 2/5 of its concurrency. Our worker's concurrency is its
    slots, so the default here is ``0.4 x slots`` (6.4 for 16 slots); pass 2 for the
    literal number (which pins the pool at max under any load).
    """
    min_workers: int = 1
    max_workers: int = 4
    target_ongoing_requests: float = 6.4
    upscale_delay_s: float = 30.0
    downscale_delay_s: float = 600.0
    look_back_period_s: float = 30.0
    upscaling_factor: float = 1.0
    downscaling_factor: float = 1.0
    interval_s: float = 0.1
    name: str = "ray"
    _counter: int = 0
    _samples: deque = field(default_factory=deque)
    _sum: float = 0.0

    @classmethod
    def for_params(cls, params: SimParams, target: float | None = None, **kw) -> RayServePolicy:
        return cls(min_workers=params.min_workers, max_workers=params.max_workers,
                   target_ongoing_requests=target or 0.4 * params.slots_per_worker, **kw)

    def initial_workers(self, params: SimParams) -> int:
        return self.min_workers

    def _mean_total(self, now: float, total: float) -> float:
        self._samples.append((now, total))
        self._sum += total
        while self._samples and now - self._samples[0][0] > self.look_back_period_s:
            self._sum -= self._samples.popleft()[1]
        return self._sum / len(self._samples)

    def desired(self, obs: Observation) -> int:
        total = self._mean_total(obs.now, obs.waiting_main + obs.in_flight)
        current = obs.workers
        if current == 0:
            self._counter = 0
            return max(1, self.min_workers) if obs.waiting_main > 0 else 0
        ratio = total / (self.target_ongoing_requests * current)
        factor = self.upscaling_factor if ratio >= 1 else self.downscaling_factor
        want = math.ceil(current * (1 + (ratio - 1) * factor) - 1e-9)
        want = max(self.min_workers, min(self.max_workers, want))
        if want < current and current > 1:
            want = max(1, want)
        ticks_up = round(self.upscale_delay_s / self.interval_s)
        ticks_down = round(self.downscale_delay_s / self.interval_s)
        if want > current:
            self._counter = max(self._counter, 0) + 1
            if self._counter > ticks_up:
                self._counter = 0
                return want
        elif want < current:
            self._counter = min(self._counter, 0) - 1
            if -self._counter > ticks_down:
                self._counter = 0
                return want
        else:
            self._counter = 0
        return current
