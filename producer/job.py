"""A submitted job (future-like) and its result."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from elastiq import contract
from elastiq.errors import BY_NAME, ElastiqError, JobFailedError, JobTimeoutError


@dataclass(frozen=True)
class Result:
    job_id: str
    model: str
    outputs: list[Any]
    timings: dict[str, Any]


class Job:
    """Returned by :meth:`Client.submit`. ``result(timeout)`` waits for the outputs."""

    def __init__(self, client, job_id: str, model: str, async_result):
        self._client = client
        self.id = job_id
        self.model = model
        self._async = async_result
        self._result: Result | None = None
        self._error: ElastiqError | None = None

    def __repr__(self) -> str:
        return f"<Job {self.id} model={self.model}>"

    def status(self) -> str:
        """queued, started, done, failed, dead, or unknown (no record of this id)."""
        if self._result is not None:
            return contract.DONE
        if self._error is not None:
            return contract.DEAD if self._client._record(self.id).get("state") == contract.DEAD \
                else contract.FAILED
        state = self._async.state
        if state == "SUCCESS":
            return contract.DONE
        if state in ("FAILURE", "REVOKED"):
            record = self._client._record(self.id)
            return contract.DEAD if record.get("state") == contract.DEAD else contract.FAILED
        record = self._client._record(self.id)
        return record.get("state", contract.UNKNOWN)

    def result(self, timeout: float | None = None) -> Result:
        """Wait for the result. Raises the worker's typed error, or JobTimeoutError."""
        if not self._resolved():
            if not self._client._wait([self], timeout):
                # another thread of this client is collecting: wait through Celery instead
                try:
                    value = self._async.get(timeout=timeout, propagate=False, disable_sync_subtasks=False)
                except TimeoutError:
                    raise JobTimeoutError(f"job {self.id} has no result after {timeout}s "
                                          f"(status: {self.status()})") from None
                try:
                    self._result = self._from_celery(value)
                except ElastiqError as exc:
                    self._error = exc
        if self._error is not None:
            raise self._error
        return self._result

    def _resolved(self) -> bool:
        return self._result is not None or self._error is not None

    def _resolve(self, meta: dict) -> None:
        """Take a ready result meta (as the backend stores it) without another round trip."""
        # Straight into the AsyncResult's cache: its on_ready hook would unsubscribe Celery's
        # own result consumer, one round trip per job, for a subscription we never made.
        self._async._set_cache(self._async.backend.meta_from_decoded(meta))
        try:
            self._result = self._from_celery(self._async.result)
        except ElastiqError as exc:
            self._error = exc

    def cancel(self) -> bool:
        """Revoke the job if it has not started. Returns False if it already ran."""
        if self._resolved() or self.status() in (contract.DONE, contract.FAILED, contract.DEAD):
            return False
        self._async.revoke()
        return True

    def _from_celery(self, value) -> Result:
        if self._async.state == "SUCCESS" and isinstance(value, dict):
            return Result(self.id, self.model, value["outputs"], value["timings"])
        raise as_typed_error(value, self.id)


def as_typed_error(value, job_id: str) -> ElastiqError:
    """Turn what Celery gives back for a failed task into an ElastiqError subclass."""
    if isinstance(value, ElastiqError):
        return value
    if isinstance(value, BaseException):
        cls = BY_NAME.get(type(value).__name__)
        if cls is not None:
            return cls(*value.args)
        return JobFailedError(f"job {job_id} failed on the worker: {type(value).__name__}: {value}")
    return JobFailedError(f"job {job_id} failed on the worker: {value!r}")
