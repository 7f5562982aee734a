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

# Job slots a worker holds by default (it takes a job only when a slot is free); the
# autoscaler's backlog target and the simulator's default worker are sized on it.
DEFAULT_SLOTS = 16

QUEUE_PREFIX = "elastiq."
# kombu's Redis transport keeps one list per priority step: the queue name for step 0,
# then "<queue>\x06\x16<step>" for the others (kombu.transport.redis, PRIORITY_STEPS).
PRIORITY_SEP = "\x06\x16"
PRIORITY_STEPS = (0, 3, 6, 9)

HEADER_SUBMITTED_AT = "elastiq_submitted_at"
HEADER_DEADLINE = "elastiq_deadline"

HEARTBEAT_PREFIX = "elastiq:hb:"          # + worker id -> JSON, with a TTL
DRAIN_PREFIX = "elastiq:drain:"           # + worker id -> "1": stop consuming, finish, exit
JOB_PREFIX = "elastiq:job:"               # + job id -> hash {state, deliveries, model, ...}
RESULT_PREFIX = "celery-task-meta-"      # + job id -> Celery result JSON (key and channel)
DEAD_LETTER_KEY = "elastiq:dead"          # list of JSON {job_id, model, reason, ...}
EXITS_KEY = "elastiq:exits"               # list of JSON {worker_id, group, code, at, planned}, newest first
SUPERVISOR_KEY = "elastiq:supervisor"     # JSON: the local supervisor's groups (desired, running, backoff)
STATS_PREFIX = "elastiq:stats:"           # + queue -> hash of counters (done, failed, expired)
# + worker id -> hash {"<list>\n<seq>": queue item}: the jobs a worker has taken and not yet
# answered (elastiq/reservations.py). Restored to their lists when its heartbeat expires.
HELD_PREFIX = "elastiq:held:"
HOLDERS_KEY = "elastiq:holders"           # set of worker ids that may hold jobs
WAKE_PREFIX = "elastiq:wake:"             # + queue: pub/sub channel, "jobs were queued"

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


def queue_of_list(list_key: str) -> str:
    """The queue a Redis list belongs to (a priority sub-list names its queue first)."""
    return list_key.split(PRIORITY_SEP, 1)[0]


def heartbeat_key(worker_id: str) -> str:
    return HEARTBEAT_PREFIX + worker_id


def container_worker_id(model: str, hostname: str) -> str:
    """The id a worker in a container heartbeats under when none is given: ``<model>-<hostname>``.

    A container's hostname is its short (12-character) id unless its service sets one, so a
    backend that knows the container id (compose, swarm task status) derives the same id
    the worker uses (compose/worker_entry.py)."""
    return f"{model}-{hostname}"


def drain_key(worker_id: str) -> str:
    return DRAIN_PREFIX + worker_id


def job_key(job_id: str) -> str:
    return JOB_PREFIX + job_id


def result_key(job_id: str) -> str:
    """Celery's Redis result backend: the result is SET here and PUBLISHed on this channel."""
    return RESULT_PREFIX + job_id


def stats_key(queue: str) -> str:
    return STATS_PREFIX + queue


def held_key(worker_id: str) -> str:
    return HELD_PREFIX + worker_id


def wake_channel(queue: str) -> str:
    return WAKE_PREFIX + queue


def published_at(headers: dict) -> float | None:
    """When a waiting message was submitted, from its headers."""
    value = headers.get(HEADER_SUBMITTED_AT)
    try:
        return float(value) if value is not None else None
    except (TypeError, ValueError):
        return None

# Model versions (elastiq/modelstore.py): name -> versions, current, and the versions it replaced.
VERSIONS_PREFIX = "elastiq:versions:"     # + name -> hash {version: JSON summary}
CURRENT_PREFIX = "elastiq:current:"       # + name -> the version served now
HISTORY_PREFIX = "elastiq:history:"       # + name -> list of versions replaced by a publish, newest first
MODEL_UPDATES = "elastiq:model-updates"   # pub/sub: JSON {name, version, action} on publish/rollback


def versions_key(name: str) -> str:
    return VERSIONS_PREFIX + name


def current_key(name: str) -> str:
    return CURRENT_PREFIX + name


def history_key(name: str) -> str:
    return HISTORY_PREFIX + name
