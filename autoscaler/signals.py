"""Signals: read the numbers the policy needs. I/O only; returns plain snapshots.

Per queue:
- waiting: the sum over *all* the queue's Redis lists, Celery's priority sub-lists
  included (KEDA's Redis scaler reads one list);
- in flight: busy slots from live worker heartbeats (messages a worker holds are
  invisible to ``LLEN``, the main reason KEDA misses backlog);
- oldest age: from the ``elastiq_submitted_at`` header of the oldest message;
- arrival rate and service time, smoothed: arrivals = starts + growth of the queue, and
  service time by Little's law (jobs in service / start rate); and what one worker
  serves, measured while the pool was saturated -- ``autoscaler.rates``, the same
  estimator the simulator uses.
Per replica: its start time and readiness (heartbeat ``started_at``/``ready``/
``cold_start_s``; the backend's start time for one not heartbeating yet), so the policy
never scales in while a worker loads or before a worker's own window has passed; the
queue's cold start is the one measured last (the worker that became ready last).
Host: CPUs, idle CPU and available memory (``autoscaler.hoststats``), worker RSS (heartbeats).
Anything that cannot be read is ``None`` (unknown), never zero.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable

from autoscaler.hoststats import HostStats
from autoscaler.rates import SMOOTHING, RateState, update_rates
from autoscaler.snapshot import HostSnapshot, QueueSnapshot, Snapshot, WorkerInfo
from elastiq import contract, reservations
from elastiq.heartbeats import Heartbeat, read_heartbeats

log = logging.getLogger(__name__)


def waiting_and_oldest(redis, queue: str, now: float) -> tuple[int | None, float | None]:
    """Jobs waiting for a worker, and the oldest one's age (0.0 if none).

    Waiting = LLEN over every list of the queue + the jobs held by dead workers and not yet
    reaped (their heartbeat has expired: no live worker will run them until they are back
    in the queue, a few seconds later). Never invisible, so never a reason to scale down.
    """
    waiting, oldest, _ = backlog(redis, queue, now)
    return waiting, oldest


def backlog(redis, queue: str, now: float) -> tuple[int | None, float | None, int | None]:
    """``(waiting, oldest waiting age, in flight)``, read in one atomic step; in flight =
    jobs held by live workers, from their held sets (exact; a heartbeat may be an interval
    behind)."""
    try:
        b = reservations.backlog(redis, queue)
    except Exception as exc:  # noqa: BLE001 - an unreadable queue is unknown, not fatal
        log.warning("cannot read queue %s: %s", queue, exc)
        return None, None, None
    ages = [age for raw in b.oldest_items if raw if (age := _age(raw, now)) is not None]
    if b.dead_oldest_at is not None:
        ages.append(max(0.0, now - b.dead_oldest_at))
    oldest = max(ages) if ages else (0.0 if b.waiting == 0 else None)
    return b.waiting, oldest, b.live


def _age(raw: str, now: float) -> float | None:
    try:
        headers = json.loads(raw).get("headers") or {}
        return max(0.0, now - float(headers[contract.HEADER_SUBMITTED_AT]))
    except (ValueError, KeyError, TypeError, AttributeError):
        return None


class Signals:
    """Reads one snapshot per queue. Keeps the previous reading to smooth rates."""

    def __init__(self, redis, *, smoothing: float = SMOOTHING, host: Callable[[], dict] | None = None):
        self.redis = redis
        self.smoothing = smoothing
        self._host = host or HostStats()
        self._rates: dict[str, RateState | None] = {}
        self._cold_start: dict[str, tuple[float, float] | None] = {}   # (ready at, cold start) measured last

    def heartbeats(self) -> dict[str, Heartbeat] | None:
        try:
            return read_heartbeats(self.redis)
        except Exception as exc:  # noqa: BLE001 - unreadable heartbeats: no workers known this tick
            log.warning("cannot read heartbeats: %s", exc)
            return None

    def snapshot(self, queue: str, worker_ids: list[str], now: float,
                 beats: dict[str, Heartbeat] | None = None,
                 started: dict[str, float | None] | None = None) -> Snapshot:
        """``started``: the backend's start time of each replica, for those not heartbeating yet."""
        beats = self.heartbeats() if beats is None else beats
        # In flight counts every live worker holding the queue's jobs (draining ones still
        # hold real work); ready/busy counts only the replicas the caller manages as active.
        waiting, oldest, in_flight = backlog(self.redis, queue, now)
        on_queue = None if beats is None else [b for b in beats.values() if b.serves(queue)]
        mine = None if beats is None else [b for w, b in beats.items() if w in worker_ids]
        ready = sum(1 for b in mine or [] if b.ready)
        slots = max((b.slots or 0 for b in on_queue or []), default=None) or None
        rates = self._update_rates(queue, now, waiting, in_flight, ready if beats is not None else None, slots)
        self._cold_start[queue] = latest_cold_start(on_queue or [], self._cold_start.get(queue))
        q = QueueSnapshot(
            queue=queue, waiting=waiting, in_flight=in_flight, oldest_age_s=oldest,
            arrival_rate=rates.arrival_rate if rates else None,
            service_time_s=rates.service_time_s if rates else None,
            worker_jobs_per_s=rates.worker_jobs_per_s if rates else None,
            workers=len(worker_ids), ready_workers=ready,
            busy_workers=sum(1 for b in mine or [] if b.busy_on(queue) > 0),
            slots_per_worker=slots,
            cold_start_s=(self._cold_start.get(queue) or (None, None))[1],
            worker_info=None if beats is None else worker_info(worker_ids, beats, started or {}),
        )
        host = self._host()
        rss = [b.rss_mb for b in on_queue or [] if b.rss_mb]
        threads = [b.threads for b in on_queue or [] if b.threads]
        return Snapshot(now, q, HostSnapshot(
            cpus=host.get("cpus"), free_cpu=host.get("free_cpu"),
            free_memory_mb=host.get("free_memory_mb"),
            worker_rss_mb=max(rss) if rss else None,
            threads_per_worker=max(threads) if threads else None))

    def _update_rates(self, queue: str, now: float, waiting: int | None, in_flight: int | None,
                      ready: int | None, slots: int | None) -> RateState | None:
        try:
            started = int(self.redis.hget(contract.stats_key(queue), "started") or 0)
        except Exception:  # noqa: BLE001 - unknown, not fatal
            return None
        state = update_rates(self._rates.get(queue), now, started, waiting, in_flight, self.smoothing, ready, slots)
        self._rates[queue] = state
        return state


def latest_cold_start(beats: list[Heartbeat], known: tuple[float, float] | None = None
                      ) -> tuple[float, float] | None:
    """(ready at, cold start) of the worker that became ready last, of these or ``known``:
    what starting one costs now.

    Not the worst one alive: the first worker of a fresh ``ELASTIQ_HOME`` also exports the
    onnx engine (live: 7.8-16 s, then 0.4 s a worker from the cache), and it lives as long
    as the pool, so the worst would stretch the scale-down window and the drain check for
    good; nor the newest alive, which is that first one again once the others are drained.
    And not counting that export (``engine_build_s``, reported apart): the next worker finds
    the graph cached. Before this, a pool of one -- a first ``make demo`` -- judged a second
    worker by the export and did not start it while the backlog "cleared first".
    """
    timed = [(b.ready_at or 0.0, new_worker_cost(b)) for b in beats if b.cold_start_s]
    if known is not None:
        timed.append(known)
    return max(timed) if timed else None


def new_worker_cost(beat: Heartbeat) -> float:
    """``beat``'s cold start less its one-time engine export (never below 0.05 s)."""
    return max(0.05, (beat.cold_start_s or 0.0) - (beat.engine_build_s or 0.0))


def worker_info(worker_ids: list[str], beats: dict[str, Heartbeat],
                started: dict[str, float | None]) -> tuple[WorkerInfo, ...]:
    """Each replica's start and readiness: its heartbeat, else (still loading) the backend's start."""
    out = []
    for wid in worker_ids:
        hb = beats.get(wid) or Heartbeat(wid)
        at = hb.started_at or started.get(wid)
        out.append(WorkerInfo(wid, None if at is None else float(at), hb.ready, hb.cold_start_s))
    return tuple(out)
