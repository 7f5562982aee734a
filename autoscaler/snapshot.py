"""Plain data that flows from signals to the policy. No I/O here.

``None`` always means *unknown* (a metric that could not be read), never zero: the policy
holds rather than scaling in on a number it does not have.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class WorkerInfo:
    """One active (not draining) replica of the queue, from its heartbeat and the backend."""
    worker_id: str
    started_at: float | None         # process spawn (heartbeat ``started_at``, else the backend's)
    ready: bool                      # model loaded and consuming (no heartbeat yet: False)
    cold_start_s: float | None = None  # its own start -> ready, once ready


@dataclass(frozen=True)
class QueueSnapshot:
    queue: str
    waiting: int | None              # sum of the queue's Redis lists, priority sub-lists included
    in_flight: int | None            # busy slots of live workers on this queue (heartbeats)
    oldest_age_s: float | None       # age of the oldest waiting job; 0.0 when none waits
    arrival_rate: float | None       # jobs/s, smoothed
    service_time_s: float | None     # mean seconds a job holds a slot, smoothed
    workers: int                     # replicas the backend runs for this queue (any state)
    ready_workers: int = 0           # of those, heartbeating and consuming
    busy_workers: int = 0            # of those, running at least one job
    slots_per_worker: int | None = None
    cold_start_s: float | None = None  # measured start -> ready, of the worker ready last
    worker_jobs_per_s: float | None = None  # what one ready worker served while the pool was saturated
    # Per replica; ``None`` = not provided (the policy then has only the counts above).
    worker_info: tuple[WorkerInfo, ...] | None = None


@dataclass(frozen=True)
class HostSnapshot:
    cpus: int | None                 # CPUs on the host (or given to the pool)
    free_cpu: float | None           # idle CPUs, e.g. 1.4
    free_memory_mb: float | None     # available memory
    worker_rss_mb: float | None      # memory of one worker (max seen), for the capacity cap
    threads_per_worker: int | None = None


@dataclass(frozen=True)
class Snapshot:
    at: float
    queue: QueueSnapshot
    host: HostSnapshot
