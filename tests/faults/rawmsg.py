"""Build Celery/kombu messages by hand, as they sit in a Redis list, to push with LPUSH.

A kombu Redis message is a JSON envelope ``{"body", "content-encoding", "content-type",
"headers", "properties"}`` with the body base64-encoded; Celery's protocol 2 puts the task
name and id in the headers and ``[args, kwargs, embed]`` in the body.
"""

from __future__ import annotations

import base64
import json
import uuid

from elastiq import contract

EMBED = {"callbacks": None, "errbacks": None, "chain": None, "chord": None}


def headers_for(task_id: str | None, task: str | None = contract.TASK_NAME, **extra) -> dict:
    h = {"lang": "py", "root_id": task_id, "parent_id": None, "group": None, "retries": 0,
         "timelimit": [None, None], "eta": None, "expires": None, "argsrepr": "()", "kwargsrepr": "{}",
         "origin": "fuzz", "ignore_result": False}
    if task is not None:
        h["task"] = task
    if task_id is not None:
        h["id"] = task_id
    h.update(extra)
    return h


def envelope(body: bytes, *, content_type: str = "application/json", encoding: str = "utf-8",
             headers: object = None, queue: str = "elastiq.debug", task_id: str | None = None) -> str:
    return json.dumps({
        "body": base64.b64encode(body).decode(),
        "content-encoding": encoding,
        "content-type": content_type,
        "headers": headers if headers is not None else {},
        "properties": {
            "correlation_id": task_id or str(uuid.uuid4()), "reply_to": None,
            "delivery_mode": 2, "priority": 0, "body_encoding": "base64",
            "delivery_info": {"exchange": "", "routing_key": queue},
            "delivery_tag": str(uuid.uuid4()),
        },
    })


def task_message(kwargs: object, *, task_id: str | None = None, task: str | None = contract.TASK_NAME,
                 args: object = (), queue: str = "elastiq.debug") -> str:
    task_id = task_id or str(uuid.uuid4())
    body = json.dumps([list(args) if isinstance(args, tuple) else args, kwargs, EMBED]).encode()
    return envelope(body, headers=headers_for(task_id, task), queue=queue, task_id=task_id)
