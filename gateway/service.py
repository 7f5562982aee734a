"""What the HTTP routes call: validate, admit, submit, wait, look up. No HTTP in here.

- validate: :func:`elastiq.validate.validate_job` with the client's registry and limits
  (400/404/413 before anything is queued);
- admit: :class:`~gateway.backlog.BacklogGate` (429);
- submit: :class:`~gateway.submitter.Submitter` (``Client.submit_many``, coalesced);
- wait: :class:`~gateway.waiter.ResultWaiter` (pub/sub, no thread per request);
- look up: the job record and the stored result, in one round trip.

Redis errors surface as :class:`~elastiq.errors.BrokerUnavailableError` (503).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import re
import time

from elastiq import contract
from elastiq.errors import (
    BrokerUnavailableError,
    ElastiqError,
    InputTooLargeError,
    UnknownJobError,
    broker_error,
)
from elastiq.jobrecord import JobRecord
from elastiq.registry import Registry
from elastiq.settings import Settings
from elastiq.validate import validate_job
from gateway import results
from gateway.backlog import BacklogGate
from gateway.config import GatewayConfig
from gateway.http_errors import SyncTimeoutError
from gateway.submitter import Submitter
from gateway.tokens import TokenCounter
from gateway.waiter import ResultWaiter

JOB_ID = re.compile(r"^[A-Za-z0-9-]{1,64}$")


def async_redis(settings: Settings):
    """A redis.asyncio client with the same connection options as the sync one."""
    import redis.asyncio as aioredis

    from elastiq.redisconn import tls_options

    kwargs: dict = {"decode_responses": True, "socket_timeout": 10, "socket_connect_timeout": 3,
                    "socket_keepalive": True}
    if settings.redis_url.startswith("rediss://"):
        kwargs.update(tls_options(settings))       # certificate and hostname checked
    return aioredis.Redis.from_url(settings.redis_url, **kwargs)


def split_jobs(texts: list[str], max_items: int, max_bytes: int) -> list[list[str]]:
    """Cut a long input list into jobs within the per-job item and encoded-size limits."""
    budget = max_bytes - 64              # the job's brackets and params
    jobs, current, size = [], [], 0
    for text in texts:
        n = len(json.dumps(text, ensure_ascii=False).encode("utf-8")) + 2
        if current and (len(current) >= max_items or size + n > budget):
            jobs.append(current)
            current, size = [], 0
        current.append(text)
        size += n
    if current:
        jobs.append(current)
    return jobs


class Service:
    def __init__(self, config: GatewayConfig, settings: Settings, registry: Registry, *,
                 metrics=None, clock=time.monotonic):
        self.config = config
        self.settings = settings
        self.registry = registry
        self.metrics = metrics
        self.redis = async_redis(settings)
        on_error = metrics.redis_error if metrics else None
        self.waiter = ResultWaiter(self.redis, recheck_s=config.result_recheck_s, clock=clock,
                                   on_error=on_error, on_result=metrics.result if metrics else None)
        self.backlog = BacklogGate(self.redis, bound=config.max_backlog,
                                   refresh_s=config.backlog_refresh_s, clock=clock)
        self.submitter = Submitter(self._new_client, threads=config.submit_threads,
                                   on_batch=metrics.submit_batch if metrics else None)
        self.tokens = TokenCounter()

    def _new_client(self):
        from producer import Client

        return Client(settings=self.settings, registry=self.registry)

    async def start(self) -> None:
        await self.waiter.start()

    async def close(self) -> None:
        await self.waiter.close()
        await asyncio.get_running_loop().run_in_executor(None, self.submitter.close)
        await self.redis.aclose()

    # -- validation (raises ValidationError subclasses: nothing queued)

    def check_job(self, model: object, inputs: object, params: object) -> tuple[str, list[str], dict]:
        return validate_job(model, inputs, params, self.registry, self.settings.limits)

    def check_texts(self, model: str, texts: list[str]) -> list[list[str]]:
        """Many texts for one request: checked as a whole (indices are the request's), then cut into jobs."""
        if len(texts) > self.config.max_inputs_per_request:
            raise InputTooLargeError(f"{len(texts)} inputs in one request; the limit is "
                                     f"{self.config.max_inputs_per_request} (ELASTIQ_GATEWAY_MAX_INPUTS_PER_REQUEST)")
        limits = self.settings.limits
        whole = dataclasses.replace(limits, max_items_per_job=max(1, len(texts)),
                                    max_message_bytes=self.config.max_body_bytes * 8)
        validate_job(model, texts, None, self.registry, whole)
        jobs = split_jobs(texts, limits.max_items_per_job, limits.max_message_bytes)
        for job in jobs:
            self.check_job(model, job, None)
        return jobs

    # -- queueing and waiting

    async def enqueue(self, model: str, jobs: list[list[str]], params: dict, *,
                      priority: int | None = None, deadline_s: float | None = None,
                      watch: bool = False) -> list[str]:
        """Queue the jobs under ids this gateway hears; with ``watch``, their results are
        listened for before they are queued (:meth:`wait` collects them)."""
        try:
            await self.backlog.check(model, len(jobs))
        except ElastiqError:
            raise
        except Exception as exc:  # noqa: BLE001 - any Redis failure is a 503
            raise self._unavailable(exc) from None
        ids = [self.waiter.new_id() for _ in jobs]
        if watch:
            for job_id in ids:
                self.waiter.watch(job_id)
        try:
            return list(await asyncio.gather(*(
                self.submitter.submit(model, job, params, job_id=job_id, priority=priority,
                                      deadline_s=deadline_s)
                for job, job_id in zip(jobs, ids))))
        except BaseException:
            for job_id in ids:
                self.waiter.forget(job_id)
            raise

    async def wait(self, job_ids: list[str], timeout: float) -> list[dict]:
        """The ready result metas in order; SyncTimeoutError names the ids still out."""
        metas = await self.waiter.wait(job_ids, timeout)
        missing = [i for i in job_ids if i not in metas]
        if missing:
            raise SyncTimeoutError(
                f"{len(missing)} of {len(job_ids)} job(s) have no result after {timeout:g}s; they are "
                f"not lost: GET /v1/jobs/{missing[0]} for the status and result", missing)
        return [metas[i] for i in job_ids]

    async def run(self, model: str, jobs: list[list[str]], params: dict, *, timeout: float,
                  priority: int | None = None, deadline_s: float | None = None) -> list[tuple[str, dict]]:
        """Queue, wait, and return ``(job_id, result)``; a failed job raises its typed error."""
        started = time.perf_counter()
        ids = await self.enqueue(model, jobs, params, priority=priority, deadline_s=deadline_s, watch=True)
        queued = time.perf_counter()
        metas = await self.wait(ids, timeout)
        if self.metrics:
            self.metrics.stages.labels("enqueue").observe(queued - started)
            self.metrics.stages.labels("wait").observe(time.perf_counter() - queued)
        for job_id, meta in zip(ids, metas):
            error = results.error_of(meta, job_id)
            if error is not None:
                raise error
        return [(job_id, meta["result"]) for job_id, meta in zip(ids, metas)]

    def timeout(self, asked: float | None) -> float:
        return min(asked or self.config.sync_timeout_s, self.config.max_sync_timeout_s)

    # -- looking up

    async def job(self, job_id: str) -> dict:
        if not JOB_ID.match(job_id):
            raise UnknownJobError(f"no job {job_id[:80]!r}: job ids are UUIDs")
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.hgetall(contract.job_key(job_id))
                pipe.get(contract.result_key(job_id))
                fields, raw = await pipe.execute()
        except Exception as exc:  # noqa: BLE001 - any Redis failure is a 503
            raise self._unavailable(exc) from None
        meta = results.decode(raw)
        if not fields and meta is None:
            raise UnknownJobError(f"no job {job_id!r} (never submitted, or its record expired "
                                  f"after {self.settings.result_ttl_s}s)")
        error = results.error_of(meta, job_id) if meta else None
        record = JobRecord.from_hash(fields)
        view = {"job_id": job_id, "model": record.model, "status": results.status_of(record, meta),
                "submitted_at": record.submitted_at, "result": None, "error": None}
        if meta is not None and error is None:
            view["result"] = {"outputs": meta["result"]["outputs"], "timings": meta["result"].get("timings", {})}
            if meta["result"].get("model_version"):
                view["result"]["model_version"] = meta["result"]["model_version"]
        elif error is not None:
            view["error"] = {"type": type(error).__name__, "message": str(error)}
        return view

    async def redis_ok(self) -> bool:
        try:
            return bool(await asyncio.wait_for(self.redis.ping(), 2.0))
        except Exception:  # noqa: BLE001 - health: any failure is 'not ok'
            return False

    def _unavailable(self, exc: Exception) -> BrokerUnavailableError:
        if self.metrics:
            self.metrics.redis_error("request", exc)
        from kombu.utils.url import maybe_sanitize_url

        return broker_error(maybe_sanitize_url(self.settings.redis_url), exc)

