"""Send again a job whose delivery was lost: the one gap acks-late leaves on Redis.

kombu's Redis transport takes a message with ``BRPOP`` and only then writes it to the
``unacked`` hash. A worker killed between the two takes the message with it: it is in no
queue list, and the visibility-timeout restore cannot bring it back because it was never
in ``unacked`` (docs/reliability.md, found in scenario 07a).

The client records each job it sends in ``elastiq:pending:<queue>`` (job id -> time
published) and keeps the payload in the job's record; a worker removes both when it
starts the job. So a job is *lost in delivery* when it is

1. still pending (never started) ``grace_s`` after it was published;
2. in no queue list: every message still waiting was published more than ``grace_s``
   after it (queues are FIFO per priority list; the margin absorbs clients whose
   publishes interleave). A message restored to the front of a list only makes this
   test more careful, never less;
3. in no worker's ``unacked`` set -- and still absent ``confirm_s`` later (a live worker
   writes ``unacked`` within milliseconds of its BRPOP).

Such a job is sent again with the same id and payload (``republished`` counts it in the
record). One worker sweeps at a time (a Redis lock); it costs a few Redis calls per queue
per ``interval_s`` and nothing on the job path but a ZADD/ZREM in pipelines that exist.
"""

from __future__ import annotations

import json
import logging
import threading
import time

from elastiq import contract

log = logging.getLogger(__name__)

BATCH = 500   # candidates looked at per queue per sweep


class LostJobSweeper(threading.Thread):
    def __init__(self, redis, send, queues: list[str], *, owner: str, grace_s: float,
                 interval_s: float, confirm_s: float = 1.0, clock=time.time, sleep=time.sleep):
        """``send(job_id, queue, payload, headers)`` publishes one job message."""
        super().__init__(name="lost-job-sweeper", daemon=True)
        self.redis = redis
        self.send = send
        self.queues = queues
        self.owner = owner
        self.grace_s = grace_s
        self.interval_s = interval_s
        self.confirm_s = confirm_s
        self.clock = clock
        self.sleep = sleep
        self.republished = 0
        self._halt = threading.Event()

    # -- one sweep

    def sweep_once(self) -> list[str]:
        """Republish the jobs lost in delivery; returns their ids (empty if another worker
        holds the sweep lock)."""
        lock_s = max(1, int(self.interval_s + self.confirm_s + 5))
        if not self.redis.set(contract.SWEEP_LOCK_KEY, self.owner, nx=True, ex=lock_s):
            return []
        sent: list[str] = []
        try:
            for queue in self.queues:
                sent += self._sweep_queue(queue)
        finally:
            if self.redis.get(contract.SWEEP_LOCK_KEY) == self.owner:
                self.redis.delete(contract.SWEEP_LOCK_KEY)
        return sent

    def _sweep_queue(self, queue: str) -> list[str]:
        now = self.clock()
        pending = contract.pending_key(queue)
        candidates = self.redis.zrangebyscore(pending, "-inf", now - self.grace_s, start=0, num=BATCH,
                                              withscores=True)
        if not candidates:
            return []
        oldest = self._oldest_waiting(queue)
        if oldest is not None:
            candidates = [(i, t) for i, t in candidates if t + self.grace_s < oldest]
        suspects = self._unheld(queue, [i for i, _ in candidates])
        if suspects:
            self.sleep(self.confirm_s)
            suspects = self._unheld(queue, suspects)
        sent = []
        for job_id in suspects:
            if self._republish(queue, job_id):
                sent.append(job_id)
        return sent

    def _oldest_waiting(self, queue: str) -> float | None:
        """Earliest publish time among the oldest message of each priority list."""
        pipe = self.redis.pipeline(transaction=False)
        for key in contract.queue_keys(queue):
            pipe.lindex(key, -1)
        times = []
        for raw in pipe.execute():
            if raw is None:
                continue
            try:
                t = contract.published_at(json.loads(raw).get("headers") or {})
            except (ValueError, AttributeError):
                t = None
            # a message we cannot date: assume it may be old, so nothing is swept this time
            times.append(t if t is not None else float("-inf"))
        return min(times) if times else None

    def _unheld(self, queue: str, ids: list[str]) -> list[str]:
        """The ids still pending, never started, and not in any worker's unacked set."""
        if not ids:
            return []
        held = set()
        for raw in self.redis.hvals(contract.UNACKED_KEY):
            try:
                held.add(json.loads(raw)[0]["headers"]["id"])
            except (ValueError, LookupError, TypeError):
                continue
        pipe = self.redis.pipeline(transaction=False)
        for job_id in ids:
            pipe.hmget(contract.job_key(job_id), "state", "deliveries", "payload")
        lost, gone = [], []
        for job_id, (state, deliveries, payload) in zip(ids, pipe.execute()):
            if state != contract.QUEUED or int(deliveries or 0) > 0 or payload is None:
                gone.append(job_id)          # started, finished, or expired: not ours any more
            elif job_id not in held:
                lost.append(job_id)
        if gone:
            self.redis.zrem(contract.pending_key(queue), *gone)
        return lost

    def _republish(self, queue: str, job_id: str) -> bool:
        key = contract.job_key(job_id)
        raw = self.redis.hget(key, "payload")
        if raw is None:
            return False
        now = self.clock()
        payload = json.loads(raw)
        headers = {**(payload.get("headers") or {}), contract.HEADER_REPUBLISHED_AT: now}
        # re-date it first: if the send fails, it is tried again one grace later
        self.redis.zadd(contract.pending_key(queue), {job_id: now})
        self.send(job_id, queue, payload, headers)
        self.redis.hincrby(key, "republished", 1)
        self.republished += 1
        log.warning("job %s on %s was lost in delivery (no list, no unacked, never started): sent again",
                    job_id, queue)
        return True

    # -- the thread

    def run(self) -> None:
        while not self._halt.wait(self.interval_s):
            try:
                self.sweep_once()
            except Exception as exc:  # noqa: BLE001 - Redis away: try again next time
                log.warning("lost-job sweep failed: %s", exc)

    def stop(self) -> None:
        self._halt.set()


def celery_sender(app):
    """``send`` for :class:`LostJobSweeper`: the same message the client sends."""

    def send(job_id: str, queue: str, payload: dict, headers: dict) -> None:
        kwargs = payload["kwargs"]
        app.send_task(contract.TASK_NAME, kwargs=kwargs, task_id=job_id, queue=queue, routing_key=queue,
                      priority=payload.get("priority"), headers=headers, argsrepr="()",
                      kwargsrepr=f"{{'model': {kwargs.get('model')!r}, 'inputs': <republished>}}")

    return send
