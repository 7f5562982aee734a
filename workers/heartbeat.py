"""What a worker knows about itself, published to Redis as a heartbeat with a short TTL.

The autoscaler reads in-flight work from these heartbeats: messages a worker holds are
invisible to ``LLEN``. The same thread watches the worker's drain key: when the
autoscaler sets it, the worker stops consuming, finishes what it runs, and says so.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field

from elastiq import contract

log = logging.getLogger(__name__)

# Exit codes a supervisor (the autoscaler's reconcile, compose `restart:`, a test) can tell
# apart from a crash. Both mean "start a replacement"; neither lost a job.
EXIT_HARD_TIME_LIMIT = 70   # a forward pass outlived job_time_limit_s: the worker was wedged
EXIT_RECYCLE = 75           # over ELASTIQ_WORKER_MAX_RSS_MB: drained itself, then exited


@dataclass
class WorkerState:
    worker_id: str
    queues: list[str]
    slots: int
    threads: int
    started_at: float = field(default_factory=time.time)
    ready_at: float | None = None
    draining: bool = False
    busy: dict[str, int] = field(default_factory=dict)      # queue -> running jobs
    done: int = 0
    failed: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    # futures a slot waits on (batcher or suspect run) -> monotonic start; the watchdog's view
    inflight: dict = field(default_factory=dict, repr=False)
    stop_reason: str | None = None
    exit_code: int | None = None

    def track(self, future: Future) -> None:
        key = id(future)
        with self.lock:
            self.inflight[key] = time.monotonic()
        future.add_done_callback(lambda _f: self._untrack(key))

    def _untrack(self, key: int) -> None:
        with self.lock:
            self.inflight.pop(key, None)

    def is_oldest(self, future: Future) -> bool:
        """True if ``future`` started first among the in-flight ones (or is not tracked)."""
        with self.lock:
            mine = self.inflight.get(id(future))
            return mine is None or mine <= min(self.inflight.values())

    def oldest_inflight_s(self, now: float | None = None) -> float:
        now = time.monotonic() if now is None else now
        with self.lock:
            return max((now - t for t in self.inflight.values()), default=0.0)

    def enter(self, queue: str) -> None:
        with self.lock:
            self.busy[queue] = self.busy.get(queue, 0) + 1

    def leave(self, queue: str, ok: bool) -> None:
        with self.lock:
            self.busy[queue] = max(0, self.busy.get(queue, 0) - 1)
            if ok:
                self.done += 1
            else:
                self.failed += 1

    def snapshot(self, extra: dict | None = None) -> dict:
        with self.lock:
            busy = dict(self.busy)
            done, failed = self.done, self.failed
        return {
            "worker_id": self.worker_id, "host": socket.gethostname(), "pid": os.getpid(),
            "queues": self.queues, "slots": self.slots, "threads": self.threads,
            "busy": sum(busy.values()), "busy_by_queue": busy,
            "ready": self.ready_at is not None and not self.draining,
            "draining": self.draining, "started_at": self.started_at, "ready_at": self.ready_at,
            "cold_start_s": (self.ready_at - self.started_at) if self.ready_at else None,
            "rss_mb": _rss_mb(), "done": done, "failed": failed, "at": time.time(),
            "stop_reason": self.stop_reason,
            **(extra or {}),
        }


def _rss_mb() -> float | None:
    try:
        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[1])
        return round(pages * os.sysconf("SC_PAGE_SIZE") / 1e6, 1)
    except (OSError, ValueError, IndexError):
        return None


class Heartbeat(threading.Thread):
    """Publishes the state every ``interval_s``; calls ``on_drain`` once when asked to drain."""

    def __init__(self, redis, state: WorkerState, *, interval_s: float, ttl_s: float,
                 on_drain, extra=lambda: {}):
        super().__init__(name="heartbeat", daemon=True)
        self.redis = redis
        self.state = state
        self.interval_s = interval_s
        self.ttl_ms = int(ttl_s * 1000)
        self.on_drain = on_drain
        self.extra = extra
        self._stop_event = threading.Event()

    def beat(self) -> None:
        key = contract.heartbeat_key(self.state.worker_id)
        if not self.state.draining and self.redis.exists(contract.drain_key(self.state.worker_id)):
            log.info("drain requested: no new jobs, finishing %d running", sum(self.state.busy.values()))
            self.state.draining = True
            self.on_drain()
        self.redis.set(key, json.dumps(self.state.snapshot(self.extra())), px=self.ttl_ms)

    def run(self) -> None:
        while not self._stop_event.is_set():
            try:
                self.beat()
            except Exception as exc:  # Redis away: keep trying, the TTL tells the truth
                log.warning("heartbeat failed: %s", exc)
            self._stop_event.wait(self.interval_s)

    def stop(self) -> None:
        self._stop_event.set()
        try:
            self.redis.delete(contract.heartbeat_key(self.state.worker_id))
        except Exception:
            pass


class Watchdog(threading.Thread):
    """Hard time limit and memory recycling, for a threads pool that has neither.

    - A forward pass older than ``soft_s`` (its slot has already failed the job with
      JobTimeoutError): stop consuming at once, since every later job would queue behind it.
    - Older than ``hard_s``: the worker is wedged. Cold shutdown (kombu puts back the
      messages this worker holds), and if that has not ended the process ``grace_s``
      later, ``os._exit(EXIT_HARD_TIME_LIMIT)``; anything still held comes back after the
      visibility timeout.
    - RSS over ``max_rss_mb``: stop consuming, let the running jobs finish, then a warm
      shutdown with exit code ``EXIT_RECYCLE``. The supervisor starts a fresh worker.
    """

    def __init__(self, state: WorkerState, *, soft_s: float, hard_s: float, on_drain,
                 max_rss_mb: float | None = None, interval_s: float = 0.25, grace_s: float = 5.0,
                 rss=None, kill=os.kill, hard_exit=os._exit):
        super().__init__(name="watchdog", daemon=True)
        self.state = state
        self.soft_s, self.hard_s = soft_s, hard_s
        self.max_rss_mb = max_rss_mb
        self.on_drain = on_drain
        self.interval_s = interval_s
        self.grace_s = grace_s
        self.rss = rss or _rss_mb
        self.kill = kill
        self.hard_exit = hard_exit
        self._stop_event = threading.Event()
        self._signalled_at: float | None = None

    def _drain(self, reason: str) -> None:
        if self.state.stop_reason is None:
            self.state.stop_reason = reason
        if not self.state.draining:
            self.state.draining = True
            try:
                self.on_drain()
            except Exception:  # noqa: BLE001 - draining is best effort; the exit is not
                log.exception("could not cancel the consumers")

    def check(self, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        age = self.state.oldest_inflight_s(now)
        if self._signalled_at is not None:
            return
        if age > self.hard_s:
            log.critical("a forward pass has run %.1fs (hard time limit %.1fs): the worker is "
                         "wedged; exiting with %d so its jobs run elsewhere", age, self.hard_s,
                         EXIT_HARD_TIME_LIMIT)
            self._drain(f"hard time limit: a forward pass ran {age:.1f}s")
            self.state.exit_code = EXIT_HARD_TIME_LIMIT
            self._signalled_at = now
            fallback = threading.Timer(self.grace_s, self.hard_exit, args=(EXIT_HARD_TIME_LIMIT,))
            fallback.daemon = True      # outlives this thread's stop(): the exit is certain
            fallback.start()
            self.kill(os.getpid(), signal.SIGQUIT)       # Celery cold shutdown
            return
        if age > self.soft_s and not self.state.draining:
            log.error("a forward pass has run %.1fs (soft limit %.1fs): no new jobs", age, self.soft_s)
            self._drain(f"soft time limit: a forward pass ran {age:.1f}s")
        if self.max_rss_mb and self.state.ready_at is not None:   # not while the model loads
            rss = self.rss()
            if rss is not None and rss > self.max_rss_mb and self.state.exit_code is None:
                log.warning("RSS %.0f MB is over the limit of %.0f MB: draining, then exiting with %d",
                            rss, self.max_rss_mb, EXIT_RECYCLE)
                self._drain(f"memory: RSS {rss:.0f} MB > {self.max_rss_mb:.0f} MB")
                self.state.exit_code = EXIT_RECYCLE
        if self.state.exit_code == EXIT_RECYCLE and self._signalled_at is None:
            with self.state.lock:
                busy = sum(self.state.busy.values()) + len(self.state.inflight)
            if busy == 0:
                log.warning("drained: warm shutdown for recycling")
                self._signalled_at = now
                self.kill(os.getpid(), signal.SIGTERM)

    def run(self) -> None:
        while not self._stop_event.wait(self.interval_s):
            try:
                self.check()
            except Exception:  # noqa: BLE001 - the watchdog must not die
                log.exception("watchdog check failed")

    def stop(self) -> None:
        self._stop_event.set()
