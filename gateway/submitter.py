"""Publish jobs through the public client API, off the event loop, coalesced.

Each request's job (already validated) joins a group keyed by ``(model, params,
priority, deadline)``. A group is flushed as *one* ``Client.submit_many`` call on the
next event-loop tick, in a small bounded thread pool: with 64 requests arriving
together that is a handful of Redis round trips instead of 64. While every thread is
busy publishing, new jobs keep accumulating and go out together when one frees up, so
the batch grows with the load and a lone request still goes out at once (no timer).

Each pool thread has its own :class:`producer.Client`, built with the gateway's
settings and registry, so the client's rules are the gateway's rules.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor


class Submitter:
    def __init__(self, client_factory: Callable[[], object], *, threads: int = 2,
                 on_batch: Callable[[str, int], None] | None = None):
        self._factory = client_factory
        self._threads = threads
        self._executor = ThreadPoolExecutor(threads, thread_name_prefix="elastiq-submit")
        self._local = threading.local()
        self._clients: list = []
        self._lock = threading.Lock()
        self._groups: dict[tuple, list[tuple[list[str], asyncio.Future]]] = {}
        self._inflight = 0
        self._scheduled = False
        self._on_batch = on_batch or (lambda model, n: None)

    async def submit(self, model: str, inputs: list[str], params: dict, *, job_id: str,
                     priority: int | None = None, deadline_s: float | None = None) -> str:
        """Queue one validated job under ``job_id``; returns the id (raises what
        ``submit_many`` raises)."""
        loop = asyncio.get_running_loop()
        key = (model, json.dumps(params, sort_keys=True), priority, deadline_s)
        future = loop.create_future()
        self._groups.setdefault(key, []).append(((inputs, job_id), future))
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._flush)
        return await future

    def _flush(self) -> None:
        self._scheduled = False
        loop = asyncio.get_running_loop()
        while self._groups and self._inflight < self._threads:
            key = next(iter(self._groups))
            items = self._groups.pop(key)
            self._inflight += 1
            done = loop.run_in_executor(self._executor, self._submit_many, key, [i for i, _ in items])
            done.add_done_callback(lambda f, items=items: self._settle(f, items))

    def _settle(self, done: asyncio.Future, items) -> None:
        self._inflight -= 1
        error = None if done.cancelled() else done.exception()
        for n, (_, future) in enumerate(items):
            if future.done():
                continue                    # the request went away; its job is queued anyway
            if done.cancelled():
                future.cancel()             # shutting down
            elif error is not None:
                future.set_exception(error)
            else:
                future.set_result(done.result()[n])
        if self._groups and not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _submit_many(self, key: tuple, many: list[tuple[list[str], str]]) -> list[str]:
        model, params, priority, deadline_s = key
        client = self._client()
        jobs = client.submit_many(model, [inputs for inputs, _ in many], priority=priority,
                                  deadline_s=deadline_s, job_ids=[i for _, i in many], **json.loads(params))
        self._on_batch(model, len(many))
        return [job.id for job in jobs]

    def _client(self):
        client = getattr(self._local, "client", None)
        if client is None:
            client = self._local.client = self._factory()
            with self._lock:
                self._clients.append(client)
        return client

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)
        with self._lock:
            for client in self._clients:
                try:
                    client.close()
                except Exception:  # noqa: BLE001 - closing at shutdown, best effort
                    pass
            self._clients.clear()
