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


def handlers(state, events, stop: Callable[[], None], started: float) -> dict:
    def ping(_s, **_):
        return {"ok": "pong"}

    def stats(_s, **_):
        return {"pid": os.getpid(), "uptime": int(time.time() - started), "prefetch_count": state.slots,
                "pool": {"implementation": "elastiq", "max-concurrency": state.slots,
                         "processes": [os.getpid()], "threads": state.threads},
                "total": {contract.TASK_NAME: state.done + state.failed},
                "broker": {"transport": "redis"}, "elastiq": state.snapshot()}

    def active_queues(_s, **_):
        return [{"name": q, "routing_key": q, "exchange": {"name": q, "type": "direct"},
                 "durable": True, "exclusive": False, "auto_delete": False, "no_ack": False}
                for q in state.consuming()]

    def registered(_s, **_):
        return sorted(jobs.RUNS)

    def active(_s, **_):
        with state.lock:
            inflight = list(state.inflight.values())
        return [{"id": j.job_id, "name": contract.TASK_NAME, "args": [], "kwargs": {"model": j.model},
                 "hostname": state.worker_id, "time_start": j.reserved_at, "acknowledged": False,
                 "delivery_info": {"routing_key": j.queue}, "worker_pid": os.getpid()} for j in inflight]

    def empty(_s, **_):
        return []

    def conf(_s, **_):
        return {"worker_prefetch_multiplier": 1, "slots": state.slots, "queues": state.queues}

    def cancel_consumer(_s, queue=None, **_):
        state.cancelled.add(queue)
        return {"ok": f"no longer consuming from {queue!r}"}

    def add_consumer(_s, queue=None, **_):
        if queue not in state.queues:
            return {"error": f"this worker does not serve {queue!r} (it serves {state.queues})"}
        state.cancelled.discard(queue)
        return {"ok": f"consuming from {queue!r}"}

    def enable_events(_s, **_):
        events.tasks = True
        return {"ok": "task events enabled"}

    def disable_events(_s, **_):
        events.tasks = False
        return {"ok": "task events disabled"}

    def heartbeat(_s, **_):
        events.worker("worker-heartbeat")

    def shutdown(_s, **_):
        log.warning("shutdown requested over the control channel")
        stop()
        return {"ok": "shutting down"}

    return {"ping": ping, "stats": stats, "active_queues": active_queues, "registered": registered,
            "active": active, "reserved": empty, "scheduled": empty, "revoked": empty, "conf": conf,
            "cancel_consumer": cancel_consumer, "add_consumer": add_consumer,
            "enable_events": enable_events, "disable_events": disable_events,
            "heartbeat": heartbeat, "shutdown": shutdown}


class Control(threading.Thread):
    """Consumes this worker's mailbox and answers with :func:`handlers`."""

    def __init__(self, app, hostname: str, handlers_: dict):
        super().__init__(name="control", daemon=True)
        self.app = app
        self.hostname = hostname
        self.handlers = handlers_
        self._halt = threading.Event()

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
                while not self._halt.is_set():
                    try:
                        conn.drain_events(timeout=1.0)
                    except TimeoutError:
                        continue
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
