"""The reaper thread every worker runs (the autoscaler reaps too, each tick).

A worker is dead when its heartbeat key has expired while it still holds jobs; each pass
puts what it held back at the front of its queues (elastiq/reservations.py: reap_dead)
and tells Flower (``task-retried``), so those jobs are not shown STARTED forever on a
worker that is gone. Any number of reapers may run: each job is restored once.
"""

from __future__ import annotations

import logging
import threading

from elastiq.reservations import Reservations, reap_dead

log = logging.getLogger(__name__)


class Reaper(threading.Thread):
    def __init__(self, store: Reservations, redis, *, interval_s: float, grace_s: float, events=None):
        super().__init__(name="reaper", daemon=True)
        self.store = store
        self.redis = redis
        self.interval_s = interval_s
        self.grace_s = grace_s
        self.on_reaped = events.jobs_requeued if events is not None else None
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.wait(self.interval_s):
            try:
                reap_dead(self.store, self.redis, grace_s=self.grace_s, on_reaped=self.on_reaped)
            except Exception as exc:  # noqa: BLE001 - Redis away: next time
                log.debug("reap pass failed: %s", exc)

    def stop(self) -> None:
        self._halt.set()
