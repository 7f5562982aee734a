"""Redelivered jobs run alone, one at a time, so a poison input is caught by name.

A job delivered again was held by a worker that died. It may be what killed it. It runs
in a forward pass of its own, with ``alone=<worker>`` in its record exactly while it runs:
if this worker dies now, the next delivery knows which job did it (workers/jobs.py).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from concurrent.futures import Future

from elastiq import contract, jobrecord
from elastiq.errors import JobExpiredError
from workers.batcher import BatchInfo, _resolve

log = logging.getLogger(__name__)


class SuspectRunner(threading.Thread):
    def __init__(self, redis, worker_id: str, runtimes: dict, clock=time.time):
        super().__init__(name="suspects", daemon=True)
        self.redis = redis
        self.worker_id = worker_id
        self.runtimes = runtimes
        self.clock = clock
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self.current: list = []              # the watchdog's view, as Batcher's
        self.current_since: float | None = None

    def submit(self, job_id: str, model: str, inputs: list[str], deadline: float | None) -> Future:
        future: Future = Future()
        self._queue.put((future, job_id, model, inputs, deadline))
        return future

    def take_pending(self) -> list[Future]:
        got = []
        while True:
            try:
                got.append(self._queue.get_nowait()[0])
            except queue.Empty:
                return got

    def fail_current(self, exc: BaseException) -> list[Future]:
        failed = list(self.current)
        for f in failed:
            _resolve(f, exc=exc)
        return failed

    def run(self) -> None:
        while True:
            future, job_id, model, inputs, deadline = self._queue.get()
            self.current, self.current_since = [future], time.monotonic()
            try:
                _resolve(future, result=self._run_alone(job_id, model, inputs, deadline))
            except BaseException as exc:  # noqa: BLE001 - handed to the committer
                _resolve(future, exc=exc)
            finally:
                self.current, self.current_since = [], None

    def _run_alone(self, job_id: str, model: str, inputs: list[str], deadline: float | None):
        if deadline is not None and self.clock() > deadline:
            raise JobExpiredError("deadline passed before the job could run; not run")
        runtime = self.runtimes[model]
        key = contract.job_key(job_id)
        self.redis.hset(key, jobrecord.ALONE, self.worker_id)
        try:
            wall, t0 = time.time(), time.perf_counter()
            outs = runtime.forward(runtime.encode(list(inputs)))
            info = BatchInfo(batch_size=len(inputs), inference_ms=(time.perf_counter() - t0) * 1000,
                             started_at=wall, finished_mono=time.monotonic())
        finally:
            self.redis.hdel(key, jobrecord.ALONE)
        return list(outs), info
