"""Wait for many job results on the event loop: one pub/sub pattern, no thread per request.

A worker SETs each result under ``celery-task-meta-<id>`` and PUBLISHes it on the channel
of the same name (Celery's Redis result-backend format). This gateway chooses its own job
ids (:meth:`ResultWaiter.new_id`: a UUID whose first group is this process's random
prefix), so it listens for all of them with *one* ``PSUBSCRIBE celery-task-meta-<prefix>-*``
made at start -- no SUBSCRIBE/UNSUBSCRIBE per job -- and a request registers its future
*before* its job is queued: a result cannot arrive unheard.

- :meth:`watch` returns a future per job id; a published result resolves it;
- after each (re)connection, one MGET of every id still awaited catches what was published
  while the connection was down;
- every ``recheck_s`` the ids awaited longer than that are MGET too, so a lost message
  costs at most ``recheck_s`` of delay, never a lost result.

The clock is injected.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
import uuid
from dataclasses import dataclass

from elastiq import contract
from gateway import results

log = logging.getLogger(__name__)

CHUNK = 1000              # keys per MGET


@dataclass
class _Watch:
    future: asyncio.Future
    since: float


class ResultWaiter:
    def __init__(self, redis, *, recheck_s: float = 1.0, clock=time.monotonic, on_error=None,
                 on_result=None):
        self._redis = redis                   # redis.asyncio client (decode_responses=True)
        self._pubsub = None
        self._recheck_s = recheck_s
        self._clock = clock
        self._on_error = on_error or (lambda where, exc: None)
        self._on_result = on_result or (lambda via: None)     # via: "message" or "mget"
        self._watching: dict[str, _Watch] = {}      # result key -> watch
        self._tasks: list[asyncio.Task] = []
        self.prefix = secrets.token_hex(4)          # the first group of every id this gateway makes
        self.pattern = contract.result_key(self.prefix + "-*")
        self.connected = False

    # -- lifecycle

    async def start(self) -> None:
        self._pubsub = self._redis.pubsub()
        self._tasks = [asyncio.create_task(self._read_loop(), name="waiter-read"),
                       asyncio.create_task(self._recheck_loop(), name="waiter-recheck")]

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for w in self._watching.values():
            if not w.future.done():
                w.future.cancel()
        if self._pubsub is not None:
            await self._pubsub.aclose()

    @property
    def pending(self) -> int:
        return len(self._watching)

    # -- the API

    def new_id(self) -> str:
        """A job id (UUID-shaped) whose result this waiter hears."""
        return f"{self.prefix}-{str(uuid.uuid4())[9:]}"

    def watch(self, job_id: str) -> asyncio.Future:
        """A future that resolves to the job's ready result meta (a dict). Watch before the
        job is queued (ids from :meth:`new_id`); an id made elsewhere is found by MGET only."""
        key = contract.result_key(job_id)
        w = self._watching.get(key)
        if w is None:
            w = self._watching[key] = _Watch(asyncio.get_running_loop().create_future(), self._clock())
        return w.future

    def forget(self, job_id: str) -> None:
        """Stop watching (after a result, or when the caller gives up)."""
        w = self._watching.pop(contract.result_key(job_id), None)
        if w is not None and not w.future.done():
            w.future.cancel()

    async def wait(self, job_ids: list[str], timeout: float) -> dict[str, dict]:
        """Ready metas by job id; the ids still missing after ``timeout`` are left out."""
        futures = {job_id: self.watch(job_id) for job_id in job_ids}
        try:
            await asyncio.wait(list(futures.values()), timeout=timeout)
        finally:
            for job_id in job_ids:
                self.forget(job_id)
        return {job_id: f.result() for job_id, f in futures.items() if f.done() and not f.cancelled()}

    # -- internals

    def _deliver(self, key: str, raw, via: str) -> None:
        w = self._watching.get(key)
        if w is None:
            return                           # late, or another request's (resolved already)
        meta = results.decode(raw)
        if meta is None:
            return
        if not w.future.done():
            w.future.set_result(meta)
            self._on_result(via)
        self._watching.pop(key, None)

    async def _check(self, keys: list[str]) -> None:
        for i in range(0, len(keys), CHUNK):
            chunk = [k for k in keys[i:i + CHUNK] if k in self._watching]
            if chunk:
                for key, raw in zip(chunk, await self._redis.mget(chunk)):
                    if raw is not None:
                        self._deliver(key, raw, "mget")

    async def _read_loop(self) -> None:
        failures = 0
        while True:
            try:
                if not self.connected:
                    await self._pubsub.psubscribe(self.pattern)
                    self.connected = True
                    await self._check(list(self._watching))   # published while we were away
                msg = await self._pubsub.get_message(timeout=1.0)
                failures = 0
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - reconnect on any error
                self.connected = False
                failures += 1
                self._on_error("read", exc)
                if failures == 1:
                    log.warning("result waiter: lost the pub/sub connection (%s); reconnecting", exc)
                await asyncio.sleep(min(5.0, 0.1 * 2 ** min(failures, 6)))
                continue
            if msg is not None and msg.get("type") == "pmessage":
                self._deliver(msg["channel"], msg["data"], "message")

    async def _recheck_loop(self) -> None:
        while True:
            await asyncio.sleep(self._recheck_s)
            now = self._clock()
            late = [k for k, w in self._watching.items() if now - w.since >= self._recheck_s]
            if not late:
                continue
            try:
                await self._check(late)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - the next recheck tries again
                self._on_error("recheck", exc)
