"""The control loop: sense -> decide -> act -> record, once per tick, per scaling group.

``reconcile_once(now)`` does one pass and never sleeps, so tests drive it tick by tick;
``run()`` loops it with an injected clock and sleep. The controller keeps no truth of its
own: replicas come from the backend and readiness from heartbeats each tick, so a
restarted autoscaler resumes from what it observes.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from autoscaler import drain
from autoscaler.backends.base import Backend, BackendError, Replica
from autoscaler.policy import Decision, PolicyConfig, PolicyState, decide
from autoscaler.signals import Signals
from elastiq import contract, redismemory
from elastiq.decisions import DecisionRow

log = logging.getLogger("elastiq.autoscaler")


@dataclass
class GroupState:
    policy: PolicyState = field(default_factory=PolicyState)
    draining: dict[str, tuple[Replica, float]] = field(default_factory=dict)
    failures: int = 0
    backoff_until: float = 0.0
    last_error: str | None = None


class Controller:
    def __init__(self, *, redis, backend: Backend, groups: list[str], config: PolicyConfig,
                 signals: Signals | None = None, drain_timeout_s: float = 300.0,
                 dry_run: bool = False, record: Callable[[dict], None] | None = None,
                 metrics=None, max_backoff_s: float = 60.0, reap: Callable[[], object] | None = None):
        self.redis = redis
        self.backend = backend
        self.groups = list(groups)
        self.config = config
        # A backend whose workers run on other hosts (swarm, none) gets no cap from this
        # host's free memory and CPUs: the orchestrator places them.
        local = getattr(backend, "local_host", True)
        self.signals = signals or Signals(redis, host=None if local else (lambda: {}))
        self.drain_timeout_s = drain_timeout_s
        self.dry_run = dry_run
        self.record = record or (lambda row: None)
        self.metrics = metrics
        self.max_backoff_s = max_backoff_s
        self.reap = reap
        self.state: dict[str, GroupState] = {g: GroupState() for g in self.groups}
        self.redis_memory = redismemory.FullnessWatch()

    def start_workers(self, n: int) -> None:
        """Bring each group up to ``n`` replicas (``elastiq up --workers N --autoscale``); the
        policy keeps them through their loading and their scale-down window."""
        for group in self.groups:
            for _ in range(max(0, n - len(self.backend.list(group)))):
                log.info("started %s", self.backend.start(group).worker_id)

    def reconcile_once(self, now: float) -> list[dict]:
        if self.reap is not None:        # dead workers' jobs back first (any reaper will do)
            try:
                self.reap()
            except Exception as exc:  # noqa: BLE001 - logged; the loop goes on
                log.warning("reap pass failed: %s", exc)
        if self.redis_memory.due(now):
            self._watch_redis_memory()
        beats = self.signals.heartbeats()
        return [self._reconcile_group(g, now, beats) for g in self.groups]

    def _watch_redis_memory(self) -> None:
        """Log once when Redis nears maxmemory (new jobs are refused at it), once when it is clear."""
        try:
            m = redismemory.memory(self.redis)
        except Exception as exc:  # noqa: BLE001 - a missed reading is not worth a tick
            log.debug("redis memory not read: %s", exc)
            return
        if self.metrics is not None:
            self.metrics.observe_redis(m["used_fraction"])
        crossed = self.redis_memory.update(m["used_fraction"])
        if crossed == "full":
            log.warning(redismemory.advice(m))
        elif crossed == "clear":
            log.info("Redis is %.0f%% full again (%.0f of %.0f MB)", 100 * m["used_fraction"], m["used_mb"],
                     m["maxmemory_mb"])

    def run(self, *, interval_s: float = 1.0, clock: Callable[[], float] = time.time,
            sleep: Callable[[float], None] = time.sleep, should_stop: Callable[[], bool] = lambda: False) -> None:
        while not should_stop():
            started = clock()
            try:
                self.reconcile_once(started)
            except Exception:   # one bad tick must not end the loop
                log.exception("reconcile failed")
            sleep(max(0.0, interval_s - (clock() - started)))

    # -- one group

    def _reconcile_group(self, group: str, now: float, beats: dict | None) -> dict:
        gs = self.state[group]
        queue = contract.queue_for(group)
        if now < gs.backoff_until:
            return self._row(now, queue, None, None, f"backing off after error: {gs.last_error}", "hold")
        try:
            replicas = self.backend.list(group)
            stopped = self._progress_drains(gs, replicas, beats, now)
            active = [r for r in replicas if r.worker_id not in gs.draining and r.worker_id not in stopped]
            snap = self.signals.snapshot(queue, [r.worker_id for r in active], now, beats,
                                         {r.worker_id: r.started_at for r in active})
            decision = decide(snap, gs.policy, self.config, now)
            gs.policy = decision.state
            action = self._act(gs, group, active, beats or {}, decision, now)
        except BackendError as exc:
            return self._failed(gs, queue, now, exc)
        gs.failures, gs.last_error = 0, None
        if decision.desired != decision.current:
            log.info("%s: %d -> %d workers (%s)%s", queue, decision.current, decision.desired,
                     decision.reason, " [dry run]" if self.dry_run else "")
        return self._row(now, queue, snap, decision, decision.reason, action, len(gs.draining))

    def _progress_drains(self, gs: GroupState, replicas: list[Replica], beats: dict | None,
                         now: float) -> set[str]:
        """Stop the draining replicas that are done; returns the ids stopped now."""
        stopped: set[str] = set()
        alive = {r.worker_id for r in replicas}
        for r in replicas:   # adopt drains begun before a restart of this autoscaler
            hb = beats.get(r.worker_id) if beats else None
            if hb is not None and hb.draining and r.worker_id not in gs.draining:
                gs.draining[r.worker_id] = (r, now)
        for wid, (replica, asked_at) in list(gs.draining.items()):
            if wid not in alive:
                del gs.draining[wid]
                drain.clear_drain(self.redis, wid)
                continue
            if beats is None:            # heartbeats unreadable: do not guess
                continue
            status = drain.drain_status(beats.get(wid), asked_at, now, self.drain_timeout_s)
            if status.done:
                log.info("stopping %s: %s", wid, status.reason)
                self.backend.stop(replica)
                drain.clear_drain(self.redis, wid)
                del gs.draining[wid]
                stopped.add(wid)
        return stopped

    def _act(self, gs: GroupState, group: str, active: list[Replica], beats: dict,
             decision: Decision, now: float) -> str:
        delta = decision.desired - len(active)
        if self.dry_run or delta == 0:
            return "hold" if delta == 0 else ("up" if delta > 0 else "down") + " (dry run)"
        if delta > 0:
            for _ in range(delta):
                replica = self.backend.start(group)
                log.info("started %s", replica.worker_id)
            return f"up +{delta}"
        # A backend that cannot choose which replica goes (swarm) narrows the choice.
        pick = getattr(self.backend, "pick_victims", None) or drain.pick_victims
        for victim in pick(active, beats, -delta):
            drain.request_drain(self.redis, victim.worker_id)
            gs.draining[victim.worker_id] = (victim, now)
            log.info("draining %s", victim.worker_id)
        return f"down -{-delta}"

    def _failed(self, gs: GroupState, queue: str, now: float, exc: Exception) -> dict:
        gs.failures += 1
        wait = min(self.max_backoff_s, 2.0 ** gs.failures)
        gs.backoff_until = now + wait
        gs.last_error = str(exc)[:200]
        log.error("%s: backend error (%d in a row), backing off %.0fs: %s", queue, gs.failures, wait, exc)
        return self._row(now, queue, None, None, f"backend error: {gs.last_error}", "error")

    def _row(self, now, queue, snap, decision, reason, action, draining=0) -> dict:
        """The decision row (elastiq/decisions.py), as the dict every consumer gets."""
        q = snap.queue if snap else None
        row = DecisionRow(
            t=round(now, 3), queue=queue,
            current=decision.current if decision else None,
            desired=decision.desired if decision else None,
            reason=reason, action=action,
            capacity_limited=decision.capacity_limited if decision else False,
            waiting=q.waiting if q else None, in_flight=q.in_flight if q else None,
            oldest_age_s=None if not q or q.oldest_age_s is None else round(q.oldest_age_s, 3),
            ready=q.ready_workers if q else None, draining=draining,
            arrival_rate=None if not q or q.arrival_rate is None else round(q.arrival_rate, 3),
            service_time_s=None if not q or q.service_time_s is None else round(q.service_time_s, 4),
            window_s=decision.terms.get("window_s") if decision else None,
        ).to_dict()
        self.record(row)
        if self.metrics is not None:
            self.metrics.observe(row)
        return row
