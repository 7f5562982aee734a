"""The dead-letter list: jobs (and raw messages) that will not be run, each with its reason.

``elastiq:dead`` (``contract.DEAD_LETTER_KEY``) is a Redis list of JSON entries, newest
first: ``{"job_id", "model", "reason", "at", ...}``, plus ``content_type`` and a bounded
``body`` preview for messages that could not be decoded. A job id that has a record also
gets ``state=dead`` and the reason in its record, so ``Job.status()`` says ``dead``.

Reading is :func:`dead_letters` (used by ``elastiq status``).
"""

from __future__ import annotations

import json
import logging
import time

from elastiq import contract
from elastiq.jobrecord import JobRecord

log = logging.getLogger(__name__)

MAX_ENTRY_BYTES = 65536       # one entry, JSON-encoded
MAX_BODY_PREVIEW = 2048       # characters of an undecodable body kept for inspection
MAX_ENTRIES = 10000           # the list is trimmed to this many (oldest dropped)


def dead_letter(redis, job_id: str | None, model, reason: str, headers: dict | None = None,
                body: object = None, **extra) -> dict:
    """Record one dead letter (and mark the job's record ``dead`` when it has an id)."""
    entry = {"job_id": job_id if isinstance(job_id, str) else (None if job_id is None else repr(job_id)),
             "model": model if isinstance(model, str) or model is None else repr(model),
             "reason": reason, "at": time.time()}
    if isinstance(headers, dict) and headers.get(contract.HEADER_SUBMITTED_AT) is not None:
        entry["submitted_at"] = headers.get(contract.HEADER_SUBMITTED_AT)
    if body is not None:
        entry["body"] = preview(body)
    entry.update(extra)
    raw = json.dumps(entry, default=repr)
    if len(raw) > MAX_ENTRY_BYTES:
        entry.pop("body", None)
        raw = json.dumps(entry, default=repr)[:MAX_ENTRY_BYTES]
    pipe = redis.pipeline(transaction=False)
    pipe.lpush(contract.DEAD_LETTER_KEY, raw)
    pipe.ltrim(contract.DEAD_LETTER_KEY, 0, MAX_ENTRIES - 1)
    if entry["job_id"]:
        pipe.hset(contract.job_key(entry["job_id"]), mapping=JobRecord(state=contract.DEAD, reason=reason).to_hash())
    pipe.execute()
    log.error("dead-lettered %s: %s", entry["job_id"] or "a message with no job id", reason)
    return entry


def preview(body: object) -> str:
    """A bounded, printable view of a message body of any type."""
    if isinstance(body, (bytes, bytearray, memoryview)):
        text = bytes(body)[:MAX_BODY_PREVIEW].decode("utf-8", errors="backslashreplace")
    elif isinstance(body, str):
        text = body[:MAX_BODY_PREVIEW]
    else:
        try:
            text = json.dumps(body, default=repr)[:MAX_BODY_PREVIEW]
        except Exception:  # noqa: BLE001 - a body may be anything
            text = repr(body)[:MAX_BODY_PREVIEW]
    return text


def dead_letters(redis, limit: int = 10) -> list[dict]:
    """The newest ``limit`` dead letters (decoded; a corrupt entry shows as its raw text)."""
    out = []
    for raw in redis.lrange(contract.DEAD_LETTER_KEY, 0, max(0, limit) - 1):
        try:
            entry = json.loads(raw)
            if not isinstance(entry, dict):
                raise ValueError
        except ValueError:
            entry = {"job_id": None, "reason": "unreadable dead-letter entry", "raw": str(raw)[:200]}
        out.append(entry)
    return out
