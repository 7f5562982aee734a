"""The one Celery task, ``elastiq.infer``: validate again, count the delivery, batch, reply.

The worker never trusts the client: the job is validated with the same rules, a job
delivered more than ``max_deliveries`` times is dead-lettered with its reason instead of
looping, and any failure reaches the client as a typed error with the worker's message.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass

from celery import Celery
from celery.exceptions import Reject

from elastiq import contract
from elastiq.errors import DeadLetteredError, ElastiqError, JobFailedError, JobTimeoutError
from elastiq.registry import Registry
from elastiq.settings import Settings
from elastiq.validate import validate_job
from workers.batcher import Batcher
from workers.heartbeat import WorkerState
from workers.runtime import Runtime

log = logging.getLogger(__name__)


@dataclass
class WorkerContext:
    settings: Settings
    registry: Registry
    runtimes: dict[str, Runtime]
    batchers: dict[str, Batcher]
    state: WorkerState
    redis: object


_context: WorkerContext | None = None


def install(context: WorkerContext) -> None:
    global _context
    _context = context


def register(app: Celery) -> None:
    app.task(name=contract.TASK_NAME, bind=True)(infer)


def infer(task, model=None, inputs=None, params=None, **unexpected):
    ctx = _context
    if ctx is None:  # a message reached a process that has no models loaded
        raise Reject("worker has no models loaded", requeue=True)
    if ctx.state.draining:
        # The consumer was cancelled but this message was already on its way: hand it back.
        raise Reject("worker is draining", requeue=True)
    request = task.request
    job_id = request.id
    queue = (request.delivery_info or {}).get("routing_key") or contract.queue_for(str(model))
    headers = request.headers or {}
    submitted_at = _float(headers.get(contract.HEADER_SUBMITTED_AT))
    deadline = _float(headers.get(contract.HEADER_DEADLINE))
    started = time.time()

    deliveries = _record_start(ctx, job_id, model, queue)
    if deliveries > ctx.settings.max_deliveries:
        reason = (f"delivered {deliveries} times (limit {ctx.settings.max_deliveries}); "
                  "the worker running it died each time")
        dead_letter(ctx.redis, job_id, model, reason, headers)
        raise DeadLetteredError(reason)

    ctx.state.enter(queue)
    ok = False
    try:
        if unexpected:
            raise JobFailedError(f"unexpected job fields: {sorted(unexpected)}")
        model, inputs, params = validate_job(model, inputs, params, ctx.registry, ctx.settings.limits)
        if model not in ctx.batchers:
            raise JobFailedError(f"this worker does not serve model {model!r} (queue {queue})")
        future = ctx.batchers[model].submit(inputs, deadline)
        try:
            raw, info = future.result(timeout=ctx.settings.job_soft_time_limit_s)
        except TimeoutError:
            raise JobTimeoutError(
                f"inference took longer than {ctx.settings.job_soft_time_limit_s}s (soft time limit)"
            ) from None
        outputs = ctx.runtimes[model].postprocess(raw, params)
        finished = time.time()
        ok = True
        return {
            "outputs": outputs,
            "timings": {
                "queue_wait_ms": round((started - submitted_at) * 1000, 3) if submitted_at else None,
                "inference_ms": round(info.inference_ms, 3),
                "batch_size": info.batch_size,
                "worker": ctx.state.worker_id,
                "started_at": started,
                "finished_at": finished,
                "deliveries": deliveries,
            },
        }
    except ElastiqError:
        raise
    except Exception as exc:
        log.exception("job %s failed", job_id)
        raise JobFailedError(f"{type(exc).__name__}: {exc}") from None
    finally:
        ctx.state.leave(queue, ok)


def _record_start(ctx: WorkerContext, job_id: str, model, queue: str) -> int:
    """Count this delivery in the job's record, and a start in the queue's stats (one round trip)."""
    key = contract.job_key(job_id)
    pipe = ctx.redis.pipeline(transaction=False)
    pipe.hincrby(key, "deliveries", 1)
    pipe.hincrby(contract.stats_key(queue), "started", 1)
    pipe.hset(key, mapping={"state": contract.STARTED, "worker": ctx.state.worker_id})
    pipe.expire(key, ctx.settings.result_ttl_s)
    return int(pipe.execute()[0])


def dead_letter(redis, job_id: str | None, model, reason: str, headers: dict | None = None,
                body: object = None) -> None:
    entry = {"job_id": job_id, "model": model if isinstance(model, str) else repr(model),
             "reason": reason, "at": time.time()}
    if headers:
        entry["submitted_at"] = headers.get(contract.HEADER_SUBMITTED_AT)
    if body is not None:
        entry["body"] = body
    pipe = redis.pipeline(transaction=False)
    pipe.lpush(contract.DEAD_LETTER_KEY, json.dumps(entry, default=repr)[:65536])
    if job_id:
        pipe.hset(contract.job_key(job_id), mapping={"state": contract.DEAD, "reason": reason})
    pipe.execute()
    log.error("dead-lettered job %s: %s", job_id, reason)


def _float(value) -> float | None:
    try:
        return float(value) if value is not None else None
    except (TypeError, ValueError):
        return None
