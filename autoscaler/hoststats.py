"""This host's CPUs, idle CPUs and available memory, for the policy's capacity caps.

Idle CPU is measured between two readings of the host's CPU times, kept here (not
psutil's ``cpu_percent(interval=None)``: it keeps the previous reading per calling thread,
so the first call from a new thread -- the controller's loop -- reports an idle host).
Two readings a few milliseconds apart -- a tick that reads for several queues, or a tick
right after another -- see almost no CPU time, so a reading closer than ``min_interval_s``
to the last measured one returns that measurement again. The first reading has nothing to
compare with: its idle CPU is unknown (``None``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

log = logging.getLogger("elastiq.autoscaler")

MIN_INTERVAL_S = 0.5


class HostStats:
    def __init__(self, *, min_interval_s: float = MIN_INTERVAL_S, clock: Callable[[], float] = time.monotonic,
                 psutil=None):
        self.min_interval_s = min_interval_s
        self.clock = clock
        self._psutil = psutil
        self._measured_at: float | None = None
        self._times = None
        self._free_cpu: float | None = None

    def _lib(self):
        if self._psutil is None:
            import psutil

            self._psutil = psutil
        return self._psutil

    def __call__(self) -> dict:
        """``{"cpus", "free_cpu", "free_memory_mb"}``; {} when unreadable."""
        try:
            ps = self._lib()
            cpus = ps.cpu_count() or None
            now = self.clock()
            if self._measured_at is None or now - self._measured_at >= self.min_interval_s:
                times = ps.cpu_times()
                idle = idle_share(self._times, times) if self._times is not None else None
                self._free_cpu = None if idle is None or not cpus else round(cpus * idle, 2)
                self._measured_at, self._times = now, times
            return {"cpus": cpus, "free_cpu": self._free_cpu,
                    "free_memory_mb": round(ps.virtual_memory().available / 1e6, 1)}
        except Exception as exc:  # noqa: BLE001 - host stats unknown this tick (psutil missing or failing)
            log.warning("cannot read host stats: %s", exc)
            return {}


def idle_share(before, after) -> float | None:
    """Share of CPU time spent idle (or waiting on I/O) between two ``cpu_times()``
    readings; None when no time passed. Guest time is already inside user time (Linux)."""
    def split(t):
        d = t._asdict()
        idle = d.get("idle", 0.0) + d.get("iowait", 0.0)
        total = sum(d.values()) - d.get("guest", 0.0) - d.get("guest_nice", 0.0)
        return idle, total

    (idle0, total0), (idle1, total1) = split(before), split(after)
    if total1 - total0 <= 0:
        return None
    return min(1.0, max(0.0, (idle1 - idle0) / (total1 - total0)))
