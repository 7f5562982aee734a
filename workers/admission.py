"""What may enter a worker from its queue, decided before anything is decoded or run.

Two rules, as plain functions any consume loop can call:

- :func:`task_refusal`: a worker runs its *own* task names (:data:`OWN_TASKS`) and
  nothing else. Celery registers built-in tasks in every app (``celery.group``,
  ``celery.chord_unlock``, ``celery.backend_cleanup``, ``celery.chain``, ``celery.map``,
  ...); a message naming one of them is refused, never dispatched.
- :func:`size_refusal`: a queue item longer than :func:`max_item_bytes` -- the job limit
  (``ELASTIQ_MAX_MESSAGE_BYTES``) as it can look on the wire, plus the envelope -- is
  refused *before* it is JSON-decoded. :func:`id_hint` reads the job id from the
  envelope's tail without decoding the body, so the waiting client can still be answered.
"""

from __future__ import annotations

import re

from elastiq import contract
from elastiq.settings import Limits

OWN_TASKS = frozenset({contract.TASK_NAME})

# A valid job's body is JSON [args, kwargs, embed] with kwargs {"model", "inputs", "params"}.
# The client checks the JSON size of [inputs, params] in UTF-8 (elastiq/validate.py); kombu's
# JSON is ASCII-only, so a character of 2 UTF-8 bytes becomes a 6-byte \uXXXX escape (4
# bytes become a 12-byte pair; control characters are escaped in both): at most 3x. base64
# adds 4/3, and the envelope (headers, properties, argsrepr...) a few KB.
WIRE_ESCAPE = 3
ENVELOPE_ALLOWANCE = 64 * 1024
_TAIL = 64 * 1024
_ID = re.compile(r'"id":\s*"([A-Za-z0-9._:-]{1,200})"')


def task_refusal(name: object) -> str | None:
    """Why a message naming task ``name`` must not run here, or None if it may."""
    if isinstance(name, str) and name in OWN_TASKS:
        return None
    shown = name[:200] if isinstance(name, str) else repr(name)[:200]
    return f"task {shown!r} is not run by this worker (it runs only {sorted(OWN_TASKS)})"


def max_item_bytes(limits: Limits) -> int:
    """The longest queue item a valid job can be (see the module notes)."""
    return (limits.max_message_bytes * WIRE_ESCAPE * 4) // 3 + ENVELOPE_ALLOWANCE


def size_refusal(item: str | bytes, limits: Limits) -> str | None:
    """Why ``item`` is too large to decode, or None. Costs a ``len``, nothing more."""
    size, limit = len(item), max_item_bytes(limits)
    if size <= limit:
        return None
    return (f"queue item of {size} bytes is over the {limit}-byte limit for a job "
            f"(ELASTIQ_MAX_MESSAGE_BYTES={limits.max_message_bytes} plus envelope); not decoded")


def id_hint(item: str | bytes) -> str | None:
    """The task id in an envelope's headers, read from its last 64 KB only.

    kombu writes ``{"body": ..., "content-encoding", "content-type", "headers", "properties"}``
    with the body first, base64 (no quotes), so the headers are in the tail. A hint: it only
    decides which waiting job is told that its message was refused."""
    tail = item[-_TAIL:]
    if isinstance(tail, bytes):
        tail = tail.decode("utf-8", "replace")
    start = tail.rfind('"headers"')
    if start < 0:
        return None
    m = _ID.search(tail, start)
    return m.group(1) if m else None
