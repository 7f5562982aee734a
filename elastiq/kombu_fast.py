"""One Redis client object per kombu channel instead of one per command.

kombu's Redis transport (5.7) builds a new ``redis.Redis`` object — response-callback
tables and all — every time it needs a connection outside its event loop:
``Channel.conn_or_acquire()`` calls ``_create_client()``. That happens on every publish
and on every ack (``QoS.ack`` → ``pipe_or_acquire``), i.e. once or more per job, and it
was the largest single item in a worker's GIL-holding profile (py-spy ``--gil``).
A ``redis.Redis`` object is thread-safe (each command borrows a connection from the
pool), so one per channel and pool is enough. Connections, pools, retries and the
event loop's own asynchronous client are untouched.

:func:`install` is idempotent; the worker and the client call it.
"""

from __future__ import annotations

from contextlib import contextmanager

_installed = False


def install() -> None:
    global _installed
    if _installed:
        return
    from kombu.transport import redis as kombu_redis

    original = kombu_redis.Channel.conn_or_acquire

    @contextmanager
    def conn_or_acquire(self, client=None):
        if client:
            yield client
            return
        pool = self.pool
        cached = self.__dict__.get("_elastiq_sync_client")
        if cached is None or cached.connection_pool is not pool:
            cached = self._create_client()
            self.__dict__["_elastiq_sync_client"] = cached
        yield cached

    conn_or_acquire.__wrapped__ = original
    kombu_redis.Channel.conn_or_acquire = conn_or_acquire
    _installed = True
