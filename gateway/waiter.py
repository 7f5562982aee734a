"""Wait for many job results on the event loop: one pub/sub connection, no thread per request.

Celery's Redis result backend SETs each result under ``celery-task-meta-<id>`` and
PUBLISHes it on the channel of the same name (the shape :mod:`producer.collect` waits on
synchronously). Here, on asyncio with ``redis.asyncio``:

- :meth:`ResultWaiter.watch` returns a future per job id; the ids watched during one
  event-loop tick go out as one SUBSCRIBE;
- once Redis confirms that SUBSCRIBE, one MGET catches the results stored before it;
- one reader task turns each published message into a resolved future; a resolved or
  abandoned id is UNSUBSCRIBEd (batched the same way);
- every ``recheck_s`` the ids awaited longer than that are MGET, so a message lost to a
  reconnect costs at most ``recheck_s`` of delay, never a lost result.

One shared subscription connection serves every request. The clock is injected.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

from elastiq import contract
from gateway import results

log = logging.getLogger(__name__)

CHUNK = 1000              # channels per SUBSCRIBE / keys per MGET
CONFIRM_WAIT_S = 2.0      # MGET anyway if Redis has not confirmed a SUBSCRIBE by then


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
        self._to_subscribe: dict[str, None] = {}    # ordered set, not yet sent
        self._subscribed: set[str] = set()
        self._to_unsubscribe: set[str] = set()
        self._confirm: dict[str, asyncio.Future] = {}
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task] = []
        self.connected = False

    # -- lifecycle

    async def start(self) -> None:
        self._pubsub = self._redis.pubsub()
        self._tasks = [asyncio.create_task(self._read_loop(), name="waiter-read"),
                       asyncio.create_task(self._flush_loop(), name="waiter-flush"),
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

    def watch(self, job_id: str) -> asyncio.Future:
        """A future that resolves to the job's ready result meta (a dict)."""
        key = contract.result_key(job_id)
        w = self._watching.get(key)
        if w is None:
            w = self._watching[key] = _Watch(asyncio.get_running_loop().create_future(), self._clock())
            self._to_subscribe[key] = None
            self._wake.set()
        return w.future

    def forget(self, job_id: str) -> None:
        """Stop watching (after a result, or when the caller gives up)."""
        self._drop(contract.result_key(job_id))

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

    def _drop(self, key: str) -> None:
        w = self._watching.pop(key, None)
        if w is not None and not w.future.done():
            w.future.cancel()
        self._to_subscribe.pop(key, None)
        if key in self._subscribed:
            self._to_unsubscribe.add(key)
            self._wake.set()

    def _deliver(self, key: str, raw, via: str) -> None:
        w = self._watching.get(key)
        if w is None:
            return                           # late: resolved or abandoned already
        meta = results.decode(raw)
        if meta is None:
            return
        if not w.future.done():
            w.future.set_result(meta)
            self._on_result(via)
        self._drop(key)

    async def _flush_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            try:
                await self._flush()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - Redis down: keep the work, try again shortly
                self._on_error("subscribe", exc)
                log.warning("result waiter: subscribe failed (%s); retrying", exc)
                await asyncio.sleep(0.5)
                self._wake.set()

    async def _flush(self) -> None:
        if self._to_unsubscribe:
            keys = list(self._to_unsubscribe)
            self._to_unsubscribe.clear()
            self._subscribed.difference_update(keys)
            for i in range(0, len(keys), CHUNK):
                await self._pubsub.unsubscribe(*keys[i:i + CHUNK])
        keys = [k for k in self._to_subscribe if k in self._watching]
        if not keys:
            return
        loop = asyncio.get_running_loop()
        for i in range(0, len(keys), CHUNK):
            chunk = keys[i:i + CHUNK]
            confirmed = self._confirm[chunk[-1]] = loop.create_future()
            await self._pubsub.subscribe(*chunk)
            for k in chunk:
                self._to_subscribe.pop(k, None)
            self._subscribed.update(chunk)
            try:    # the reader sees the confirmation; only then is MGET race-free
                await asyncio.wait_for(confirmed, CONFIRM_WAIT_S)
            except TimeoutError:
                pass
            finally:
                self._confirm.pop(chunk[-1], None)
            await self._check(chunk)

    async def _check(self, keys: list[str]) -> None:
        for i in range(0, len(keys), CHUNK):
            chunk = [k for k in keys[i:i + CHUNK] if k in self._watching]
            if chunk:
                for key, raw in zip(chunk, await self._redis.mget(chunk)):
                    if raw is not None:
                        self._deliver(key, raw, "mget")

    async def _read_loop(self) -> None:
        await self._connect()
        failures = 0
        while True:
            try:
                msg = await self._pubsub.get_message(timeout=1.0)
                failures = 0
                self.connected = True
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
            if msg is None:
                continue
            kind = msg.get("type")
            if kind == "message":
                self._deliver(msg["channel"], msg["data"], "message")
            elif kind == "subscribe":
                confirmed = self._confirm.get(msg["channel"])
                if confirmed is not None and not confirmed.done():
                    confirmed.set_result(None)

    async def _connect(self) -> None:
        """Subscribe to a private channel first, so the connection is always in pub/sub mode."""
        private = f"elastiq:gateway:{id(self):x}:{time.time_ns()}"
        failures = 0
        while True:
            try:
                await self._pubsub.subscribe(private)
                self.connected = True
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - retry on any error
                failures += 1
                self._on_error("connect", exc)
                if failures == 1:
                    log.warning("result waiter: cannot reach Redis (%s); retrying", exc)
                await asyncio.sleep(min(5.0, 0.1 * 2 ** min(failures, 6)))

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
