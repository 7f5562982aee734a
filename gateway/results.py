"""Read a job's outcome from what the wire holds, without Celery objects.

A result is Celery's Redis-backend JSON under ``celery-task-meta-<id>``
(``{"status", "result", ...}``); a failure carries ``{"exc_type", "exc_message"}``,
rebuilt here as the same :mod:`elastiq.errors` type the Python client raises. The job
record ``elastiq:job:<id>`` says queued / started / done / failed / dead.
"""

from __future__ import annotations

import json

import orjson

from elastiq import contract
from elastiq.errors import BY_NAME, ElastiqError, JobFailedError
from elastiq.jobrecord import JobRecord

READY = frozenset({"SUCCESS", "FAILURE", "REVOKED"})


def decode(raw) -> dict | None:
    """A ready result meta, or None (absent, not ready, or not a result)."""
    if raw is None:
        return None
    try:
        meta = orjson.loads(raw)                 # ≈ 4× json.loads on a vector's floats
    except (TypeError, ValueError):
        try:
            meta = json.loads(raw)               # what orjson refuses and json reads (NaN)
        except (TypeError, ValueError):
            return None
    if not isinstance(meta, dict) or meta.get("status") not in READY:
        return None
    return meta


def error_of(meta: dict, job_id: str) -> ElastiqError | None:
    """The typed error of a failed job, or None if it succeeded."""
    status = meta.get("status")
    value = meta.get("result")
    if status == "SUCCESS" and isinstance(value, dict) and "outputs" in value:
        return None
    if status == "REVOKED":
        return JobFailedError(f"job {job_id} was revoked before it ran")
    if isinstance(value, dict) and "exc_type" in value:
        args = value.get("exc_message")
        message = " ".join(map(str, args)) if isinstance(args, (list, tuple)) else str(args)
        cls = BY_NAME.get(str(value["exc_type"]))
        if cls is not None:
            return cls(message)
        return JobFailedError(f"job {job_id} failed on the worker: {value['exc_type']}: {message}")
    return JobFailedError(f"job {job_id} failed on the worker: {value!r}")


def status_of(record: JobRecord, meta: dict | None) -> str:
    """queued | started | done | failed | dead | unknown, as ``Job.status()`` reports it."""
    if meta is not None:
        if meta.get("status") == "SUCCESS":
            return contract.DONE
        return contract.DEAD if record.state == contract.DEAD else contract.FAILED
    return record.status
