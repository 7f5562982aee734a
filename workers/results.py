"""Result records in the format of Celery's Redis result backend, encoded once.

``celery-task-meta-<id>`` holds ``{"status", "result", "traceback", "children",
"date_done", "task_id"}``; a failure's ``result`` is ``{"exc_type", "exc_message",
"exc_module"}`` (Celery's JSON form of an exception). So ``AsyncResult(id).get()`` in any
Celery client, Flower, and :class:`producer.Client` read what a worker writes here.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

from elastiq.errors import ElastiqError, JobFailedError


def success(job_id: str, value: object) -> str:
    return _meta(job_id, "SUCCESS", value)


def failure(job_id: str, exc: BaseException) -> str:
    if not isinstance(exc, ElastiqError):
        exc = JobFailedError(f"{type(exc).__name__}: {exc}")
    kind = type(exc)
    message = [a if isinstance(a, (str, int, float, bool, type(None))) else repr(a) for a in exc.args]
    return _meta(job_id, "FAILURE", {"exc_type": kind.__qualname__, "exc_message": message,
                                     "exc_module": kind.__module__})


def revoked(job_id: str, reason: str) -> str:
    return _meta(job_id, "REVOKED", {"exc_type": "JobCancelledError", "exc_message": [reason],
                                     "exc_module": "elastiq.errors"})


def _meta(job_id: str, status: str, result: object) -> str:
    return json.dumps({"status": status, "result": result, "traceback": None, "children": [],
                       "date_done": datetime.now(UTC).isoformat(), "task_id": job_id},
                      separators=(",", ":"))
