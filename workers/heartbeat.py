"""The worker's heartbeat: its state in Redis under a key with a short TTL.

The key's existence *is* the worker's liveness: while it exists the worker owns the jobs
it holds; once it expires, any reaper hands them out again (elastiq/reservations.py). So
the heartbeat thread must keep beating whatever else the worker does. The same thread
watches the worker's drain key: when the autoscaler sets it, the worker stops taking jobs,
finishes what it holds, and says so.
"""

from __future__ import annotations

import logging
import threading

from elastiq import contract
from workers.state import WorkerState

log = logging.getLogger(__name__)


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
            log.info("drain requested: no new jobs, finishing the %d held", self.state.busy())
            if self.state.drain("drain requested by the autoscaler"):
                self.on_drain()
        self.redis.set(key, self.state.snapshot(self.extra()).to_json(), px=self.ttl_ms)

    def run(self) -> None:
        while not self._stop_event.is_set():
            try:
                self.beat()
            except Exception as exc:  # noqa: BLE001 - Redis away: keep trying, the TTL tells the truth
                log.warning("heartbeat failed: %s", exc)
            self._stop_event.wait(self.interval_s)

    def stop(self) -> None:
        self._stop_event.set()
        try:
            self.redis.delete(contract.heartbeat_key(self.state.worker_id))
        except Exception:  # noqa: BLE001 - exiting: the TTL removes it anyway
            pass
