"""One small error hierarchy, shared by the client, the workers and the autoscaler.

Every class takes a single message argument so that Celery can carry it across the
wire as JSON (``exc_type``/``exc_message``) and the client can rebuild the same type.
"""

from __future__ import annotations


class ElastiqError(Exception):
    """Base class of every error elastiq raises on purpose."""


class ConfigError(ElastiqError):
    """A setting is missing or invalid; raised when the settings object is built."""


# --- bad input: raised by the client before anything is queued, and again by the worker


class ValidationError(ElastiqError):
    """The job was refused because its input is not acceptable."""


class UnknownModelError(ValidationError):
    """The model name is not in the registry."""


class EmptyInputError(ValidationError):
    """The job has no inputs, or an input is empty."""


class InputTypeError(ValidationError):
    """An input or parameter has the wrong type."""


class InputTooLargeError(ValidationError):
    """A text, the item count or the encoded message is over its limit."""


class BadParamsError(ValidationError):
    """An unknown or invalid job parameter."""


class UnknownDatasetError(ValidationError):
    """A training job names a dataset that is not known (elastiq/datasets.py)."""


class BadHyperParamsError(BadParamsError):
    """A training job's hyper-parameters are out of range or of the wrong type."""


class ModelVersionError(ElastiqError):
    """A model version is unknown, or its artifact failed its hash or parity check."""


# --- what happened to a job


class JobError(ElastiqError):
    """The job did not produce a result."""


class JobFailedError(JobError):
    """The worker ran the job and it failed; the message is the worker's."""


class JobTimeoutError(JobError, TimeoutError):
    """The caller's wait for a result ran out (the job may still complete)."""


class JobExpiredError(JobError):
    """The job's deadline passed before a worker could run it; it was not run."""


class JobCancelledError(JobError):
    """The job was cancelled before a worker took it; it was not run."""


class DeadLetteredError(JobError):
    """The job was delivered too many times (or could not be decoded) and was moved to
    the dead-letter list with its reason."""


class ModelLoadError(ElastiqError):
    """A model could not be loaded from its source."""


class BrokerUnavailableError(ElastiqError):
    """Redis could not be reached."""


class BrokerFullError(BrokerUnavailableError):
    """Redis refused a write: its memory is at ``maxmemory`` (``noeviction``: nothing is evicted)."""


def broker_error(url: str, exc: BaseException) -> BrokerUnavailableError:
    """The typed error for a failed Redis call: full (an ``OOM`` refusal), else unreachable.
    ``url`` must already be free of its password."""
    text = str(exc)
    if type(exc).__name__ == "OutOfMemoryError" or text.startswith("OOM") or "> 'maxmemory'" in text:
        return BrokerFullError(f"Redis at {url} is full (used memory > maxmemory) and refused the write: "
                               f"{text}. Answers and job records stay ELASTIQ_RESULT_TTL_S; `elastiq status` "
                               "shows the memory used")
    return BrokerUnavailableError(f"cannot reach Redis at {url}: {exc}")


class UnknownJobError(ElastiqError):
    """No record of this job id: never submitted, or its record has expired."""


class BacklogFullError(ElastiqError):
    """The model's queue holds more waiting jobs than the configured bound: try later."""


class WireFormatError(ElastiqError):
    """A document another part wrote (a heartbeat, a job record, a decision row) is malformed."""


# Names that a worker may send back and the client may rebuild. Anything else that
# fails on a worker arrives as JobFailedError carrying the original type name.
BY_NAME: dict[str, type[ElastiqError]] = {
    cls.__name__: cls
    for cls in (
        ElastiqError, ConfigError, ValidationError, UnknownModelError, EmptyInputError,
        InputTypeError, InputTooLargeError, BadParamsError, UnknownDatasetError, BadHyperParamsError,
        ModelVersionError, JobError, JobFailedError,
        JobTimeoutError, JobExpiredError, JobCancelledError, DeadLetteredError, ModelLoadError,
        BrokerUnavailableError,
    )
}
