"""Celery events, so Flower shows this worker and, while it watches, every job.

Worker events (``worker-online``, ``worker-heartbeat`` every 2 s, ``worker-offline``) are
always sent: Flower lists a worker as online from them. Task events (received, started,
succeeded, failed, retried) cost the worker CPU per job, so they are off until someone asks
(Flower broadcasts ``enable_events`` while it runs; ``ELASTIQ_TASK_EVENTS=1`` turns them on
from the start); they are buffered and sent as one ``task.multi`` message per commit.
When a reaper hands a dead worker's jobs out again it sends ``task-retried`` for each, so
Flower does not show them STARTED forever on a worker that is gone.
"""

from __future__ import annotations

import logging
import os
import platform
import threading
import time

from elastiq import contract

log = logging.getLogger(__name__)

HEARTBEAT_S = 2.0


class Events:
    def __init__(self, app, hostname: str, *, tasks: bool = False, state=None):
        self.app = app
        self.hostname = hostname
        self.tasks = tasks
        self.state = state
        self._dispatcher = None
        self._conn = None
        self._lock = threading.Lock()

    def start(self) -> None:
        self._conn = self.app.connection_for_write()
        self._dispatcher = self.app.events.Dispatcher(
            self._conn, hostname=self.hostname, enabled=True, buffer_group=["task"], buffer_limit=256)
        self.worker("worker-online")

    def stop(self) -> None:
        if self._dispatcher is None:
            return
        try:
            self.flush()
            self.worker("worker-offline")
            self._dispatcher.close()
            self._conn.release()
        except Exception:  # noqa: BLE001 - the broker may be gone at exit
            pass
        self._dispatcher = None

    # -- worker events

    def worker(self, kind: str) -> None:
        if self._dispatcher is None:
            return
        state = self.state
        fields = {"freq": HEARTBEAT_S, "sw_ident": "elastiq", "sw_ver": "1", "sw_sys": platform.system(),
                  "loadavg": [round(x, 2) for x in os.getloadavg()],
                  "active": state.busy() if state else 0,
                  "processed": (state.done + state.failed) if state else 0}
        self._send(kind, **fields)

    # -- task events (only when enabled)

    def job_received(self, job) -> None:
        if not self.tasks or self._dispatcher is None:
            return
        h = job.headers
        self._send("task-received", uuid=job.job_id, name=contract.TASK_NAME, args="()",
                   kwargs=h.get("kwargsrepr", "{}"), root_id=h.get("root_id"), parent_id=h.get("parent_id"),
                   retries=job.deliveries - 1, eta=None, expires=None)
        self._send("task-started", uuid=job.job_id)

    def job_done(self, outcome, job) -> None:
        if not self.tasks or self._dispatcher is None:
            return
        if outcome.state == contract.DONE:
            runtime = time.time() - job.reserved_at if job is not None else None
            self._send("task-succeeded", uuid=outcome.job_id, result="<outputs>", runtime=runtime)
        else:
            self._send("task-failed", uuid=outcome.job_id, exception=_reason(outcome.result), traceback=None)

    def jobs_requeued(self, worker: str, ids: list[str]) -> None:
        if self._dispatcher is None:
            return
        for job_id in ids:
            self._send("task-retried", uuid=job_id,
                       exception=f"worker {worker} is gone (heartbeat expired): job back in its queue",
                       traceback=None)
        self.flush()

    def flush(self) -> None:
        if self._dispatcher is not None:
            with self._lock:
                try:
                    self._dispatcher.flush()
                except Exception as exc:  # noqa: BLE001 - events are best effort
                    log.debug("cannot send events: %s", exc)

    def _send(self, kind: str, **fields) -> None:
        with self._lock:
            try:
                self._dispatcher.send(kind, **fields)
            except Exception as exc:  # noqa: BLE001 - events are best effort
                log.debug("cannot send %s: %s", kind, exc)


def _reason(meta: str | None) -> str:
    import json

    try:
        res = json.loads(meta or "{}").get("result") or {}
        return f"{res.get('exc_type')}: {' '.join(map(str, res.get('exc_message') or []))}"
    except (ValueError, AttributeError):
        return "failed"


class WorkerHeart(threading.Thread):
    """``worker-heartbeat`` every 2 s, as a Celery worker sends them."""

    def __init__(self, events: Events):
        super().__init__(name="event-heart", daemon=True)
        self.events = events
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.wait(HEARTBEAT_S):
            self.events.worker("worker-heartbeat")

    def stop(self) -> None:
        self._halt.set()
