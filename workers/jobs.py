"""From a held queue item to a job to run, or to an answer at once -- in named steps.

The worker never trusts what it finds on a queue. :func:`prepare` takes one held item
through these steps, in this order; the first that refuses the item answers it:

1. ``size``     -- an item over the size bound is refused before anything is decoded
                   (workers/admission.py); its job id is read from the envelope's tail and
                   answered InputTooLargeError.
2. ``decode``   -- JSON, then protocol-2 shape (elastiq/messages.py). Refused: dead letter
                   (+ a typed failure if the item names a job id). Pickle and every other
                   content type are refused.
3. ``task``     -- only this worker's own task names run (workers/admission.py); Celery's
                   built-in tasks (``celery.group``, ``celery.chord_unlock``, ...) never do.
4. ``cancel``   -- a job cancelled while queued is answered JobCancelledError, not run.
5. ``poison``   -- delivery accounting (below): a job that keeps killing workers is
                   dead-lettered instead of run.
6. ``validate`` -- the same rules as the client (elastiq/validate.py); a bad job fails
                   with the typed ValidationError.
Then the fetcher routes it: a first delivery joins the micro-batch; a redelivered job (a
*suspect*: the worker holding it died) runs alone (workers/suspects.py).

Delivery accounting: the reservation script counts each delivery in the job's record
(``deliveries``). A suspect runs alone with ``alone=<worker>`` in its record while it
runs; if the next delivery still finds ``alone`` set, the worker died running that job and
nothing else: the job is *blamed*. It is dead-lettered when it has had ``max_deliveries``
executions and its last one was blamed (a poison input), or, whatever the cause, after
``2 x max_deliveries``. An innocent job that shared a batch with a poison one is never
blamed for it.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import Future
from dataclasses import dataclass, field

from elastiq import contract, messages
from elastiq.errors import (
    DeadLetteredError,
    ElastiqError,
    InputTooLargeError,
    InputTypeError,
    JobFailedError,
)
from elastiq.registry import Registry
from elastiq.reservations import Held, Outcome
from elastiq.settings import Settings
from elastiq.validate import validate_job
from workers import admission, results
from workers.deadletter import dead_letter

log = logging.getLogger(__name__)

RUNS = admission.OWN_TASKS     # the only task names a worker executes


@dataclass
class Job:
    held: Held
    job_id: str
    queue: str
    model: str
    inputs: list[str]
    params: dict
    headers: dict
    deliveries: int
    reserved_at: float = field(default_factory=time.time)
    future: Future | None = None

    @property
    def submitted_at(self) -> float | None:
        return _float(self.headers.get(contract.HEADER_SUBMITTED_AT))

    @property
    def deadline(self) -> float | None:
        return _float(self.headers.get(contract.HEADER_DEADLINE))

    @property
    def suspect(self) -> bool:
        return self.deliveries > 1


@dataclass
class Context:
    settings: Settings
    registry: Registry
    served: frozenset            # model names this worker has loaded
    redis: object


def prepare(held: Held, queue_of_list: str, ctx: Context) -> Job | Outcome:
    """The steps of the module doc: a :class:`Job` to run, or the :class:`Outcome` that answers it."""
    too_big = admission.size_refusal(held.raw, ctx.settings.limits)
    if too_big:
        return refuse(ctx, held, queue_of_list, too_big, admission.id_hint(held.raw),
                      error=InputTooLargeError)
    try:
        msg = messages.decode(held.raw)
    except messages.BadMessage as bad:
        return refuse(ctx, held, queue_of_list, f"{bad.reason}; not run", bad.job_id, bad.headers,
                      task=bad.task)
    refused_task = admission.task_refusal(msg.task)
    if refused_task:
        return refuse(ctx, held, queue_of_list, f"{refused_task}; not run", msg.job_id, msg.headers,
                      task=msg.task)
    if held.cancelled:
        return Outcome(held.field, msg.job_id, results.revoked(msg.job_id, "cancelled before it ran"),
                       contract.FAILED, queue_of_list)
    poison = _poison(ctx, held)
    if poison:
        return refuse(ctx, held, queue_of_list, poison, msg.job_id, msg.headers)
    kwargs = dict(msg.kwargs)
    model, inputs, params = kwargs.pop("model", None), kwargs.pop("inputs", None), kwargs.pop("params", None)
    try:
        if msg.args:
            raise InputTypeError(f"elastiq.infer takes keyword arguments only, got {len(msg.args)} positional")
        if kwargs:
            raise InputTypeError(f"unexpected job fields: {sorted(map(str, kwargs))[:10]}")
        model, inputs, params = validate_job(model, inputs, params, ctx.registry, ctx.settings.limits)
        if model not in ctx.served:
            raise JobFailedError(f"this worker does not serve model {model!r} (queue {queue_of_list})")
    except ElastiqError as exc:
        return failed(held, msg.job_id, queue_of_list, exc)
    return Job(held, msg.job_id, queue_of_list, model, inputs, params, msg.headers, held.deliveries)


def _poison(ctx: Context, held: Held) -> str | None:
    limit = ctx.settings.max_deliveries
    if held.deliveries <= limit or not (held.alone or held.deliveries > 2 * limit):
        return None
    why = ("its last run killed the worker while it ran alone" if held.alone
           else f"the workers running it died {held.deliveries - 1} times")
    return f"delivered {held.deliveries} times (limit {limit}): {why}"


def refuse(ctx: Context, held: Held, queue: str, reason: str, job_id: str | None,
           headers: dict | None = None, task: str | None = None,
           error: type[ElastiqError] = DeadLetteredError) -> Outcome:
    """Dead-letter a held item and answer its job id (if any) with a typed error."""
    try:
        dead_letter(ctx.redis, job_id, contract.model_of(queue), reason, headers,
                    body=held.raw, task=task, queue=queue)          # a bounded preview
    except Exception:  # the item must still leave the held set
        log.exception("could not dead-letter a refused item")
    meta = results.failure(job_id, error(reason)) if job_id else None
    return Outcome(held.field, job_id, meta, contract.DEAD, queue)


def failed(held: Held, job_id: str, queue: str, exc: BaseException) -> Outcome:
    return Outcome(held.field, job_id, results.failure(job_id, exc), contract.FAILED, queue)


def _float(value) -> float | None:
    try:
        return float(value) if value is not None else None
    except (TypeError, ValueError):
        return None
