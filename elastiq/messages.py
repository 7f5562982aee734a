"""The job message: one builder and one reader, for every part that touches the queues.

A job is a Celery protocol-2 task message for ``elastiq.infer``, wrapped in kombu's Redis
envelope exactly as ``celery.send_task`` writes it, so a plain Celery client can still
submit and Flower can still read it::

    {"body": base64(json([args, kwargs, embed])), "content-type": "application/json",
     "content-encoding": "utf-8", "headers": {"task", "id", ..., "elastiq_submitted_at"},
     "properties": {"delivery_info": {"routing_key": <queue>}, "priority", "delivery_tag", ...}}

The message sits in one Redis list per (queue, priority step), as kombu's Redis transport
keeps them: ``<queue>`` for priority 0-2, ``<queue>\\x06\\x16<step>`` for the other steps.
Lower steps are taken first.

Reading is :func:`decode`: JSON, then the shape; anything wrong raises :class:`BadMessage`
with a reason, never another exception type. (What may be decoded at all -- size -- and
which task names may run is the worker's admission policy: workers/admission.py.)
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import socket
import uuid
from bisect import bisect
from dataclasses import dataclass, field

from elastiq import contract

EMBED = {"callbacks": None, "errbacks": None, "chain": None, "chord": None}
JSON = "application/json"
_ORIGIN = f"gen{os.getpid()}@{socket.gethostname()}"


def list_for(queue: str, priority: int | None) -> str:
    """The Redis list a message of ``priority`` (0-9, None = 0) goes to, as kombu picks it."""
    p = 0 if priority is None else max(0, min(9, int(priority)))
    step = contract.PRIORITY_STEPS[bisect(contract.PRIORITY_STEPS, p) - 1]
    return queue if step == 0 else f"{queue}{contract.PRIORITY_SEP}{step}"


def task_message(job_id: str, kwargs: dict, *, queue: str, headers: dict | None = None,
                 priority: int | None = None, task: str = contract.TASK_NAME,
                 kwargsrepr: str = "{}") -> str:
    """The JSON queue item for one task, as ``celery.send_task`` would LPUSH it."""
    body = json.dumps([[], kwargs, EMBED], separators=(", ", ": ")).encode()
    all_headers = {
        "lang": "py", "task": task, "id": job_id, "shadow": None, "eta": None, "expires": None,
        "group": None, "group_index": None, "retries": 0, "timelimit": [None, None],
        "root_id": job_id, "parent_id": None, "argsrepr": "()", "kwargsrepr": kwargsrepr,
        "origin": _ORIGIN, "ignore_result": False, "replaced_task_nesting": 0,
        "stamped_headers": None, "stamps": {}, **(headers or {}),
    }
    return json.dumps({
        "body": base64.b64encode(body).decode(),
        "content-encoding": "utf-8",
        "content-type": JSON,
        "headers": all_headers,
        "properties": {
            "correlation_id": job_id, "reply_to": None, "delivery_mode": 2,
            "delivery_info": {"exchange": "", "routing_key": queue},
            "priority": 0 if priority is None else priority, "body_encoding": "base64",
            "delivery_tag": str(uuid.uuid4()),
        },
    })


def job_message(job_id: str, model: str, inputs: list[str], params: dict, *, submitted_at: float,
                deadline: float | None = None, priority: int | None = None) -> tuple[str, str]:
    """``(list key, queue item)`` for one elastiq job."""
    queue = contract.queue_for(model)
    headers = {contract.HEADER_SUBMITTED_AT: submitted_at}
    if deadline is not None:
        headers[contract.HEADER_DEADLINE] = deadline
    raw = task_message(job_id, {"model": model, "inputs": inputs, "params": params}, queue=queue,
                       headers=headers, priority=priority,
                       kwargsrepr=f"{{'model': {model!r}, 'inputs': <{len(inputs)} texts>}}")
    return list_for(queue, priority), raw


# --- reading


class BadMessage(ValueError):
    """A queue item that cannot be run; ``job_id`` is set when the item names one."""

    def __init__(self, reason: str, job_id: str | None = None, task: str | None = None,
                 headers: dict | None = None):
        super().__init__(reason)
        self.reason = reason
        self.job_id = job_id
        self.task = task
        self.headers = headers or {}


@dataclass
class TaskMessage:
    job_id: str
    task: str
    args: list
    kwargs: dict
    headers: dict = field(default_factory=dict)
    queue: str | None = None

    def header_float(self, name: str) -> float | None:
        try:
            value = self.headers.get(name)
            return float(value) if value is not None else None
        except (TypeError, ValueError):
            return None


def decode(raw: str | bytes) -> TaskMessage:
    """Read one queue item (the caller bounds its size first: workers/admission.py)."""
    try:
        env = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise BadMessage("the queue item is not JSON") from None
    if not isinstance(env, dict):
        raise BadMessage(f"the queue item is a JSON {type(env).__name__}, not a task message")
    headers = env.get("headers")
    headers = headers if isinstance(headers, dict) else {}
    job_id = headers.get("id")
    job_id = job_id if isinstance(job_id, str) and 0 < len(job_id) <= 200 else None
    task = headers.get("task") if isinstance(headers.get("task"), str) else None
    props = env.get("properties") if isinstance(env.get("properties"), dict) else {}
    info = props.get("delivery_info") if isinstance(props.get("delivery_info"), dict) else {}
    queue = info.get("routing_key") if isinstance(info.get("routing_key"), str) else None

    def bad(reason: str) -> BadMessage:
        return BadMessage(reason, job_id, task, headers)

    if task is None:
        raise bad("not a task message (no task header)")
    if job_id is None:
        raise bad("task message without a string id header")
    if env.get("content-type") != JSON:
        raise bad(f"content type {str(env.get('content-type'))[:60]!r} is not accepted (JSON only)")
    body = _body(env, props, bad)
    if not isinstance(body, list) or len(body) != 3:
        raise bad("the body is not [args, kwargs, embed]")
    args, kwargs, embed = body
    if not isinstance(args, list):
        raise bad("the task args are not a list")
    if not isinstance(kwargs, dict):
        raise bad("the task kwargs are not a mapping")
    if embed is not None and not isinstance(embed, dict):
        raise bad("the embed part is not a mapping")
    if (embed and any(embed.get(k) for k in ("callbacks", "errbacks", "chain", "chord"))) \
            or headers.get("chord") or headers.get("group_index") is not None:
        raise bad("callbacks, errbacks, chains, groups and chords are not accepted")
    return TaskMessage(job_id, task, args, kwargs, headers, queue)


def _body(env: dict, props: dict, bad):
    body = env.get("body")
    if not isinstance(body, str):
        raise bad("the message body is not a string")
    if props.get("body_encoding") == "base64":
        try:
            body = base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError):
            raise bad("the message body is not valid base64") from None
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise bad("the message body is not JSON") from None


def submitted_at(raw: str) -> float | None:
    """The submit time in a queue item's headers (None if it has none or is unreadable)."""
    try:
        headers = json.loads(raw).get("headers") or {}
        return contract.published_at(headers)
    except (ValueError, AttributeError, TypeError):
        return None
