"""The client SDK: validate, publish JSON jobs to the model's queue, wait for results.

    from producer import Client
    client = Client()                          # ELASTIQ_REDIS_URL or redis://localhost:6379/0
    job = client.submit("minilm", ["a sentence", "another"])
    job.result(timeout=30).outputs             # two 384-float vectors

Never imports torch.
"""

from __future__ import annotations

import time
import uuid
from typing import Iterable, Sequence

from elastiq import contract
from elastiq.celeryconf import make_celery, redis_client
from elastiq.errors import BrokerUnavailableError, InputTypeError
from elastiq.registry import Registry
from elastiq.settings import Settings
from elastiq.validate import validate_job
from producer.job import Job, Result


class Client:
    def __init__(self, redis_url: str | None = None, *, settings: Settings | None = None,
                 registry: Registry | None = None):
        overrides = {"redis_url": redis_url} if redis_url else {}
        self.settings = settings or Settings.from_env(**overrides)
        self.registry = registry or Registry.from_env()
        self._app = make_celery(self.settings, name="elastiq-client")
        self._redis = redis_client(self.settings)

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
            for job_id in ids:
                key = contract.job_key(job_id)
                pipe.hset(key, mapping={"state": contract.QUEUED, "model": model, "submitted_at": now})
                pipe.expire(key, self.settings.result_ttl_s)
            pipe.execute()
            jobs = []
            with self._app.producer_or_acquire() as producer:
                for job_id, (_, inputs, job_params) in zip(ids, checked):
                    async_result = self._app.send_task(
                        contract.TASK_NAME, kwargs={"model": model, "inputs": inputs, "params": job_params},
                        task_id=job_id, queue=queue, routing_key=queue, priority=priority,
                        headers=headers, producer=producer)
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
        deadline = None if timeout is None else time.monotonic() + timeout
        results = []
        try:
            for job in jobs:
                left = None if deadline is None else max(0.1, deadline - time.monotonic())
                results.append(job.result(timeout=left))
                if bar:
                    bar.update(1)
        finally:
            if bar:
                bar.close()
        return results

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
        self._app.close()
        self._redis.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
