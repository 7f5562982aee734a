"""Answer finished jobs: postprocess, encode, and write every ready answer in one step.

Jobs arrive here when their future resolves (in the batcher's thread, which goes straight
on to its next forward pass). The committer takes everything that is ready, turns it into
Celery result records and commits them with one reservation-script call
(:meth:`elastiq.reservations.Reservations.commit`): results stored and published, records
marked, the jobs forgotten from this worker's held set -- but only jobs it still holds.

If Redis is away, the same answers are retried with backoff; nothing is dropped. A job a
runtime asks to *hold* its slot a while after its forward pass (the debug model's
``sleep_ms``: jobs of one pass overlap, as they would in parallel slots) waits in a small
heap without blocking the others.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import queue
import threading
import time

from elastiq import contract
from elastiq.errors import ElastiqError, JobExpiredError, JobFailedError, JobTimeoutError
from elastiq.reservations import Outcome, Reservations
from workers import results
from workers.deadletter import dead_letter
from workers.jobs import Job
from workers.state import WorkerState

log = logging.getLogger(__name__)


class Committer(threading.Thread):
    def __init__(self, store: Reservations, state: WorkerState, runtimes: dict, redis, *,
                 events=None, clock=time.time, monotonic=time.monotonic):
        super().__init__(name="committer", daemon=True)
        self.store = store
        self.state = state
        self.runtimes = runtimes
        self.redis = redis
        self.events = events
        self.clock = clock
        self.monotonic = monotonic
        self._inbox: queue.SimpleQueue = queue.SimpleQueue()
        self._later: list = []                   # heap of (due, n, job)
        self._n = itertools.count()
        self._halt = threading.Event()

    # -- feeding

    def answer(self, outcome: Outcome) -> None:
        """An answer decided without running anything (refused, invalid)."""
        self._inbox.put(outcome)

    def finished(self, job: Job) -> None:
        """``job.future`` has resolved (a done-callback calls this)."""
        self._inbox.put(job)

    # -- the thread

    def run(self) -> None:
        while True:
            batch = self._collect()
            if batch:
                self._commit_with_retry(batch)
            elif self._halt.is_set() and not self._later:
                return

    def stop(self, timeout_s: float = 30.0) -> None:
        """Commit what is queued, then end (called once nothing new can arrive)."""
        self._halt.set()
        self._inbox.put(None)
        self.join(timeout_s)

    def _collect(self) -> list[tuple[Outcome, Job | None]]:
        wait = 0.5 if not self._later else max(0.0, self._later[0][0] - self.monotonic())
        items = []
        try:
            items.append(self._inbox.get(timeout=wait))
            while True:
                items.append(self._inbox.get_nowait())
        except queue.Empty:
            pass
        now = self.monotonic()
        while self._later and self._later[0][0] <= now:
            items.append(heapq.heappop(self._later)[2])
        batch = []
        for item in items:
            if isinstance(item, Outcome):
                batch.append((item, None))
            elif isinstance(item, Job):
                outcome = self._outcome(item, now)
                if outcome is not None:
                    batch.append((outcome, item))
        return batch

    def _outcome(self, job: Job, now: float) -> Outcome | None:
        exc = job.future.exception()
        if exc is not None:
            return self._failure(job, exc)
        raw, info = job.future.result()
        runtime = self.runtimes[job.model]
        hold = getattr(runtime, "hold_s", None)
        due = (info.finished_mono or now) + (hold(job.params) if hold else 0.0)
        if due > now:
            heapq.heappush(self._later, (due, next(self._n), job))
            return None
        try:
            outputs = runtime.postprocess(raw, job.params)
        except Exception as err:  # noqa: BLE001 - a postprocess error fails this job only
            return self._failure(job, err)
        started = info.started_at or job.reserved_at
        value = {"outputs": outputs, "timings": {
            "queue_wait_ms": round((started - job.submitted_at) * 1000, 3) if job.submitted_at else None,
            "inference_ms": round(info.inference_ms, 3), "batch_size": info.batch_size,
            "worker": self.state.worker_id, "started_at": started, "finished_at": self.clock(),
            "reserved_at": job.reserved_at, "deliveries": job.deliveries}}
        version_of = getattr(runtime, "version_of", None)
        if version_of is not None:                # a published model version (workers/versioned.py)
            value["model_version"] = version_of(raw)
        return Outcome(job.held.field, job.job_id, results.success(job.job_id, value), contract.DONE, job.queue)

    def _failure(self, job: Job, exc: BaseException) -> Outcome:
        state = contract.FAILED
        if isinstance(exc, JobTimeoutError):
            state = contract.DEAD            # a hung or too slow input is not retried
            try:
                dead_letter(self.redis, job.job_id, job.model, str(exc), job.headers)
            except Exception:  # the typed error still reaches the client
                log.exception("could not dead-letter %s", job.job_id)
        elif not isinstance(exc, (ElastiqError, JobExpiredError)):
            log.error("job %s failed: %s: %s", job.job_id, type(exc).__name__, exc)
            exc = JobFailedError(f"{type(exc).__name__}: {exc}")
        return Outcome(job.held.field, job.job_id, results.failure(job.job_id, exc), state, job.queue)

    def _commit_with_retry(self, batch: list[tuple[Outcome, Job | None]]) -> None:
        delay = 0.1
        while True:
            try:
                committed = self.store.commit(self.state.worker_id, [o for o, _ in batch])
                break
            except Exception as exc:  # noqa: BLE001 - Redis away: the answers wait, never dropped
                log.warning("cannot commit %d answer(s), retrying in %.1fs: %s", len(batch), delay, exc)
                time.sleep(delay)
                delay = min(2.0, delay * 2)
        for (outcome, job), ok in zip(batch, committed):
            if job is not None:
                self.state.untrack(job.future)
            self.state.give_back(outcome.queue or "", "done" if outcome.state == contract.DONE else "failed")
            if not ok:
                self.state.lost_ownership += 1
                log.warning("job %s was handed out again while this worker was presumed dead: "
                            "its answer from here is dropped (the new owner answers)", outcome.job_id)
            elif self.events is not None and outcome.job_id:
                self.events.job_done(outcome, job)
        if self.events is not None and self.events.tasks:
            self.events.flush()          # one task.multi message per commit round
