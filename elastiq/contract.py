"""Names on the wire: queues, Redis keys and the job message.

Everything that two parts must spell the same way lives here, so a reader can see the
whole contract in one file.

A job is a Celery task message (JSON, protocol 2) for the task ``elastiq.infer`` with
keyword arguments ``{"model", "inputs", "params"}``. Its headers carry
``elastiq_submitted_at`` (UNIX seconds, float) and, optionally, ``elastiq_deadline``,
so the autoscaler can read the age of the oldest waiting job without decoding bodies.
"""

from __future__ import annotations

TASK_NAME = "elastiq.infer"

QUEUE_PREFIX = "elastiq."
# kombu's Redis transport keeps one list per priority step: the queue name for step 0,
# then "<queue>\x06\x16<step>" for the others (kombu.transport.redis, PRIORITY_STEPS).
PRIORITY_SEP = "\x06\x16"
PRIORITY_STEPS = (0, 3, 6, 9)

HEADER_SUBMITTED_AT = "elastiq_submitted_at"
HEADER_DEADLINE = "elastiq_deadline"
HEADER_REPUBLISHED_AT = "elastiq_republished_at"   # set when the sweeper re-sends a lost job

HEARTBEAT_PREFIX = "elastiq:hb:"          # + worker id -> JSON, with a TTL
DRAIN_PREFIX = "elastiq:drain:"           # + worker id -> "1": stop consuming, finish, exit
JOB_PREFIX = "elastiq:job:"               # + job id -> hash {state, deliveries, model, ...}
RESULT_PREFIX = "celery-task-meta-"      # + job id -> Celery result JSON (key and channel)
DEAD_LETTER_KEY = "elastiq:dead"          # list of JSON {job_id, model, reason, ...}
STATS_PREFIX = "elastiq:stats:"           # + queue -> hash of counters (done, failed, expired)
# + queue -> sorted set {job id: time published}: jobs sent and not yet started. The job's
# record keeps its payload (field "payload") until a worker starts it, so a message lost
# between a worker's BRPOP and kombu's unacked write can be sent again (workers/sweeper.py).
PENDING_PREFIX = "elastiq:pending:"
SWEEP_LOCK_KEY = "elastiq:sweep-lock"     # one sweeper at a time across the pool
UNACKED_KEY = "unacked"                   # kombu's Redis transport: delivery tag -> message

# Job states kept in our own record (Celery reports any unknown id as PENDING).
QUEUED, STARTED, DONE, FAILED, DEAD = "queued", "started", "done", "failed", "dead"
UNKNOWN = "unknown"


def queue_for(model: str) -> str:
    return QUEUE_PREFIX + model


def model_of(queue: str) -> str:
    return queue[len(QUEUE_PREFIX):] if queue.startswith(QUEUE_PREFIX) else queue


def queue_keys(queue: str) -> list[str]:
    """Every Redis list that holds waiting messages of ``queue``."""
    return [queue if step == 0 else f"{queue}{PRIORITY_SEP}{step}" for step in PRIORITY_STEPS]


def heartbeat_key(worker_id: str) -> str:
    return HEARTBEAT_PREFIX + worker_id


def drain_key(worker_id: str) -> str:
    return DRAIN_PREFIX + worker_id


def job_key(job_id: str) -> str:
    return JOB_PREFIX + job_id


def result_key(job_id: str) -> str:
    """Celery's Redis result backend: the result is SET here and PUBLISHed on this channel."""
    return RESULT_PREFIX + job_id


def stats_key(queue: str) -> str:
    return STATS_PREFIX + queue


def pending_key(queue: str) -> str:
    return PENDING_PREFIX + queue


def published_at(headers: dict) -> float | None:
    """When a waiting message was (last) put on its queue, from its headers."""
    value = headers.get(HEADER_REPUBLISHED_AT) or headers.get(HEADER_SUBMITTED_AT)
    try:
        return float(value) if value is not None else None
    except (TypeError, ValueError):
        return None
