"""A submitted job (future-like) and its result."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from elastiq import contract
from elastiq.errors import BY_NAME, ElastiqError, JobCancelledError, JobFailedError, JobTimeoutError

READY = frozenset({"SUCCESS", "FAILURE", "REVOKED"})


@dataclass(frozen=True)
class Result:
    job_id: str
    model: str
    outputs: list[Any]
    timings: dict[str, Any]
    model_version: str | None = None      # the published version that answered (store: models)


class Job:
    """Returned by :meth:`Client.submit`. ``result(timeout)`` waits for the outputs."""

    __slots__ = ("_client", "id", "model", "_result", "_error")

    def __init__(self, client, job_id: str, model: str):
        self._client = client
        self.id = job_id
        self.model = model
        self._result: Result | None = None
        self._error: ElastiqError | None = None

    def __repr__(self) -> str:
        return f"<Job {self.id} model={self.model}>"

    def status(self) -> str:
        """queued, started, done, failed, dead, or unknown (no record of this id)."""
        if self._result is not None:
            return contract.DONE
        meta, record = self._client._lookup(self.id)
        state = record.status
        if self._error is not None or (meta and meta.get("status") in ("FAILURE", "REVOKED")):
            return contract.DEAD if state == contract.DEAD else contract.FAILED
        if meta and meta.get("status") == "SUCCESS":
            return contract.DONE
        return state

    def result(self, timeout: float | None = None) -> Result:
        """Wait for the result. Raises the worker's typed error, or JobTimeoutError."""
        if not self._resolved() and not self._client._wait([self], timeout):
            self._poll(timeout)           # another thread of this client is collecting
        if self._error is not None:
            raise self._error
        return self._result

    def cancel(self) -> bool:
        """Cancel the job if no worker has taken it yet. False if it already started or ended."""
        return self._client._cancel(self.id) if not self._resolved() else False

    # -- internals

    def _resolved(self) -> bool:
        return self._result is not None or self._error is not None

    def _resolve(self, meta: dict) -> bool:
        """Take a stored result record (Celery's format). False if it is not final yet."""
        status = meta.get("status")
        if status not in READY:
            return False
        value = meta.get("result")
        if status == "SUCCESS" and isinstance(value, dict) and "outputs" in value:
            self._result = Result(self.id, self.model, value["outputs"], value.get("timings") or {},
                                  value.get("model_version"))
        else:
            self._error = error_from(status, value, self.id)
        return True

    def _poll(self, timeout: float | None) -> None:
        end = None if timeout is None else time.monotonic() + timeout
        delay = 0.002
        while True:
            meta, _ = self._client._lookup(self.id, record=False)
            if meta and self._resolve(meta):
                return
            if end is not None and time.monotonic() >= end:
                raise JobTimeoutError(f"job {self.id} has no result after {timeout}s (status: {self.status()})")
            time.sleep(delay if end is None else max(0.0, min(delay, end - time.monotonic())))
            delay = min(0.05, delay * 2)


def error_from(status: str | None, value: object, job_id: str) -> ElastiqError:
    """The typed error for a failed job's stored result (never imports what it names)."""
    if status == "REVOKED":
        return JobCancelledError(f"job {job_id} was cancelled")
    if isinstance(value, dict) and "exc_type" in value:
        name = str(value.get("exc_type")).rsplit(".", 1)[-1]
        message = value.get("exc_message")
        args = message if isinstance(message, list) else [message]
        cls = BY_NAME.get(name) if value.get("exc_module") == "elastiq.errors" else None
        if cls is not None:
            return cls(*[str(a) for a in args][:1])
        return JobFailedError(f"job {job_id} failed on the worker: {name}: {' '.join(map(str, args))}")
    return JobFailedError(f"job {job_id} failed on the worker: {json.dumps(value, default=repr)[:500]}")
