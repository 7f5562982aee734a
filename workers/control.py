"""Celery remote control, answered by this worker: ``celery inspect``, Flower, ``app.control``.

The worker listens on Celery's broadcast mailbox (kombu pidbox, over Redis pub/sub) with
its own handlers for the commands users and Flower send: ``ping``, ``stats``,
``active_queues``, ``registered``, ``active``, ``reserved``, ``scheduled``, ``revoked``,
``conf``, ``cancel_consumer``/``add_consumer``, ``enable_events``/``disable_events``,
``heartbeat`` and ``shutdown`` (a warm one: finish the held jobs, then exit).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable

from elastiq import contract
from workers import jobs

log = logging.getLogger(__name__)


class Handlers:
    """Celery's remote-control commands this worker answers, each a method ``(state, **args)``."""

    def __init__(self, state, events, stop: Callable[[], None], started: float):
        self.state, self.events, self.stop, self.started = state, events, stop, started

    def table(self) -> dict:
        return {"ping": self.ping, "stats": self.stats, "active_queues": self.active_queues,
                "registered": self.registered, "active": self.active, "reserved": self.empty,
                "scheduled": self.empty, "revoked": self.empty, "conf": self.conf,
                "cancel_consumer": self.cancel_consumer, "add_consumer": self.add_consumer,
                "enable_events": self.enable_events, "disable_events": self.disable_events,
                "heartbeat": self.heartbeat, "shutdown": self.shutdown}

    def ping(self, _s, **_):
        return {"ok": "pong"}

    def stats(self, _s, **_):
        st = self.state
        return {"pid": os.getpid(), "uptime": int(time.time() - self.started), "prefetch_count": st.slots,
                "pool": {"implementation": "elastiq", "max-concurrency": st.slots,
                         "processes": [os.getpid()], "threads": st.threads},
                "total": {contract.TASK_NAME: st.done + st.failed},
                "broker": {"transport": "redis"}, "elastiq": st.snapshot().to_dict()}

    def active_queues(self, _s, **_):
        return [{"name": q, "routing_key": q, "exchange": {"name": q, "type": "direct"},
                 "durable": True, "exclusive": False, "auto_delete": False, "no_ack": False}
                for q in self.state.consuming()]

    def registered(self, _s, **_):
        return sorted(jobs.RUNS)

    def active(self, _s, **_):
        with self.state.lock:
            inflight = list(self.state.inflight.values())
        return [{"id": j.job_id, "name": contract.TASK_NAME, "args": [], "kwargs": {"model": j.model},
                 "hostname": self.state.worker_id, "time_start": j.reserved_at, "acknowledged": False,
                 "delivery_info": {"routing_key": j.queue}, "worker_pid": os.getpid()} for j in inflight]

    def empty(self, _s, **_):
        return []

    def conf(self, _s, **_):
        return {"worker_prefetch_multiplier": 1, "slots": self.state.slots, "queues": self.state.queues}

    def cancel_consumer(self, _s, queue=None, **_):
        self.state.cancelled.add(queue)
        return {"ok": f"no longer consuming from {queue!r}"}

    def add_consumer(self, _s, queue=None, **_):
        if queue not in self.state.queues:
            return {"error": f"this worker does not serve {queue!r} (it serves {self.state.queues})"}
        self.state.cancelled.discard(queue)
        return {"ok": f"consuming from {queue!r}"}

    def enable_events(self, _s, **_):
        self.events.tasks = True
        return {"ok": "task events enabled"}

    def disable_events(self, _s, **_):
        self.events.tasks = False
        return {"ok": "task events disabled"}

    def heartbeat(self, _s, **_):
        self.events.worker("worker-heartbeat")

    def shutdown(self, _s, **_):
        log.warning("shutdown requested over the control channel")
        self.stop()
        return {"ok": "shutting down"}


def handlers(state, events, stop: Callable[[], None], started: float) -> dict:
    return Handlers(state, events, stop, started).table()


class Control(threading.Thread):
    """Consumes this worker's mailbox and answers with :func:`handlers`."""

    def __init__(self, app, hostname: str, handlers_: dict):
        super().__init__(name="control", daemon=True)
        self.app = app
        self.hostname = hostname
        self.handlers = handlers_
        self._halt = threading.Event()
        self.listening = threading.Event()     # set once the mailbox is subscribed

    def run(self) -> None:
        while not self._halt.is_set():
            try:
                self._serve()
            except Exception as exc:  # noqa: BLE001 - broker away: listen again
                log.warning("control channel lost: %s", exc)
                self._halt.wait(1.0)

    def _serve(self) -> None:
        with self.app.connection_for_read() as conn:
            node = self.app.control.mailbox.Node(self.hostname, handlers=self.handlers, state=None)
            node.channel = conn.channel()
            consumer = node.listen(callback=self._on_message(node))
            try:
                first = True
                while not self._halt.is_set():
                    try:     # kombu's Redis transport SUBSCRIBEs the fanout in the first poll
                        conn.drain_events(timeout=0.05 if first else 1.0)
                    except TimeoutError:
                        pass
                    if first:
                        first = False
                        self.listening.set()
            finally:
                try:
                    consumer.cancel()
                except Exception:  # noqa: BLE001 - closing, best effort
                    pass

    def _on_message(self, node):
        def on_message(body, message):
            try:
                node.handle_message(body, message)
            except KeyError as exc:
                log.info("no such control command: %s", exc)
            except Exception:  # one bad command must not stop the channel
                log.exception("control command failed")
        return on_message

    def stop(self) -> None:
        self._halt.set()
