"""The scaling policy: pure. ``decide(snapshot, state, config, now) -> Decision``.

No I/O, no clock reads, no logging: the same function runs in the controller and in the
simulator, and tests drive it with a hand-made clock.

desired = max(backlog, Little's law, throughput, age), then clamped:
- backlog:  ceil((waiting + in flight) / target_per_worker) -- in flight comes from
  heartbeats, so work held by workers counts (KEDA's LLEN misses it); ``waiting`` is the
  sum over the queue's Redis lists, Celery's priority sub-lists included (signals sums
  them), so priority jobs count like any other; a backlog the ready workers clear (at
  their measured rate, arrivals going on) before a new worker could be ready adds none;
- Little's law: jobs in service L = arrival rate x mean service time (seconds a job holds
  a slot); one worker serves ``slots_per_worker`` jobs at once, kept at
  ``target_utilisation``, so workers = ceil(L / (target_utilisation x slots));
- throughput: arrivals / (target_utilisation x what one worker served while the pool was
  saturated) -- the host's contention is in that measurement, so on a 2-core machine the
  term knows two workers do not serve twice one;
- age: when the oldest waiting job nears the wait SLO (``age_trigger x slo_wait_s``), ask
  for one worker more than those already serving (two past the SLO), even if the backlog
  rule is satisfied (jobs may be slow, or the backlog target too loose);
- backlog and Little's-law terms within ``tolerance`` (10 %) of the current count keep it,
  as the HPA does, so Poisson noise at a boundary does not add and remove a worker;
- clamps: [min, max]; never below the slots the jobs in flight need (``floor_busy``) --
  or, with ``keep_busy_workers``, never below the number of busy workers; never above what
  the host can hold (memory and CPUs), and then the decision says "capacity-limited";
- scale-up acts at once, at most ``max_step_up`` workers per decision; scale-down only
  to the highest recommendation seen in a window of max(stabilisation_min_s,
  cold_start_factor x measured cold start), and never while a needed metric is unknown,
  never while a worker is still loading (unless stuck: not ready after max(120 s, 5 x
  cold start)), and never while a worker started less than that window ago (each
  worker's window counts from its own start); a scale-in undone by a scale-up within
  ``max_window_s`` (300 s, HPA's default window) doubles the window of the next one, up to
  300 s; a scale-in that stands for 300 s (no scale-up since) halves it again, and so on
  every 300 s (bursts that recur within a few minutes would otherwise add and remove a
  worker around every one; while they go on, the long window keeps the worker);
- scale to zero when ``min_workers`` is 0 and the window saw nothing; back to one at once
  when a job waits;
- optional (``prewarm``, off): demand surges that recur at a regular period start the
  last surge's workers one cold start (x 1.5) ahead of the next one.

Defaults were checked by trace replay (``elastiq simulate --all-traces``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from autoscaler.prewarm import prewarm_target, track_surges
from autoscaler.snapshot import HostSnapshot, QueueSnapshot, Snapshot
from elastiq import contract, envconfig
from elastiq.errors import ConfigError


@dataclass(frozen=True)
class PolicyConfig:
    min_workers: int = 1
    max_workers: int = 4
    target_per_worker: float = float(contract.DEFAULT_SLOTS)     # backlog one worker should hold (about its slots)
    target_utilisation: float = 0.8      # Little's-law term keeps slots this busy
    slo_wait_s: float = 10.0             # oldest-job wait the pool tries to stay under
    age_trigger: float = 0.5             # act on age at this fraction of the SLO
    max_step_up: int = 4                 # workers added per decision at most
    stabilisation_min_s: float = 15.0    # scale-down window floor
    cold_start_factor: float = 3.0       # window >= factor x measured cold start
    # Back-off: a scale-in undone (a scale-up) within this long doubles the window of the
    # next scale-in, up to this long (HPA's default window, KEDA's cooldown); a scale-in
    # that stands this long halves it again (and every further this long). <= the base: off.
    max_window_s: float = 300.0
    memory_reserve_mb: float = 512.0     # host memory never handed to new workers
    # Idle CPUs (per worker thread) the host must show for a worker to be added: below it a
    # new worker would only share cores that are already busy (other tenants, or the pool).
    min_free_cpu: float = 0.25
    # True: never fewer workers than are busy. False (default): the controller drains a
    # victim (it stops consuming and finishes its jobs; a job is never taken from a worker
    # running it), so the floor is the workers whose slots the jobs in flight need. With
    # fair dispatch jobs spread over every worker, so the strict rule blocks any scale-in
    # under steady load (simulator, steady trace: never left max_workers).
    keep_busy_workers: bool = False
    # A backlog or Little's-law term within current x (1 +/- tolerance) keeps the current
    # count (HPA's default 0.1): Poisson noise around a boundary does not add a worker.
    tolerance: float = 0.1
    # Predictive pre-warm (off by default): when the last ``prewarm_min_surges`` surges of
    # demand came at a regular period (each gap within ``prewarm_jitter`` of the mean), start
    # the last surge's peak of workers ``prewarm_lead_factor`` x cold start before the next.
    prewarm: bool = False
    prewarm_min_surges: int = 3
    prewarm_jitter: float = 0.1
    prewarm_lead_factor: float = 1.5

    def __post_init__(self) -> None:
        if not 0 <= self.min_workers <= self.max_workers:
            raise ConfigError(f"need 0 <= min_workers ({self.min_workers}) <= max_workers ({self.max_workers})")
        if self.max_workers < 1:
            raise ConfigError("max_workers must be >= 1")
        if self.target_per_worker <= 0 or not 0 < self.target_utilisation <= 1:
            raise ConfigError("target_per_worker must be > 0 and target_utilisation in (0, 1]")
        if self.slo_wait_s <= 0 or not 0 < self.age_trigger <= 1:
            raise ConfigError("slo_wait_s must be > 0 and age_trigger in (0, 1]")
        if not 0 <= self.tolerance < 1:
            raise ConfigError(f"tolerance must be in [0, 1), got {self.tolerance}")
        if self.prewarm_min_surges < 2 or not 0 <= self.prewarm_jitter < 1 or self.prewarm_lead_factor < 0:
            raise ConfigError("prewarm_min_surges >= 2, prewarm_jitter in [0, 1), prewarm_lead_factor >= 0")
        if self.min_free_cpu < 0 or self.memory_reserve_mb < 0:
            raise ConfigError("min_free_cpu and memory_reserve_mb must be >= 0")
        if self.max_step_up < 1 or self.stabilisation_min_s < 0 or self.cold_start_factor < 0:
            raise ConfigError("max_step_up >= 1, stabilisation_min_s >= 0, cold_start_factor >= 0")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides) -> PolicyConfig:
        """``ELASTIQ_AUTOSCALE_<FIELD>``, e.g. ELASTIQ_AUTOSCALE_MAX_WORKERS=8."""
        return envconfig.read(cls, "ELASTIQ_AUTOSCALE_", env, **overrides)


@dataclass(frozen=True)
class PolicyState:
    # (time, recommendation) pairs inside the scale-down window, oldest first.
    recommendations: tuple[tuple[float, int], ...] = ()
    # (start time, peak desired) of recent demand surges (demand above max(min, 1)), newest last.
    surges: tuple[tuple[float, int], ...] = ()
    in_surge: bool = False
    # The scale-down back-off: when the last scale-in was decided (None once a scale-up
    # follows it), the doublings of the window in force, and when that number last changed.
    last_scale_in: float | None = None
    backoff: int = 0
    backoff_at: float | None = None


@dataclass(frozen=True)
class Decision:
    queue: str
    current: int
    desired: int
    reason: str
    capacity_limited: bool
    state: PolicyState
    terms: dict = field(default_factory=dict)


MAX_BACKOFF = 10             # doublings at most (the max_window_s cap binds long before)


def scale_down_window(q: QueueSnapshot, config: PolicyConfig, backoff: int = 0) -> float:
    """max(stabilisation_min_s, cold_start_factor x cold start), doubled per back-off step,
    at most ``max_window_s`` (never below the base)."""
    base = max(config.stabilisation_min_s, config.cold_start_factor * (q.cold_start_s or 0.0))
    return min(base * 2 ** min(backoff, MAX_BACKOFF), max(base, config.max_window_s))


def backoff_level(state: PolicyState, config: PolicyConfig, now: float) -> tuple[int, float | None]:
    """The back-off in force now, and when it last changed: a scale-in that has stood for
    ``max_window_s`` (no scale-up since) takes one doubling off, and one more for every
    further ``max_window_s``."""
    level, at = state.backoff, state.backoff_at
    if level and state.last_scale_in is not None and \
            now - max(state.last_scale_in, at or 0.0) >= config.max_window_s:
        return level - 1, now
    return level, at


def track_scale_ins(state: PolicyState, level: int, at: float | None, current: int, desired: int,
                    q: QueueSnapshot, config: PolicyConfig, now: float, notes: list[str]) -> dict:
    """The back-off's part of the next state: a scale-up within ``max_window_s`` of the last
    scale-in undoes it (one more doubling of the window); a scale-in is remembered."""
    last = state.last_scale_in
    if desired > current:
        if last is not None and now - last < config.max_window_s:
            level, at = min(level + 1, MAX_BACKOFF), now
            notes.append(f"the scale-in {now - last:.0f}s ago is undone: the next one waits "
                         f"{scale_down_window(q, config, level):.0f}s")
        last = None
    elif desired < current:
        last = now
    return {"last_scale_in": last, "backoff": level, "backoff_at": at}


def host_capacity(h: HostSnapshot, current: int, config: PolicyConfig) -> tuple[int | None, str, dict]:
    """Most workers the host can run (current ones included), what limits it, and each cap.

    memory: current + (free_memory_mb - memory_reserve_mb) / worker_rss_mb (the running
    workers' memory is already used, so it is not in "free"); CPU: cpus / threads_per_worker,
    and no worker more while the host shows less than ``min_free_cpu`` idle CPUs per worker
    thread (measured over the last tick: a busy neighbour, or a pool already using every
    core). Never a cap below ``current``, and never at zero workers (jobs must be served).
    An unknown number gives no cap (the max_workers clamp still holds).
    """
    caps: dict[str, tuple[int, str]] = {}
    if h.free_memory_mb is not None and h.worker_rss_mb:
        more = math.floor(max(0.0, h.free_memory_mb - config.memory_reserve_mb) / h.worker_rss_mb)
        caps["cap_memory"] = (current + more, f"memory: {h.free_memory_mb:.0f} MB free fits {more} more")
    if h.cpus:
        per = h.threads_per_worker or 1
        caps["cap_cpu"] = (max(1, h.cpus // per), f"CPU: {h.cpus} CPUs / {per} thread(s) per worker")
    if h.free_cpu is not None and current > 0 and h.free_cpu < config.min_free_cpu * (h.threads_per_worker or 1):
        caps["cap_free_cpu"] = (current, f"CPU: {h.free_cpu:.2f} idle, a new worker would only share busy cores")
    parts = {k: v[0] for k, v in caps.items()}
    if not caps:
        return None, "", parts
    cap, why = min(caps.values())
    return cap, why, parts


STUCK_MIN_S = 120.0          # a worker loading longer than max(this, 5 x cold start) is stuck


def stuck_after_s(q: QueueSnapshot) -> float:
    return max(STUCK_MIN_S, 5.0 * (q.cold_start_s or 0.0))


def scale_in_blocker(q: QueueSnapshot, window: float, now: float) -> str | None:
    """Why no scale-in may be decided now, or None.

    A worker still loading (its cold start is being paid: removing it, or a loaded one
    beside it, wastes that), or a worker started less than the scale-down window ago
    (each worker's window counts from its own start, so a pool never shrinks within a
    window of growing, whatever the recommendations said before it grew). A worker not
    ready after ``stuck_after_s(q)`` is stuck, not loading: it no longer holds the pool
    (a crash-looping replica must not pin the pool's size forever).
    """
    if q.worker_info is None:
        loading, young = max(0, q.workers - q.ready_workers), 0
    else:
        stuck = stuck_after_s(q)
        loading = sum(1 for w in q.worker_info if not w.ready
                      and (w.started_at is None or now - w.started_at < stuck))
        young = sum(1 for w in q.worker_info if w.started_at is not None and now - w.started_at < window)
    if loading:
        return f"hold: {loading} worker(s) still loading, no scale-in"
    if young:
        return f"hold: {young} worker(s) started less than {window:.0f}s ago, no scale-in"
    return None


def busy_floor(q: QueueSnapshot, config: PolicyConfig) -> int:
    """Fewest workers a scale-in may leave: busy workers (strict), or enough slots for the jobs in flight."""
    if config.keep_busy_workers or not q.slots_per_worker or q.in_flight is None:
        return q.busy_workers
    return min(q.busy_workers, math.ceil(q.in_flight / q.slots_per_worker))


def within_tolerance(workers: float, current: int, tolerance: float) -> int:
    """``ceil(workers)``, or ``current`` when the ratio to it is within the tolerance (HPA ``isWithin``)."""
    if current and abs(workers / current - 1.0) <= tolerance:
        return current
    return math.ceil(workers - 1e-9)


def drain_time_s(q: QueueSnapshot) -> float | None:
    """Seconds the ready workers need to clear the waiting jobs at their measured rate, with
    arrivals going on; None if unknown or if they never would (arrivals outpace them).

    Only the rate measured while the pool was saturated counts: slot turnover at low load
    (jobs alone on a worker are fast) overstates what a worker can do and would hold back
    the scale-up at the start of a burst (dev traces step and spiky: later and longer waits).
    """
    if not q.ready_workers or not q.worker_jobs_per_s or q.arrival_rate is None or q.waiting is None:
        return None
    spare = q.ready_workers * q.worker_jobs_per_s - q.arrival_rate
    return q.waiting / spare if spare > 0 else None


def demand(q: QueueSnapshot, config: PolicyConfig) -> tuple[int, str, dict]:
    """The largest of the three terms, with the reason of the one that won."""
    terms: dict[str, int] = {}
    reasons: dict[str, str] = {}
    backlog = (q.waiting or 0) + (q.in_flight or 0)
    terms["backlog"] = within_tolerance(backlog / config.target_per_worker, q.workers, config.tolerance)
    reasons["backlog"] = (f"backlog {backlog} (waiting {q.waiting} + in flight {q.in_flight}) / "
                          f"{config.target_per_worker:g} per worker -> {terms['backlog']}")
    drain = drain_time_s(q)
    if terms["backlog"] > q.workers and drain is not None and drain < (q.cold_start_s or 0.0):
        terms["backlog"] = q.workers
        reasons["backlog"] = (f"backlog {backlog}: the {q.ready_workers} ready worker(s) clear the {q.waiting} "
                              f"waiting in {drain:.1f}s, before a new one could be ready ({q.cold_start_s:.1f}s)")
    if q.arrival_rate is not None and q.service_time_s is not None and q.slots_per_worker:
        in_service = q.arrival_rate * q.service_time_s
        terms["little"] = within_tolerance(in_service / (config.target_utilisation * q.slots_per_worker),
                                           q.workers, config.tolerance)
        reasons["little"] = (f"arrivals {q.arrival_rate:.1f}/s x {q.service_time_s:.2f}s service / "
                             f"({config.target_utilisation:g} x {q.slots_per_worker} slots) -> {terms['little']}")
    if q.arrival_rate is not None and q.worker_jobs_per_s:
        terms["throughput"] = within_tolerance(
            q.arrival_rate / (config.target_utilisation * q.worker_jobs_per_s), q.workers, config.tolerance)
        reasons["throughput"] = (f"arrivals {q.arrival_rate:.1f}/s / ({config.target_utilisation:g} x "
                                 f"{q.worker_jobs_per_s:.0f}/s a worker served saturated) -> {terms['throughput']}")
    if q.oldest_age_s is not None and q.waiting and q.oldest_age_s >= config.age_trigger * config.slo_wait_s:
        urgent = q.oldest_age_s >= config.slo_wait_s
        # Counted from the workers already serving: the ones still starting are the help on
        # its way, so a long cold start does not add one more worker every tick.
        serving = max(q.ready_workers, q.busy_workers)
        terms["age"] = serving + (2 if urgent else 1)
        reasons["age"] = (f"oldest job waited {q.oldest_age_s:.1f}s (SLO {config.slo_wait_s:g}s) "
                          f"-> {serving} serving +{terms['age'] - serving}")
    best = max(terms, key=lambda k: (terms[k], k == "age"))
    return terms[best], reasons[best], terms


def clamp_up(desired: int, current: int, h: HostSnapshot, config: PolicyConfig, terms: dict,
             notes: list[str]) -> tuple[int, int | None, bool]:
    """``desired`` within max_workers, what the host can hold and the step limit; the host's
    cap and whether it bound."""
    if desired > config.max_workers:
        desired = config.max_workers
        notes.append(f"max {config.max_workers}")
    capacity_limited = False
    cap, why, parts = host_capacity(h, current, config)
    terms.update(parts)
    if cap is not None and desired > max(cap, current):
        desired = max(cap, current)
        capacity_limited = True
        notes.append(f"capacity-limited ({why})")
    if desired > current + config.max_step_up:
        desired = current + config.max_step_up
        notes.append(f"step limit +{config.max_step_up}")
    return desired, cap, capacity_limited


def held_scale_in(q: QueueSnapshot, desired: int, known: bool, recs: tuple, window: float, now: float,
                  notes: list[str]) -> int:
    """A scale-in to ``desired``, held back (with a note) by unknown metrics, the window's
    recommendations, a loading worker or a worker younger than the window."""
    current = q.workers
    if not known:
        notes.append("hold: queue or heartbeat metrics unknown, no scale-in")
        return current
    recent = max(r for _, r in recs)
    if recent > desired:
        desired = min(current, recent)
        notes.append(f"hold: scale-in waits a {window:.0f}s window (recent need {recent})")
    if desired < current:
        blocker = scale_in_blocker(q, window, now)
        if blocker:
            notes.append(blocker)
            return current
    return desired


@dataclass
class Draft:
    """The decision as the steps of :func:`decide` build it: the count, and why."""

    desired: int
    notes: list[str]
    terms: dict

    def raise_to(self, count: int, note: str | None) -> None:
        if count > self.desired:
            self.desired = count
            if note:
                self.notes.append(note)


def floors(d: Draft, q: QueueSnapshot, config: PolicyConfig) -> None:
    """Never below the minimum, nor below the workers the jobs in flight need."""
    d.raise_to(config.min_workers, f"min {config.min_workers}")
    floor = busy_floor(q, config)
    d.terms["floor_busy"] = floor
    d.raise_to(floor, f"{floor} busy worker(s) kept" if config.keep_busy_workers
               else f"jobs in flight need {floor} worker(s)")


def from_zero(d: Draft, q: QueueSnapshot) -> None:
    """A waiting job always gets a worker."""
    if (q.waiting or 0) > 0:
        d.raise_to(1, None)
        if q.workers == 0 and d.desired > 0:
            d.notes.append("scale from zero: a job is waiting")


def stabilise(d: Draft, q: QueueSnapshot, state: PolicyState, config: PolicyConfig, now: float,
              window: float):
    """The scale-down window: a lower count only once every recommendation inside it agrees."""
    known = q.waiting is not None and q.in_flight is not None
    # An unknown metric records the current size, so it cannot open the way to a scale-in later.
    rec = d.desired if known else max(d.desired, q.workers)
    recs = tuple((t, r) for t, r in state.recommendations if now - t < window) + ((now, rec),)
    if d.desired < q.workers:
        d.desired = held_scale_in(q, d.desired, known, recs, window, now, d.notes)
    d.terms["window_s"] = window
    return recs


def decide(snapshot: Snapshot, state: PolicyState, config: PolicyConfig, now: float) -> Decision:
    """The steps in order: demand (the calculator), floors, prewarm, from zero, the capacity
    clamp on the way up, the stabilisation window (with its back-off) on the way down."""
    q, h = snapshot.queue, snapshot.host
    want, reason, terms = demand(q, config)
    d = Draft(want, [], terms)
    floors(d, q, config)
    surges, in_surge = track_surges(state, want, config, now)
    warm = prewarm_target(surges, in_surge, config, now, q.cold_start_s)
    if warm is not None:
        d.raise_to(*warm)
    from_zero(d, q)
    d.desired, cap, capacity_limited = clamp_up(d.desired, q.workers, h, config, d.terms, d.notes)
    level, level_at = backoff_level(state, config, now)
    window = scale_down_window(q, config, level)
    recs = stabilise(d, q, state, config, now, window)
    d.terms["capacity"], d.terms["backoff"] = cap, level
    if in_surge and surges and d.desired > surges[-1][1]:
        surges = surges[:-1] + ((surges[-1][0], d.desired),)
    nxt = PolicyState(recommendations=recs, surges=surges, in_surge=in_surge,
                      **track_scale_ins(state, level, level_at, q.workers, d.desired, q, config, now, d.notes))
    return Decision(q.queue, q.workers, d.desired, "; ".join([reason] + d.notes), capacity_limited, nxt, d.terms)
