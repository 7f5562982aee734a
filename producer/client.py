"""The client SDK: validate, publish JSON jobs to the model's queue, wait for results.

    from producer import Client
    client = Client()                          # ELASTIQ_REDIS_URL or redis://localhost:6379/0
    job = client.submit("minilm", ["a sentence", "another"])
    job.result(timeout=30).outputs             # two 384-float vectors

Never imports torch.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterable, Sequence

from elastiq import contract, jobrecord, messages
from elastiq.errors import InputTypeError, JobTimeoutError, broker_error
from elastiq.jobrecord import JobRecord
from elastiq.redisconn import redis_client, safe_url
from elastiq.registry import Registry
from elastiq.settings import Settings
from elastiq.validate import validate_job
from producer.collect import ResultCollector
from producer.job import Job, Result
from producer.publish import Publisher


class Client:
    def __init__(self, redis_url: str | None = None, *, settings: Settings | None = None,
                 registry: Registry | None = None):
        overrides = {"redis_url": redis_url} if redis_url else {}
        self.settings = settings or Settings.from_env(**overrides)
        self.registry = registry or Registry.from_env()
        self._redis = redis_client(self.settings)
        self._publisher = Publisher(self._redis, self.settings.result_ttl_s)
        self._collector = ResultCollector(self._redis)

    # -- submitting

    def submit(self, model: str, inputs: Sequence[str], *, priority: int | None = None,
               deadline_s: float | None = None, **params) -> Job:
        """Validate and queue one job. Raises a ValidationError subclass (nothing queued)."""
        return self.submit_many(model, [inputs], priority=priority, deadline_s=deadline_s, **params)[0]

    def submit_many(self, model: str, many: Iterable[Sequence[str]], *, priority: int | None = None,
                    deadline_s: float | None = None, job_ids: Sequence[str] | None = None,
                    **params) -> list[Job]:
        """Validate every job first, then queue them all, a chunk per round trip.

        ``job_ids``: ids chosen by the caller (one per job, unique, 1-64 characters of
        letters, digits and ``-``), e.g. to listen for the results before they can exist;
        by default each job gets a random UUID."""
        checked = [validate_job(model, inputs, params, self.registry, self.settings.limits)
                   for inputs in many]
        ids = _job_ids(job_ids, len(checked))
        if priority is not None and (not isinstance(priority, int) or isinstance(priority, bool)
                                     or not 0 <= priority <= 9):
            raise InputTypeError("priority must be an int from 0 (first) to 9 (last)")
        now = time.time()
        deadline = None if deadline_s is None else now + float(deadline_s)
        items, list_key = [], messages.list_for(contract.queue_for(model), priority)
        for job_id, (_, inputs, job_params) in zip(ids, checked):
            _, raw = messages.job_message(job_id, model, inputs, job_params, submitted_at=now,
                                          deadline=deadline, priority=priority)
            items.append((job_id, raw))
        try:
            self._publisher.publish(list_key, model, now, items)
        except Exception as exc:
            if isinstance(exc, OSError) or type(exc).__module__.startswith("redis"):
                raise broker_error(self._safe_url(), exc) from exc
            raise
        return [Job(self, job_id, model) for job_id, _ in items]

    def train(self, dataset: str, base: str, **hyper):
        """Queue a fine-tuning job (elastiq/trainspec.py: epochs, lr, batch_size, max_train,
        name, publish, ...). Raises a ValidationError subclass before anything is queued.
        Returns a :class:`~producer.training.TrainJob`: ``progress()``, ``wait(progress=True)``."""
        from producer.training import submit_train

        return submit_train(self, dataset, base, **hyper)

    def map(self, model: str, many: Iterable[Sequence[str] | str], *, progress: bool = True,
            timeout: float | None = 300, **params) -> list[Result]:
        """Submit one job per item (a list of texts, or one text) and return results in order."""
        items = [[x] if isinstance(x, str) else x for x in many]
        jobs = self.submit_many(model, items, **params)
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=len(jobs), unit="job", desc=f"{model}", leave=True)
        try:
            if not self._wait(jobs, timeout, on_ready=(lambda _: bar.update(1)) if bar else None):
                for job in jobs:        # another thread is collecting: one job at a time
                    job.result(timeout=timeout)
                    if bar:
                        bar.update(1)
        finally:
            if bar:
                bar.close()
        return [job.result(timeout=0) for job in jobs]   # raises the first failure, in order

    def _wait(self, jobs: list[Job], timeout: float | None, on_ready=None) -> bool:
        """Collect many results in one wait. False if another thread is collecting now."""
        if not self._collector.lock.acquire(blocking=False):
            return False
        try:
            self._collector.wait(jobs, timeout, on_ready)
        except JobTimeoutError as exc:
            left = [j for j in jobs if not j._resolved()]
            if len(left) == 1:
                raise JobTimeoutError(f"job {left[0].id} has no result after {timeout}s "
                                      f"(status: {left[0].status()})") from None
            raise JobTimeoutError(f"{exc} (first: {left[0].id}, status: {left[0].status()})") from None
        except Exception as exc:
            if isinstance(exc, OSError) or type(exc).__module__.startswith("redis"):
                raise broker_error(self._safe_url(), exc) from exc
            raise
        finally:
            self._collector.lock.release()
        return True

    # -- inspecting

    def job(self, job_id: str, model: str = "") -> Job:
        """A handle on a job submitted earlier (by any client)."""
        return Job(self, job_id, model)

    def _lookup(self, job_id: str, record: bool = True) -> tuple[dict | None, JobRecord]:
        """A job's stored result (decoded, or None) and its record."""
        pipe = self._redis.pipeline(transaction=False)
        pipe.get(contract.result_key(job_id))
        if record:
            pipe.hgetall(contract.job_key(job_id))
        replies = pipe.execute()
        try:
            meta = json.loads(replies[0]) if replies[0] else None
        except ValueError:
            meta = None
        return (meta if isinstance(meta, dict) else None), JobRecord.from_hash(replies[1] if record else {})

    def _cancel(self, job_id: str) -> bool:
        """Mark a queued job cancelled; the worker that takes it answers JobCancelledError."""
        key = contract.job_key(job_id)
        pipe = self._redis.pipeline(transaction=True)
        pipe.hget(key, jobrecord.STATE)
        pipe.hsetnx(key, jobrecord.CANCELLED, JobRecord(cancelled=True).to_hash()[jobrecord.CANCELLED])
        state, _ = pipe.execute()
        if state != contract.QUEUED:
            self._redis.hdel(key, jobrecord.CANCELLED)
            return False
        return True

    def _safe_url(self) -> str:
        return safe_url(self.settings.redis_url)

    def close(self) -> None:
        self._collector.close()
        self._redis.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


_ID_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-")


def _job_ids(given: Sequence[str] | None, n: int) -> list[str]:
    if given is None:
        return [str(uuid.uuid4()) for _ in range(n)]
    ids = list(given)
    if len(ids) != n or len(set(ids)) != n:
        raise InputTypeError(f"job_ids: {n} distinct ids needed, got {len(ids)} ({len(set(ids))} distinct)")
    for i in ids:
        if not isinstance(i, str) or not 0 < len(i) <= 64 or not set(i) <= _ID_CHARS:
            raise InputTypeError(f"job_ids: {str(i)[:80]!r} is not 1-64 letters, digits or '-'")
    return ids
