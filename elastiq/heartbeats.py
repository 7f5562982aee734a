"""A worker's heartbeat: one JSON document per live worker, under a key with a TTL.

The worker writes it (:mod:`workers.heartbeat`, from ``WorkerState.snapshot``); the
autoscaler's signals and drains, the local stack's status, the compose health check and
the tests read it here, as a :class:`Heartbeat`. The JSON keys are the field names, in
field order, so a worker image built before this module and a reader built after it (or
the other way round) read each other: unknown keys are kept in ``extra`` and written back,
missing optional ones take their defaults.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field, fields
from typing import Any

from elastiq import contract
from elastiq.errors import WireFormatError

log = logging.getLogger(__name__)

# What each key holds; a JSON null always means "not known" (the field's default).
_STR, _INT, _NUM, _BOOL, _STRS, _DICT = "str", "int", "num", "bool", "strs", "dict"
_KINDS = {
    "host": _STR, "pid": _INT, "queues": _STRS, "slots": _INT, "threads": _INT, "busy": _INT,
    "busy_by_queue": _DICT, "ready": _BOOL, "draining": _BOOL, "started_at": _NUM, "ready_at": _NUM,
    "cold_start_s": _NUM, "engine_build_s": _NUM, "rss_mb": _NUM, "cpu_s": _NUM, "done": _INT, "failed": _INT, "at": _NUM,
    "stop_reason": _STR, "lost_ownership": _INT, "models": _STRS, "engines": _DICT,
    "heavy_modules": _STRS, "batching": _DICT,
}
# Written by a serving worker only (WorkerState.snapshot's ``extra``): left out when None.
_SERVING = ("models", "engines", "heavy_modules", "batching")


@dataclass(frozen=True)
class Heartbeat:
    worker_id: str
    host: str | None = None
    pid: int | None = None
    queues: tuple[str, ...] = ()
    slots: int | None = None             # jobs it may hold at once
    threads: int | None = None           # compute threads of its models
    busy: int = 0                        # jobs held now (taken, not yet answered)
    busy_by_queue: dict[str, int] = field(default_factory=dict)
    ready: bool = False                  # models loaded, taking jobs (False while draining)
    draining: bool = False               # takes no new jobs; exits once busy is 0
    started_at: float | None = None      # UNIX seconds
    ready_at: float | None = None
    cold_start_s: float | None = None    # ready_at - started_at
    engine_build_s: float | None = None  # of cold_start_s: one-time engine export (the cache keeps it)
    rss_mb: float | None = None
    cpu_s: float | None = None           # user + system CPU seconds of the process
    done: int = 0
    failed: int = 0
    at: float | None = None              # when this beat was written
    stop_reason: str | None = None
    lost_ownership: int = 0              # answers refused: its jobs had been handed out again
    models: tuple[str, ...] | None = None
    engines: dict[str, dict] | None = None         # model -> {"kind", "engine", ...}
    heavy_modules: tuple[str, ...] | None = None   # big ML libraries imported (torch, onnxruntime, ...)
    batching: dict[str, dict] | None = None        # model -> batcher stats
    extra: dict[str, Any] = field(default_factory=dict, compare=False)   # keys this reader does not know

    def serves(self, queue: str) -> bool:
        return queue in self.queues

    def busy_on(self, queue: str) -> int:
        return int(self.busy_by_queue.get(queue, 0))

    def engine(self, model: str) -> dict:
        """The engine description of ``model`` on this worker ({} if it does not serve it)."""
        return (self.engines or {}).get(model) or {}

    def to_dict(self) -> dict:
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "extra" or (f.name in _SERVING and value is None):
                continue
            out[f.name] = list(value) if isinstance(value, tuple) else value
        return {**out, **self.extra}

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    @classmethod
    def from_dict(cls, doc: object) -> Heartbeat:
        """Raises WireFormatError if ``doc`` is not a heartbeat (no worker id, a key of the wrong type)."""
        if not isinstance(doc, dict):
            raise WireFormatError(f"heartbeat: a JSON object expected, got {type(doc).__name__}")
        wid = doc.get("worker_id")
        if not isinstance(wid, str) or not wid:
            raise WireFormatError(f"heartbeat: worker_id must be a non-empty string, got {wid!r:.80}")
        values = {k: _decode(wid, k, kind, doc[k]) for k, kind in _KINDS.items() if doc.get(k) is not None}
        extra = {k: v for k, v in doc.items() if k != "worker_id" and k not in _KINDS}
        return cls(worker_id=wid, **values, extra=extra)

    @classmethod
    def from_json(cls, raw: str | bytes) -> Heartbeat:
        try:
            doc = json.loads(raw)
        except (ValueError, TypeError) as exc:
            raise WireFormatError(f"heartbeat: not JSON ({exc})") from None
        return cls.from_dict(doc)


def _decode(wid: str, key: str, kind: str, value: object):
    ok = {
        _STR: isinstance(value, str),
        _INT: isinstance(value, int) and not isinstance(value, bool),
        _NUM: isinstance(value, (int, float)) and not isinstance(value, bool),
        _BOOL: isinstance(value, bool),
        _STRS: isinstance(value, list) and all(isinstance(x, str) for x in value),
        _DICT: isinstance(value, dict),
    }[kind]
    if not ok:
        raise WireFormatError(f"heartbeat of {wid!r}: {key} is not {_NAMES[kind]}: {value!r:.80}")
    if kind == _NUM:
        return float(value)
    return tuple(value) if kind == _STRS else value


_NAMES = {_STR: "a string", _INT: "an integer", _NUM: "a number", _BOOL: "true/false",
          _STRS: "a list of strings", _DICT: "an object"}


def read_heartbeats(redis) -> dict[str, Heartbeat]:
    """Every live worker's heartbeat, by worker id (a malformed one is skipped, and logged)."""
    keys = list(redis.scan_iter(match=contract.HEARTBEAT_PREFIX + "*", count=500))
    if not keys:
        return {}
    beats = {}
    for key, raw in zip(keys, redis.mget(keys)):
        if raw:
            try:
                hb = Heartbeat.from_json(raw)
            except WireFormatError as exc:
                log.debug("skipping %s: %s", key, exc)
                continue
            beats[hb.worker_id] = hb
    return beats


def read_heartbeat(redis, worker_id: str) -> Heartbeat | None:
    """One worker's heartbeat; None if it has none (or an unreadable one)."""
    raw = redis.get(contract.heartbeat_key(worker_id))
    try:
        return Heartbeat.from_json(raw) if raw else None
    except WireFormatError:
        return None
