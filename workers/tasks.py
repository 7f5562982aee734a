"""The one Celery task, ``elastiq.infer``: validate again, count the delivery, batch, reply.

The worker never trusts the client: the job is validated with the same rules, and any
failure reaches the client as a typed error with the worker's message.

Delivery accounting (the job record ``elastiq:job:<id>``, field ``deliveries``, counts
executions). A job delivered again was held by a worker that died. It is a *suspect*: it
runs alone (outside the micro-batch, one suspect at a time per worker), with ``alone=1``
in its record while it runs. If the next delivery still finds ``alone`` set, the worker
died while running that job and nothing else: the job is *blamed*. A job is dead-lettered
instead of run when it has had ``max_deliveries`` executions and its last run was blamed
(a poison input), or, whatever the cause, after ``2 x max_deliveries`` executions. An
innocent job that shared a batch with a poison one is never blamed for it.

Time limits (the threads pool has none of Celery's): a slot waits ``job_soft_time_limit_s``
for its result, then fails the job with JobTimeoutError and dead-letters it (a hung input
is not retried). The forward pass may still be stuck: the watchdog
(:class:`workers.heartbeat.Watchdog`) stops the worker consuming at once and exits the
process at ``job_time_limit_s``, so the jobs it still holds are delivered again elsewhere.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field

from celery import Celery
from celery.exceptions import Reject

from elastiq import contract
from elastiq.errors import (
    DeadLetteredError, ElastiqError, InputTypeError, JobFailedError, JobTimeoutError,
)
from elastiq.registry import Registry
from elastiq.settings import Settings
from elastiq.validate import validate_job
from workers.batcher import Batcher, BatchInfo
from workers.deadletter import dead_letter
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
    # one suspect (redelivered) job at a time per worker, outside the batcher
    suspect_lock: threading.Lock = field(default_factory=threading.Lock)


_context: WorkerContext | None = None


def install(context: WorkerContext) -> None:
    global _context
    _context = context


def register(app: Celery) -> None:
    app.task(name=contract.TASK_NAME, bind=True)(infer)


def infer(task, *args, **kwargs):
    ctx = _context
    if ctx is None:  # a message reached a process that has no models loaded
        raise Reject("worker has no models loaded", requeue=True)
    if ctx.state.draining:
        # The consumer was cancelled but this message was already on its way: hand it back.
        raise Reject("worker is draining", requeue=True)
    model, inputs, params = kwargs.pop("model", None), kwargs.pop("inputs", None), kwargs.pop("params", None)
    request = task.request
    job_id = request.id
    queue = (request.delivery_info or {}).get("routing_key") or contract.queue_for(str(model))
    headers = request.headers or {}
    submitted_at = _float(headers.get(contract.HEADER_SUBMITTED_AT))
    deadline = _float(headers.get(contract.HEADER_DEADLINE))
    started = time.time()

    deliveries, blamed = _record_start(ctx, job_id, model, queue)
    limit = ctx.settings.max_deliveries
    if deliveries > limit and (blamed or deliveries > 2 * limit):
        why = ("its last run killed the worker while it ran alone" if blamed
               else f"the workers running it died {deliveries - 1} times")
        reason = f"delivered {deliveries} times (limit {limit}): {why}"
        ctx.redis.hincrby(contract.job_key(job_id), "deliveries", -1)   # not run: not an execution
        dead_letter(ctx.redis, job_id, model, reason, headers, deliveries=deliveries - 1)
        raise DeadLetteredError(reason)

    ctx.state.enter(queue)
    ok = False
    try:
        if args:
            raise InputTypeError(f"elastiq.infer takes keyword arguments only, got {len(args)} positional")
        if kwargs:
            raise InputTypeError(f"unexpected job fields: {sorted(map(str, kwargs))[:10]}")
        model, inputs, params = validate_job(model, inputs, params, ctx.registry, ctx.settings.limits)
        if model not in ctx.batchers:
            raise JobFailedError(f"this worker does not serve model {model!r} (queue {queue})")
        soft = ctx.settings.job_soft_time_limit_s
        if deliveries > 1:
            raw, info = _run_alone(ctx, job_id, model, inputs, deadline, soft)
        else:
            future = ctx.batchers[model].submit(inputs, deadline)
            ctx.state.track(future)
            try:
                raw, info = future.result(timeout=soft)
            except TimeoutError:
                if not ctx.state.is_oldest(future):
                    # stuck behind an older forward pass that is still running (the culprit
                    # fails on its own): hand this job back, to run alone on another worker
                    raise Reject("waiting behind a stuck forward pass", requeue=True) from None
                raise _soft_limit(ctx, job_id, model, headers, soft) from None
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
    except (ElastiqError, Reject):
        raise
    except Exception as exc:
        log.exception("job %s failed", job_id)
        raise JobFailedError(f"{type(exc).__name__}: {exc}") from None
    finally:
        ctx.state.leave(queue, ok)


def _soft_limit(ctx: WorkerContext, job_id, model, headers, soft: float) -> JobTimeoutError:
    reason = (f"inference took longer than {soft}s (soft time limit); a hung or too slow "
              "input is not retried")
    try:
        dead_letter(ctx.redis, job_id, model, reason, headers)
    except Exception:  # noqa: BLE001 - the typed error still reaches the client
        log.exception("could not dead-letter %s", job_id)
    return JobTimeoutError(reason)


def _run_alone(ctx: WorkerContext, job_id, model: str, inputs, deadline, soft: float):
    """Run a redelivered job in a forward pass of its own, one suspect at a time.

    ``alone=1`` sits in the job record exactly while it runs: if the worker dies now,
    the next delivery knows which job did it.
    """
    runtime = ctx.runtimes[model]
    future: Future = Future()
    waited_from = time.monotonic()
    if not ctx.suspect_lock.acquire(timeout=soft):
        raise JobTimeoutError(f"waited {soft}s for the suspect slot (soft time limit)")
    left = max(0.1, soft - (time.monotonic() - waited_from))
    key = contract.job_key(job_id)

    def run() -> None:
        try:
            if deadline is not None and time.time() > deadline:
                from elastiq.errors import JobExpiredError
                raise JobExpiredError("deadline passed before the job could run; not run")
            ctx.redis.hset(key, "alone", ctx.state.worker_id)
            t0 = time.perf_counter()
            outs = runtime.forward(runtime.encode(list(inputs)))
            info = BatchInfo(batch_size=len(inputs), inference_ms=(time.perf_counter() - t0) * 1000)
            ctx.redis.hdel(key, "alone")
            future.set_result((list(outs), info))
        except BaseException as exc:  # noqa: BLE001 - handed to the slot
            try:
                ctx.redis.hdel(key, "alone")
            except Exception:  # noqa: BLE001
                pass
            future.set_exception(exc)
        finally:
            ctx.suspect_lock.release()

    ctx.state.track(future)
    threading.Thread(target=run, name=f"suspect-{job_id}", daemon=True).start()
    try:
        return future.result(timeout=left)
    except TimeoutError:
        raise _soft_limit(ctx, job_id, model, {}, soft) from None


def _record_start(ctx: WorkerContext, job_id: str, model, queue: str) -> tuple[int, bool]:
    """Count this delivery in the job's record and a start in the queue's stats.

    Returns ``(deliveries, blamed)``; one round trip on the common path.
    """
    key = contract.job_key(job_id)
    now = time.time()
    pipe = ctx.redis.pipeline(transaction=False)
    pipe.hincrby(key, "deliveries", 1)
    pipe.hget(key, "alone")
    pipe.hincrby(contract.stats_key(queue), "started", 1)
    pipe.hset(key, mapping={"state": contract.STARTED, "worker": ctx.state.worker_id})
    pipe.hdel(key, "payload")                          # delivered: the sweeper's copy is done
    pipe.zrem(contract.pending_key(queue), job_id)
    pipe.hsetnx(key, "first_worker", ctx.state.worker_id)
    pipe.hsetnx(key, "first_started_at", repr(now))
    pipe.expire(key, ctx.settings.result_ttl_s)
    res = pipe.execute()
    deliveries, alone = int(res[0]), res[1]
    blamed = False
    if alone:
        # the previous run of this job died while it ran alone on worker `alone`
        pipe = ctx.redis.pipeline(transaction=False)
        pipe.hdel(key, "alone")
        pipe.hincrby(key, "blamed", 1)
        pipe.execute()
        blamed = True
        log.warning("job %s: its previous run killed worker %s while it ran alone", job_id, alone)
    return deliveries, blamed


def _float(value) -> float | None:
    try:
        return float(value) if value is not None else None
    except (TypeError, ValueError):
        return None
