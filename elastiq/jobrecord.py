"""A job's record: the hash ``elastiq:job:<id>`` (contract.job_key), its fields spelled once.

Many writers fill it in parts -- the producer (``state`` queued, ``model``, ``submitted_at``,
producer/publish.py), the reservation scripts (``deliveries``, ``state`` started, ``worker``,
``first_worker``, ``reaped``; elastiq/reservations.py), a client cancelling (``cancelled``),
the suspect runner (``alone``), a training worker (``progress``, JSON), the dead-letter
list (``state`` dead, ``reason``) -- so :meth:`JobRecord.to_hash` writes only the fields
that are set, and :meth:`JobRecord.from_hash` reads whatever part exists. Lua scripts name
the fields through :func:`lua` (``$STATE`` -> ``state``), so they spell them the same way.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, fields

from elastiq import contract
from elastiq.errors import WireFormatError

STATE, MODEL, SUBMITTED_AT = "state", "model", "submitted_at"
DELIVERIES, WORKER, FIRST_WORKER, REAPED = "deliveries", "worker", "first_worker", "reaped"
ALONE, CANCELLED, REASON, PROGRESS = "alone", "cancelled", "reason", "progress"


@dataclass(frozen=True)
class JobRecord:
    state: str | None = None          # contract.QUEUED / STARTED / DONE / FAILED / DEAD
    model: str | None = None
    submitted_at: float | None = None
    deliveries: int | None = None     # times a worker took it (a release gives one back)
    worker: str | None = None         # the worker holding it (or that last held it)
    first_worker: str | None = None
    reaped: int | None = None         # times it was taken back from a dead worker
    alone: str | None = None          # a worker running it alone (a suspect of killing workers)
    cancelled: bool = False
    reason: str | None = None         # why it was dead-lettered
    progress: dict | None = None      # a training job's latest progress

    @property
    def status(self) -> str:
        """The state, or ``unknown`` (no record)."""
        return self.state or contract.UNKNOWN

    def to_hash(self) -> dict[str, str]:
        """The fields that are set, encoded for HSET (a partial record: only what this writer knows)."""
        out = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None or value is False:
                continue
            if f.name == CANCELLED:
                value = "1"
            elif f.name == PROGRESS:
                value = json.dumps(value)
            elif f.name == SUBMITTED_AT:
                value = repr(float(value))
            out[f.name] = str(value)
        return out

    @classmethod
    def from_hash(cls, h: Mapping) -> JobRecord:
        """Read an HGETALL reply (any subset of the fields; unknown ones are ignored).
        Raises WireFormatError if a field does not hold what it should."""
        values: dict = {}
        for name in (STATE, MODEL, WORKER, FIRST_WORKER, ALONE, REASON):
            if h.get(name) is not None:
                values[name] = _text(h[name])
        for name, kind in ((SUBMITTED_AT, float), (DELIVERIES, int), (REAPED, int)):
            if h.get(name) is not None:
                values[name] = _number(name, kind, h[name])
        if h.get(CANCELLED) is not None:
            values[CANCELLED] = _text(h[CANCELLED]) not in ("", "0")
        if h.get(PROGRESS) is not None:
            values[PROGRESS] = _progress(h[PROGRESS])
        return cls(**values)


def read_record(redis, job_id: str) -> JobRecord:
    """A job's record as it is now (an empty JobRecord if there is none)."""
    return JobRecord.from_hash(redis.hgetall(contract.job_key(job_id)))


def _text(value) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _number(name: str, kind: type, value):
    try:
        return kind(_text(value))
    except ValueError:
        raise WireFormatError(f"job record: {name} is not {'an integer' if kind is int else 'a number'}: "
                              f"{_text(value)[:80]!r}") from None


def _progress(value) -> dict:
    try:
        doc = json.loads(value)
    except (TypeError, ValueError):
        doc = None
    if not isinstance(doc, dict):
        raise WireFormatError(f"job record: progress is not a JSON object: {_text(value)[:80]!r}")
    return doc


# What a Lua script may name: $STATE, $DELIVERIES, ... and the states $QUEUED, $STARTED.
_LUA_NAMES = {
    **{n.upper(): n for n in (STATE, MODEL, SUBMITTED_AT, DELIVERIES, WORKER, FIRST_WORKER, REAPED,
                              ALONE, CANCELLED, REASON, PROGRESS)},
    "QUEUED": contract.QUEUED, "STARTED": contract.STARTED,
}


def lua(script: str) -> str:
    """``script`` with the record's field names put in (``'$STATE'`` -> ``'state'``); an unknown
    ``$NAME`` fails here (KeyError, at import), not in Redis. Other ``$`` (a Lua pattern's
    ``$'``) are left alone."""
    return re.sub(r"\$([A-Z][A-Z_]*)\b", lambda m: _LUA_NAMES[m.group(1)], script)
