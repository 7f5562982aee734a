"""Take jobs: as many as there are free slots, in one reservation round trip.

The loop: wait for a free slot; reserve up to the free slots from the queues this worker
consumes (highest priority first, round-robin over queues: elastiq/reservations.py);
prepare each item (workers/jobs.py) and route it -- a first delivery to the model's
micro-batcher, a redelivered one to the suspect runner, a refused or invalid one straight
to the committer. With nothing to take, it waits on the queues' wake channel (our client
publishes there when it queues jobs) for at most ``idle_poll_s``, so jobs from a plain
Celery client, which does not publish, are still picked up within that time.
"""

from __future__ import annotations

import logging
import threading
import time

from elastiq import contract
from elastiq.reservations import Outcome, Reservations
from workers import jobs
from workers.state import WorkerState

log = logging.getLogger(__name__)


class Fetcher(threading.Thread):
    def __init__(self, store: Reservations, state: WorkerState, ctx: jobs.Context, *, batchers: dict,
                 suspects, committer, redis, events=None, idle_poll_s: float = 0.1):
        super().__init__(name="fetcher", daemon=True)
        self.store = store
        self.state = state
        self.ctx = ctx
        self.batchers = batchers
        self.suspects = suspects
        self.committer = committer
        self.redis = redis
        self.events = events
        self.idle_poll_s = idle_poll_s
        self._seq = 0
        self._turn = 0
        self._pubsub = None
        self._halt = threading.Event()

    def stop(self) -> None:
        self._halt.set()
        with self.state.lock:
            self.state.lock.notify_all()

    def run(self) -> None:
        backoff = 0.1
        while not self._halt.is_set():
            try:
                if self.fetch_once() == 0:
                    self._idle()
                backoff = 0.1
            except Exception as exc:  # noqa: BLE001 - Redis away: try again, slower
                log.warning("cannot take jobs: %s (retrying in %.1fs)", exc, backoff)
                self._drop_pubsub()
                self._halt.wait(backoff)
                backoff = min(2.0, backoff * 2)
        self._drop_pubsub()

    def fetch_once(self) -> int:
        """One round: returns how many jobs were taken (-1: none could be asked for)."""
        free = self.state.wait_for_slot(0.5)
        queues = self.state.consuming()
        if free <= 0 or not queues or self._halt.is_set():
            return -1
        self._turn = (self._turn + 1) % len(queues)
        order = queues[self._turn:] + queues[:self._turn]
        held = self.store.reserve(self.state.worker_id, order, free, time.time(), self._seq)
        if held is None:          # no live heartbeat yet (or Redis just came back): wait for it
            return -1
        self._seq += len(held)
        for item in held:
            queue = contract.queue_of_list(item.list_key)
            self.state.take(queue)
            self._route(item, queue)
        if held and self.events is not None and self.events.tasks:
            self.events.flush()          # received + started: one task.multi per reservation round
        return len(held)

    def _route(self, item, queue: str) -> None:
        prepared = jobs.prepare(item, queue, self.ctx)
        if isinstance(prepared, Outcome):
            self.committer.answer(prepared)
            return
        job = prepared
        if self.events is not None:
            self.events.job_received(job)
        if job.suspect:
            job.future = self.suspects.submit(job.job_id, job.model, job.inputs, job.deadline)
        else:
            job.future = self.batchers[job.model].submit(job.inputs, job.deadline)
        self.state.track(job)
        job.future.add_done_callback(lambda _f, j=job: self.committer.finished(j))

    # -- waiting for work

    def _idle(self) -> None:
        queues = self.state.consuming()
        if not queues:
            self._halt.wait(self.idle_poll_s)
            return
        if self._pubsub is None:
            self._pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
            self._pubsub.subscribe(*[contract.wake_channel(q) for q in self.state.queues])
        message = self._pubsub.get_message(timeout=self.idle_poll_s)
        while message is not None:                  # one wake is enough: drop the rest
            message = self._pubsub.get_message(timeout=0)

    def _drop_pubsub(self) -> None:
        if self._pubsub is not None:
            try:
                self._pubsub.close()
            except Exception:  # noqa: BLE001 - closing a broken connection, best effort
                pass
            self._pubsub = None
