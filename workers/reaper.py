"""Give a dead worker's jobs back: a thread in every worker (the autoscaler reaps too).

A worker is dead when its heartbeat key has expired while it still holds jobs
(elastiq/reservations.py). Every ``interval_s`` the reaper restores what such workers held
to the front of their queues, wakes the consumers, and says so (log, Celery task events
so Flower does not show those jobs STARTED forever). Any number of reapers may run: the
script restores each job once.

After Redis itself restarts, every heartbeat may have expired while it was down; live
workers beat again within an interval. So nothing is reaped until Redis has been up for a
heartbeat TTL: a live worker is never robbed because the broker blinked.
"""

from __future__ import annotations

import logging
import threading

from elastiq import contract
from elastiq.reservations import Reservations

log = logging.getLogger(__name__)


def reap_dead(store: Reservations, redis, *, grace_s: float, events=None) -> dict[str, list[str]]:
    """One pass: ``{dead worker: job ids restored}``."""
    if int(redis.info("server").get("uptime_in_seconds", 0)) < grace_s:
        return {}
    restored = {}
    for worker in store.dead_holders():
        ids = store.reap(worker)
        if not ids:
            continue
        restored[worker] = ids
        log.warning("worker %s is gone (heartbeat expired): %d held job(s) back at the front of "
                    "their queues", worker, len(ids))
        if events is not None:
            events.jobs_requeued(worker, [i for i in ids if i])
    if restored:
        pipe = redis.pipeline(transaction=False)
        for q in {q for q in _queues_of(redis)}:
            pipe.publish(contract.wake_channel(q), "reaped")
        pipe.execute()
    return restored


def _queues_of(redis) -> set[str]:
    """Every queue with waiting jobs (wake them all: a reap is rare)."""
    queues = set()
    for key in redis.scan_iter(match=contract.QUEUE_PREFIX + "*", count=500):
        if redis.type(key) == "list":
            queues.add(contract.queue_of_list(key))
    return queues


class Reaper(threading.Thread):
    def __init__(self, store: Reservations, redis, *, interval_s: float, grace_s: float, events=None):
        super().__init__(name="reaper", daemon=True)
        self.store = store
        self.redis = redis
        self.interval_s = interval_s
        self.grace_s = grace_s
        self.events = events
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.wait(self.interval_s):
            try:
                reap_dead(self.store, self.redis, grace_s=self.grace_s, events=self.events)
            except Exception as exc:  # noqa: BLE001 - Redis away: next time
                log.debug("reap pass failed: %s", exc)

    def stop(self) -> None:
        self._halt.set()
