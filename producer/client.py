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
from typing import Iterable, Sequence

from elastiq import contract, kombu_fast
from elastiq.celeryconf import make_celery, redis_client
from elastiq.errors import BrokerUnavailableError, InputTypeError, JobTimeoutError
from elastiq.registry import Registry
from elastiq.settings import Settings
from elastiq.validate import validate_job
from producer.collect import ResultCollector
from producer.job import Job, Result

PUBLISH_BATCH = 500      # messages per Redis round trip when submitting many jobs


def _skip_on_task_call(producer, task_id) -> None:
    """See :meth:`Client._no_early_subscribe`."""


class Client:
    def __init__(self, redis_url: str | None = None, *, settings: Settings | None = None,
                 registry: Registry | None = None):
        kombu_fast.install()      # one Redis client per kombu channel, not one per publish
        overrides = {"redis_url": redis_url} if redis_url else {}
        self.settings = settings or Settings.from_env(**overrides)
        self.registry = registry or Registry.from_env()
        self._app = make_celery(self.settings, name="elastiq-client")
        self._redis = redis_client(self.settings)
        self._collector = ResultCollector(self._app, self._redis)

    # -- submitting

    def submit(self, model: str, inputs: Sequence[str], *, priority: int | None = None,
               deadline_s: float | None = None, **params) -> Job:
        """Validate and queue one job. Raises a ValidationError subclass (nothing queued)."""
        return self.submit_many(model, [inputs], priority=priority, deadline_s=deadline_s, **params)[0]

    def submit_many(self, model: str, many: Iterable[Sequence[str]], *, priority: int | None = None,
                    deadline_s: float | None = None, **params) -> list[Job]:
        """Validate every job first, then publish them all over one connection."""
        checked = [validate_job(model, inputs, params, self.registry, self.settings.limits)
                   for inputs in many]
        if priority is not None and (not isinstance(priority, int) or not 0 <= priority <= 9):
            raise InputTypeError("priority must be an int from 0 (first) to 9 (last)")
        queue = contract.queue_for(model)
        now = time.time()
        headers = {contract.HEADER_SUBMITTED_AT: now}
        if deadline_s is not None:
            headers[contract.HEADER_DEADLINE] = now + float(deadline_s)
        ids = [str(uuid.uuid4()) for _ in checked]
        try:
            pipe = self._redis.pipeline(transaction=False)
            for job_id, (_, inputs, job_params) in zip(ids, checked):
                key = contract.job_key(job_id)
                # the payload stays until a worker starts the job, so a delivery lost in a
                # worker's death can be sent again (workers/sweeper.py)
                payload = json.dumps({"kwargs": {"model": model, "inputs": inputs, "params": job_params},
                                      "headers": headers, "priority": priority})
                pipe.hset(key, mapping={"state": contract.QUEUED, "model": model, "submitted_at": now,
                                        "payload": payload})
                pipe.expire(key, self.settings.result_ttl_s)
            if ids:
                pipe.zadd(contract.pending_key(queue), {job_id: now for job_id in ids})
            pipe.execute()
            jobs = []
            self._no_early_subscribe()
            with self._app.producer_or_acquire() as producer, producer.batch(max_size=PUBLISH_BATCH):
                # kombu buffers the LPUSHes and sends them PUBLISH_BATCH at a time
                for job_id, (_, inputs, job_params) in zip(ids, checked):
                    async_result = self._app.send_task(
                        contract.TASK_NAME, kwargs={"model": model, "inputs": inputs, "params": job_params},
                        task_id=job_id, queue=queue, routing_key=queue, priority=priority,
                        headers=headers, producer=producer, argsrepr="()",
                        kwargsrepr=f"{{'model': {model!r}, 'inputs': <{len(inputs)} texts>}}")
                    jobs.append(Job(self, job_id, model, async_result))
        except (OSError, ConnectionError) as exc:
            raise BrokerUnavailableError(f"cannot reach Redis at {self._safe_url()}: {exc}") from exc
        except Exception as exc:
            if type(exc).__module__.startswith(("redis", "kombu")):
                raise BrokerUnavailableError(f"cannot reach Redis at {self._safe_url()}: {exc}") from exc
            raise
        return jobs

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

    def _no_early_subscribe(self) -> None:
        """Stop Celery's Redis backend subscribing to each result as the job is sent.

        ``send_task`` calls ``backend.on_task_call``, which SUBSCRIBEs Celery's own result
        consumer to the job's channel (and the AsyncResult unsubscribes when collected):
        work per job, and a second connection receiving every result that nobody reads
        while :class:`ResultCollector` waits. ``AsyncResult.get`` (the fallback in
        :meth:`Job.result`) still subscribes by itself. ``app.backend`` is per thread.
        """
        backend = self._app.backend
        if backend.__dict__.get("on_task_call") is not _skip_on_task_call:
            backend.on_task_call = _skip_on_task_call

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
                raise BrokerUnavailableError(f"cannot reach Redis at {self._safe_url()}: {exc}") from exc
            raise
        finally:
            self._collector.lock.release()
        return True

    # -- inspecting

    def job(self, job_id: str, model: str = "") -> Job:
        """A handle on a job submitted earlier (by any client)."""
        return Job(self, job_id, model, self._app.AsyncResult(job_id))

    def _record(self, job_id: str) -> dict:
        return self._redis.hgetall(contract.job_key(job_id))

    def _safe_url(self) -> str:
        from kombu.utils.url import maybe_sanitize_url

        return maybe_sanitize_url(self.settings.redis_url)

    def close(self) -> None:
        self._collector.close()
        self._app.close()
        self._redis.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
