"""The scaling policy: pure. ``decide(snapshot, state, config, now) -> Decision``.

No I/O, no clock reads, no logging: the same function runs in the controller and in the
simulator, and tests drive it with a hand-made clock.

desired = max(backlog, Little's law, age), then clamped:
- backlog:  ceil((waiting + in flight) / target_per_worker) -- in flight comes from
  heartbeats, so work held by workers counts (KEDA's LLEN misses it);
- Little's law: jobs in service = arrival rate x service time; one worker serves
  ``slots`` at a time, kept at ``target_utilisation``;
- age: when the oldest waiting job nears the wait SLO, add workers even if the backlog
  rule is satisfied (jobs may be slow, or the backlog target too loose);
- clamps: [min, max]; never below the workers that are busy; never above what the host
  can hold (memory and CPUs), and then the decision says "capacity-limited";
- scale-up acts at once, at most ``max_step_up`` workers per decision; scale-down only
  to the highest recommendation seen in a window of max(stabilisation_min_s,
  cold_start_factor x measured cold start), and never while a needed metric is unknown.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field, fields
from typing import Mapping

from autoscaler.snapshot import HostSnapshot, QueueSnapshot, Snapshot
from elastiq.errors import ConfigError


@dataclass(frozen=True)
class PolicyConfig:
    min_workers: int = 1
    max_workers: int = 4
    target_per_worker: float = 16.0      # backlog one worker should hold (about its slots)
    target_utilisation: float = 0.8      # Little's-law term keeps slots this busy
    slo_wait_s: float = 10.0             # oldest-job wait the pool tries to stay under
    age_trigger: float = 0.5             # act on age at this fraction of the SLO
    max_step_up: int = 4                 # workers added per decision at most
    stabilisation_min_s: float = 15.0    # scale-down window floor
    cold_start_factor: float = 3.0       # window >= factor x measured cold start
    memory_reserve_mb: float = 512.0     # host memory never handed to new workers

    def __post_init__(self) -> None:
        if not 0 <= self.min_workers <= self.max_workers:
            raise ConfigError(f"need 0 <= min_workers ({self.min_workers}) <= max_workers ({self.max_workers})")
        if self.max_workers < 1:
            raise ConfigError("max_workers must be >= 1")
        if self.target_per_worker <= 0 or not 0 < self.target_utilisation <= 1:
            raise ConfigError("target_per_worker must be > 0 and target_utilisation in (0, 1]")
        if self.slo_wait_s <= 0 or not 0 < self.age_trigger <= 1:
            raise ConfigError("slo_wait_s must be > 0 and age_trigger in (0, 1]")
        if self.max_step_up < 1 or self.stabilisation_min_s < 0 or self.cold_start_factor < 0:
            raise ConfigError("max_step_up >= 1, stabilisation_min_s >= 0, cold_start_factor >= 0")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides) -> "PolicyConfig":
        """``ELASTIQ_AUTOSCALE_<FIELD>``, e.g. ELASTIQ_AUTOSCALE_MAX_WORKERS=8."""
        env = os.environ if env is None else env
        values: dict = {}
        for f in fields(cls):
            key = "ELASTIQ_AUTOSCALE_" + f.name.upper()
            if key in env:
                try:
                    values[f.name] = int(env[key]) if f.type in ("int", int) else float(env[key])
                except ValueError:
                    raise ConfigError(f"{key}={env[key]!r} is not a number") from None
        values.update(overrides)
        return cls(**values)


@dataclass(frozen=True)
class PolicyState:
    # (time, recommendation) pairs inside the scale-down window, oldest first.
    recommendations: tuple[tuple[float, int], ...] = ()


@dataclass(frozen=True)
class Decision:
    queue: str
    current: int
    desired: int
    reason: str
    capacity_limited: bool
    state: PolicyState
    terms: dict = field(default_factory=dict)


def scale_down_window(q: QueueSnapshot, config: PolicyConfig) -> float:
    return max(config.stabilisation_min_s, config.cold_start_factor * (q.cold_start_s or 0.0))


def host_capacity(h: HostSnapshot, current: int, config: PolicyConfig) -> tuple[int | None, str]:
    """Most workers the host can run (current ones included), and what limits it."""
    caps = []
    if h.free_memory_mb is not None and h.worker_rss_mb:
        more = math.floor(max(0.0, h.free_memory_mb - config.memory_reserve_mb) / h.worker_rss_mb)
        caps.append((current + more, f"memory: {h.free_memory_mb:.0f} MB free fits {more} more"))
    if h.cpus:
        per = h.threads_per_worker or 1
        caps.append((max(1, h.cpus // per), f"CPU: {h.cpus} CPUs / {per} thread(s) per worker"))
    if not caps:
        return None, ""
    return min(caps)


def demand(q: QueueSnapshot, config: PolicyConfig) -> tuple[int, str, dict]:
    """The largest of the three terms, with the reason of the one that won."""
    terms: dict[str, int] = {}
    reasons: dict[str, str] = {}
    backlog = (q.waiting or 0) + (q.in_flight or 0)
    terms["backlog"] = math.ceil(backlog / config.target_per_worker)
    reasons["backlog"] = (f"backlog {backlog} (waiting {q.waiting} + in flight {q.in_flight}) / "
                          f"{config.target_per_worker:g} per worker -> {terms['backlog']}")
    if q.arrival_rate is not None and q.service_time_s is not None and q.slots_per_worker:
        in_service = q.arrival_rate * q.service_time_s
        terms["little"] = math.ceil(in_service / (config.target_utilisation * q.slots_per_worker) - 1e-9)
        reasons["little"] = (f"arrivals {q.arrival_rate:.1f}/s x {q.service_time_s:.2f}s service / "
                             f"({config.target_utilisation:g} x {q.slots_per_worker} slots) -> {terms['little']}")
    if q.oldest_age_s is not None and q.waiting and q.oldest_age_s >= config.age_trigger * config.slo_wait_s:
        urgent = q.oldest_age_s >= config.slo_wait_s
        terms["age"] = q.workers + (2 if urgent else 1)
        reasons["age"] = (f"oldest job waited {q.oldest_age_s:.1f}s (SLO {config.slo_wait_s:g}s) "
                          f"-> +{terms['age'] - q.workers}")
    best = max(terms, key=lambda k: (terms[k], k == "age"))
    return terms[best], reasons[best], terms


def decide(snapshot: Snapshot, state: PolicyState, config: PolicyConfig, now: float) -> Decision:
    q, h = snapshot.queue, snapshot.host
    current = q.workers
    known = q.waiting is not None and q.in_flight is not None
    want, reason, terms = demand(q, config)
    notes: list[str] = []

    desired = max(want, config.min_workers)
    if desired > want:
        notes.append(f"min {config.min_workers}")
    if q.busy_workers > desired:
        desired = q.busy_workers
        notes.append(f"{q.busy_workers} busy worker(s) kept")
    if (q.waiting or 0) > 0 and desired == 0:
        desired = 1
    if current == 0 and desired > 0 and (q.waiting or 0) > 0:
        notes.append("scale from zero: a job is waiting")
    if desired > config.max_workers:
        desired = config.max_workers
        notes.append(f"max {config.max_workers}")

    capacity_limited = False
    cap, why = host_capacity(h, current, config)
    if cap is not None and desired > max(cap, current):
        desired = max(cap, current)
        capacity_limited = True
        notes.append(f"capacity-limited ({why})")
    if desired > current + config.max_step_up:
        desired = current + config.max_step_up
        notes.append(f"step limit +{config.max_step_up}")

    window = scale_down_window(q, config)
    # An unknown metric records the current size, so it cannot open the way to a scale-in later.
    rec = desired if known else max(desired, current)
    recs = tuple((t, r) for t, r in state.recommendations if now - t < window) + ((now, rec),)
    if desired < current:
        if not known:
            desired = current
            notes.append("hold: queue or heartbeat metrics unknown, no scale-in")
        else:
            recent = max(r for _, r in recs)
            if recent > desired:
                desired = min(current, recent)
                notes.append(f"hold: scale-in waits a {window:.0f}s window (recent need {recent})")
    terms.update(window_s=window, capacity=cap)
    text = "; ".join([reason] + notes)
    return Decision(q.queue, current, desired, text, capacity_limited, PolicyState(recs), terms)
