"""What a worker knows about itself: held jobs per queue, free slots, counters, flags.

A *slot* is one job the worker holds (reserved and not yet answered). The fetcher takes
only as many jobs as there are free slots, so an idle worker gets the next job and a busy
one hoards nothing (broker-level fair dispatch). The heartbeat publishes these numbers;
the autoscaler reads in-flight work from them.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from dataclasses import dataclass, field

from elastiq.heartbeats import Heartbeat

# Exit codes a supervisor (the local stack, the autoscaler, compose `restart:`, a test) can
# tell apart from a crash. Both mean "start a replacement"; neither lost a job.
EXIT_HARD_TIME_LIMIT = 70   # a forward pass outlived job_time_limit_s: the worker was wedged
EXIT_RECYCLE = 75           # over ELASTIQ_WORKER_MAX_RSS_MB: drained itself, then exited
EXIT_BROKEN = 71            # one of its own threads died: it gave its jobs back and exited


@dataclass
class WorkerState:
    worker_id: str
    queues: list[str]
    slots: int
    threads: int
    started_at: float = field(default_factory=time.time)
    ready_at: float | None = None
    engine_build_s: float = 0.0    # of ready_at - started_at: engine exports the next worker finds cached
    draining: bool = False         # takes no new jobs (drain key, cancel_consumer, limits)
    stopping: bool = False         # shutting down: the process exits once drained
    cancelled: set = field(default_factory=set)      # queues no longer consumed
    held: dict = field(default_factory=dict)         # queue -> jobs held
    done: int = 0
    failed: int = 0
    lost_ownership: int = 0        # answers refused: the jobs had been handed out again
    stop_reason: str | None = None
    exit_code: int | None = None
    lock: threading.Condition = field(default_factory=threading.Condition, repr=False)
    inflight: dict = field(default_factory=dict, repr=False)   # id(future) -> job, until answered

    # -- jobs handed to a batcher or the suspect runner

    def track(self, job) -> None:
        with self.lock:
            self.inflight[id(job.future)] = job

    def untrack(self, future) -> object | None:
        with self.lock:
            return self.inflight.pop(id(future), None)

    # -- slots

    def free_slots(self) -> int:
        with self.lock:
            return self.slots - sum(self.held.values())

    def wait_for_slot(self, timeout_s: float) -> int:
        """Free slots, waiting up to ``timeout_s`` for one to free up."""
        with self.lock:
            if sum(self.held.values()) >= self.slots:
                self.lock.wait(timeout_s)
            return self.slots - sum(self.held.values())

    def take(self, queue: str, n: int = 1) -> None:
        with self.lock:
            self.held[queue] = self.held.get(queue, 0) + n

    def give_back(self, queue: str, outcome: str | None = None) -> None:
        """One held job is answered (``done``/``failed``) or released (None)."""
        with self.lock:
            self.held[queue] = max(0, self.held.get(queue, 0) - 1)
            if outcome == "done":
                self.done += 1
            elif outcome is not None:
                self.failed += 1
            self.lock.notify_all()

    def busy(self) -> int:
        with self.lock:
            return sum(self.held.values())

    def consuming(self) -> list[str]:
        """The queues to take jobs from now (none while draining or stopping)."""
        if self.draining or self.stopping:
            return []
        return [q for q in self.queues if q not in self.cancelled]

    def drain(self, reason: str) -> bool:
        """Take no new jobs. True the first time."""
        with self.lock:
            if self.stop_reason is None:
                self.stop_reason = reason
            first = not self.draining
            self.draining = True
            self.lock.notify_all()
            return first

    # -- the heartbeat's view

    def snapshot(self, extra: dict | None = None) -> Heartbeat:
        """``extra``: what only a serving worker knows (models, engines, heavy_modules, batching)."""
        with self.lock:
            held = {q: n for q, n in self.held.items() if n}
            done, failed = self.done, self.failed
        return Heartbeat(
            worker_id=self.worker_id, host=socket.gethostname(), pid=os.getpid(),
            queues=tuple(self.queues), slots=self.slots, threads=self.threads,
            busy=sum(held.values()), busy_by_queue=held,
            ready=self.ready_at is not None and not self.draining,
            draining=self.draining, started_at=self.started_at, ready_at=self.ready_at,
            cold_start_s=(self.ready_at - self.started_at) if self.ready_at else None,
            engine_build_s=round(self.engine_build_s, 3),
            rss_mb=rss_mb(), cpu_s=round(sum(os.times()[:2]), 3),
            done=done, failed=failed, at=time.time(),
            stop_reason=self.stop_reason, lost_ownership=self.lost_ownership,
            **(extra or {}),
        )


def rss_mb() -> float | None:
    try:
        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[1])
        return round(pages * os.sysconf("SC_PAGE_SIZE") / 1e6, 1)
    except (OSError, ValueError, IndexError):
        return None
