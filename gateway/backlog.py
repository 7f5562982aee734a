"""429 before queueing when a model's backlog passes a bound.

The backlog is what the autoscaler counts as waiting: the length of *every* Redis list
of the model's queue, Celery's priority sub-lists included
(:func:`elastiq.contract.queue_keys`; ``autoscaler.signals.waiting_and_oldest`` reads the
same lists). One reading per model is shared by all requests for ``refresh_s``; the jobs
this gateway admits meanwhile are added to it, so a burst cannot slip past the bound
between readings. The clock is injected.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from elastiq import contract
from elastiq.errors import BacklogFullError


@dataclass
class _Reading:
    at: float
    waiting: int
    admitted: int = 0


def admit(reading: _Reading, adding: int, bound: int, model: str) -> None:
    """Pure: raise BacklogFullError if ``adding`` more jobs would pass ``bound``."""
    total = reading.waiting + reading.admitted
    if total + adding > bound:
        raise BacklogFullError(
            f"model {model!r} has {total} jobs waiting; the gateway's bound is {bound} "
            "(ELASTIQ_GATEWAY_MAX_BACKLOG): retry later")
    reading.admitted += adding


class BacklogGate:
    def __init__(self, redis, *, bound: int, refresh_s: float, clock=time.monotonic):
        self._redis = redis
        self.bound = bound
        self._refresh_s = refresh_s
        self._clock = clock
        self._readings: dict[str, _Reading] = {}
        self._reading_now: dict[str, asyncio.Task] = {}

    async def check(self, model: str, adding: int = 1) -> None:
        """Admit ``adding`` jobs for ``model`` or raise BacklogFullError (redis errors pass up)."""
        reading = self._readings.get(model)
        if reading is None or self._clock() - reading.at >= self._refresh_s:
            reading = await self._refresh(model)
        admit(reading, adding, self.bound, model)

    async def waiting(self, model: str) -> int:
        keys = contract.queue_keys(contract.queue_for(model))
        async with self._redis.pipeline(transaction=False) as pipe:
            for k in keys:
                pipe.llen(k)
            return sum(int(n) for n in await pipe.execute())

    async def _refresh(self, model: str) -> _Reading:
        task = self._reading_now.get(model)
        if task is None:          # one read in flight per model, shared by all callers
            task = self._reading_now[model] = asyncio.ensure_future(self._read(model))
            task.add_done_callback(lambda _: self._reading_now.pop(model, None))
        return await asyncio.shield(task)

    async def _read(self, model: str) -> _Reading:
        at = self._clock()
        reading = _Reading(at, await self.waiting(model))
        self._readings[model] = reading
        return reading
