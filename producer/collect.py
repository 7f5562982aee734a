"""Wait for many job results at once: one pub/sub connection, no round trip per job.

A worker stores each result under ``celery-task-meta-<id>`` (Celery's Redis result
backend format, workers/results.py) and publishes the same payload on a channel of that
name. Waiting for N jobs here costs one
SUBSCRIBE and one MGET per chunk of ids (the MGET catches results stored before the
subscription), then one pub/sub message per job — instead of a subscribe, a GET and an
unsubscribe per job as ``AsyncResult.get`` does one job at a time. If a message is ever
missed (a reconnect), a periodic MGET of the still-pending keys finds the result anyway.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterable

from elastiq import contract
from elastiq.errors import JobTimeoutError

CHUNK = 1000              # ids per SUBSCRIBE / MGET
RECHECK_S = 1.0           # MGET the pending keys after this long without a message


class ResultCollector:
    """One per :class:`~producer.client.Client`; used by one waiting thread at a time."""

    def __init__(self, redis):
        self._redis = redis
        self._pubsub = None
        self.lock = threading.Lock()

    def key(self, job_id: str) -> str:
        return contract.result_key(job_id)

    def wait(self, jobs: Iterable, timeout: float | None,
             on_ready: Callable[[object], None] | None = None) -> None:
        """Resolve every job (``job._resolve(meta)``); JobTimeoutError if some are left.

        The caller holds :attr:`lock`.
        """
        pending = {self.key(j.id): j for j in jobs if not j._resolved()}
        if not pending:
            return
        deadline = None if timeout is None else time.monotonic() + timeout
        pubsub = self._ensure_pubsub()
        keys = list(pending)
        try:
            for i in range(0, len(keys), CHUNK):
                chunk = keys[i:i + CHUNK]
                pubsub.subscribe(*chunk)
                self._check(pending, chunk, on_ready)
            last = time.monotonic()
            while pending:
                now = time.monotonic()
                if deadline is not None and now >= deadline:
                    raise JobTimeoutError(f"{len(pending)} job(s) have no result after {timeout}s")
                wait_s = RECHECK_S if deadline is None else min(RECHECK_S, deadline - now)
                msg = pubsub.get_message(ignore_subscribe_messages=True, timeout=max(0.0, wait_s))
                if msg is not None and msg.get("type") == "message":
                    self._deliver(pending, msg["channel"], msg["data"], on_ready)
                    last = time.monotonic()
                elif time.monotonic() - last >= RECHECK_S:
                    self._check(pending, list(pending), on_ready)
                    last = time.monotonic()
        except BaseException:
            self._drop_pubsub()          # a half-read connection is not reused
            raise
        finally:
            if self._pubsub is not None:
                try:
                    for i in range(0, len(keys), CHUNK):
                        self._pubsub.unsubscribe(*keys[i:i + CHUNK])
                except Exception:  # noqa: BLE001 - a broken subscription is rebuilt
                    self._drop_pubsub()

    # -- internals

    def _ensure_pubsub(self):
        if self._pubsub is None:
            self._pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
        return self._pubsub

    def _drop_pubsub(self) -> None:
        if self._pubsub is not None:
            try:
                self._pubsub.close()
            except Exception:  # noqa: BLE001 - closing, best effort
                pass
            self._pubsub = None

    def _check(self, pending: dict, keys: list[str], on_ready) -> None:
        for i in range(0, len(keys), CHUNK):
            chunk = keys[i:i + CHUNK]
            for key, raw in zip(chunk, self._redis.mget(chunk)):
                if raw is not None:
                    self._deliver(pending, key, raw, on_ready)

    def _deliver(self, pending: dict, key, raw, on_ready) -> None:
        if isinstance(key, bytes):
            key = key.decode()
        job = pending.get(key)
        if job is None:
            return                       # a late message for a job resolved earlier
        try:
            meta = json.loads(raw)
        except ValueError:
            return
        if not isinstance(meta, dict) or not job._resolve(meta):
            return
        del pending[key]
        if on_ready is not None:
            on_ready(job)

    def close(self) -> None:
        self._drop_pubsub()
