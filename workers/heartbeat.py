"""What a worker knows about itself, published to Redis as a heartbeat with a short TTL.

The autoscaler reads in-flight work from these heartbeats: messages a worker holds are
invisible to ``LLEN``. The same thread watches the worker's drain key: when the
autoscaler sets it, the worker stops consuming, finishes what it runs, and says so.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from dataclasses import dataclass, field

from elastiq import contract

log = logging.getLogger(__name__)


@dataclass
class WorkerState:
    worker_id: str
    queues: list[str]
    slots: int
    threads: int
    started_at: float = field(default_factory=time.time)
    ready_at: float | None = None
    draining: bool = False
    busy: dict[str, int] = field(default_factory=dict)      # queue -> running jobs
    done: int = 0
    failed: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def enter(self, queue: str) -> None:
        with self.lock:
            self.busy[queue] = self.busy.get(queue, 0) + 1

    def leave(self, queue: str, ok: bool) -> None:
        with self.lock:
            self.busy[queue] = max(0, self.busy.get(queue, 0) - 1)
            if ok:
                self.done += 1
            else:
                self.failed += 1

    def snapshot(self, extra: dict | None = None) -> dict:
        with self.lock:
            busy = dict(self.busy)
            done, failed = self.done, self.failed
        return {
            "worker_id": self.worker_id, "host": socket.gethostname(), "pid": os.getpid(),
            "queues": self.queues, "slots": self.slots, "threads": self.threads,
            "busy": sum(busy.values()), "busy_by_queue": busy,
            "ready": self.ready_at is not None and not self.draining,
            "draining": self.draining, "started_at": self.started_at, "ready_at": self.ready_at,
            "cold_start_s": (self.ready_at - self.started_at) if self.ready_at else None,
            "rss_mb": _rss_mb(), "done": done, "failed": failed, "at": time.time(),
            **(extra or {}),
        }


def _rss_mb() -> float | None:
    try:
        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[1])
        return round(pages * os.sysconf("SC_PAGE_SIZE") / 1e6, 1)
    except (OSError, ValueError, IndexError):
        return None


class Heartbeat(threading.Thread):
    """Publishes the state every ``interval_s``; calls ``on_drain`` once when asked to drain."""

    def __init__(self, redis, state: WorkerState, *, interval_s: float, ttl_s: float,
                 on_drain, extra=lambda: {}):
        super().__init__(name="heartbeat", daemon=True)
        self.redis = redis
        self.state = state
        self.interval_s = interval_s
        self.ttl_ms = int(ttl_s * 1000)
        self.on_drain = on_drain
        self.extra = extra
        self._stop_event = threading.Event()

    def beat(self) -> None:
        key = contract.heartbeat_key(self.state.worker_id)
        if not self.state.draining and self.redis.exists(contract.drain_key(self.state.worker_id)):
            log.info("drain requested: no new jobs, finishing %d running", sum(self.state.busy.values()))
            self.state.draining = True
            self.on_drain()
        self.redis.set(key, json.dumps(self.state.snapshot(self.extra())), px=self.ttl_ms)

    def run(self) -> None:
        while not self._stop_event.is_set():
            try:
                self.beat()
            except Exception as exc:  # Redis away: keep trying, the TTL tells the truth
                log.warning("heartbeat failed: %s", exc)
            self._stop_event.wait(self.interval_s)

    def stop(self) -> None:
        self._stop_event.set()
        try:
            self.redis.delete(contract.heartbeat_key(self.state.worker_id))
        except Exception:
            pass
