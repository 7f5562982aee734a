"""Time limits and memory recycling for a worker whose forward passes cannot be interrupted.

- A forward pass older than ``soft_s``: its jobs fail with JobTimeoutError and are
  dead-lettered (a hung or too slow input is not retried); the jobs queued behind it go
  back to the front of their queues for other workers; this worker takes no new jobs.
- Older than ``hard_s``: the worker is wedged: exit with ``EXIT_HARD_TIME_LIMIT``. Anything
  it still held comes back when its heartbeat expires.
- RSS over ``max_rss_mb``: take no new jobs, finish the held ones, then exit with
  ``EXIT_RECYCLE``; the supervisor starts a fresh worker.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable

from elastiq.errors import JobTimeoutError
from workers.state import EXIT_HARD_TIME_LIMIT, EXIT_RECYCLE, WorkerState, rss_mb

log = logging.getLogger(__name__)


class Watchdog(threading.Thread):
    def __init__(self, state: WorkerState, executors: list, *, soft_s: float, hard_s: float,
                 give_back: Callable[[list], None], stop: Callable[[int], None],
                 max_rss_mb: float | None = None, interval_s: float = 0.25, rss=rss_mb,
                 hard_exit=os._exit, monotonic=time.monotonic):
        """``executors`` have ``current``, ``current_since``, ``fail_current(exc)`` and
        ``take_pending()`` (Batcher, SuspectRunner); ``give_back(futures)`` releases the held
        jobs of those futures; ``stop(code)`` begins a graceful exit."""
        super().__init__(name="watchdog", daemon=True)
        self.state = state
        self.executors = executors
        self.soft_s, self.hard_s = soft_s, hard_s
        self.give_back = give_back
        self.stop_worker = stop
        self.max_rss_mb = max_rss_mb
        self.interval_s = interval_s
        self.rss = rss
        self.hard_exit = hard_exit
        self.monotonic = monotonic
        self._halt = threading.Event()
        self._timed_out: set[int] = set()

    def oldest_pass_s(self, now: float) -> float:
        return max((now - e.current_since for e in self.executors if e.current_since is not None),
                   default=0.0)

    def check(self, now: float | None = None) -> None:
        now = self.monotonic() if now is None else now
        age = self.oldest_pass_s(now)
        if age > self.hard_s:
            log.critical("a forward pass has run %.1fs (hard time limit %.1fs): the worker is wedged; "
                         "exiting with %d", age, self.hard_s, EXIT_HARD_TIME_LIMIT)
            self.state.exit_code = EXIT_HARD_TIME_LIMIT
            self.hard_exit(EXIT_HARD_TIME_LIMIT)
            return
        if age > self.soft_s:
            self._soft_limit(now)
        self._memory()

    def _soft_limit(self, now: float) -> None:
        stuck = [e for e in self.executors if e.current_since is not None and now - e.current_since > self.soft_s
                 and id(e.current) not in self._timed_out]
        if not stuck:
            return
        if self.state.drain(f"soft time limit: a forward pass ran over {self.soft_s:.0f}s"):
            log.error("a forward pass has run over the soft limit (%.0fs): its jobs fail, the jobs "
                      "behind it go back to the queue, no new jobs", self.soft_s)
        for e in stuck:
            self._timed_out.add(id(e.current))
            e.fail_current(JobTimeoutError(
                f"inference took longer than {self.soft_s:g}s (soft time limit); a hung or too slow "
                "input is not retried"))
        pending = [p for e in self.executors for p in e.take_pending()]
        if pending:
            self.give_back(pending)

    def _memory(self) -> None:
        if not self.max_rss_mb or self.state.ready_at is None:    # not while the model loads
            return
        if self.state.exit_code is None:
            rss = self.rss()
            if rss is not None and rss > self.max_rss_mb:
                log.warning("RSS %.0f MB is over the limit of %.0f MB: draining, then exiting with %d",
                            rss, self.max_rss_mb, EXIT_RECYCLE)
                self.state.drain(f"memory: RSS {rss:.0f} MB > {self.max_rss_mb:.0f} MB")
                self.state.exit_code = EXIT_RECYCLE
        if self.state.exit_code == EXIT_RECYCLE and self.state.busy() == 0 and not self.state.stopping:
            log.warning("drained: exiting for recycling")
            self.stop_worker(EXIT_RECYCLE)

    def run(self) -> None:
        while not self._halt.wait(self.interval_s):
            try:
                self.check()
            except Exception:  # the watchdog must not die
                log.exception("watchdog check failed")

    def stop(self) -> None:
        self._halt.set()
