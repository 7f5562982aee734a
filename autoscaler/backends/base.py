"""The one small interface every backend implements.

A *group* is the set of workers that serve one queue (one model): each is its own scaling
group. A replica's ``worker_id`` is the id the worker heartbeats under (the backend passes
it in as ``ELASTIQ_WORKER_ID``), which is how the controller joins what the backend runs
with what the workers report.

Draining is not the backend's job: the controller asks the worker to stop consuming
(``autoscaler.drain``), waits until it is idle, and only then calls :meth:`stop`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

# SIGTERM -> SIGKILL grace when a backend stops a worker: above the job hard time limit
# (Settings.job_time_limit_s, 180 s), so a warm stop never kills a running job.
STOP_TIMEOUT_S = 200.0


@dataclass(frozen=True)
class Replica:
    worker_id: str
    group: str                 # model name the replica serves
    handle: str                # pid or container id
    started_at: float | None = None
    status: str = "running"    # running | exited (backend view; readiness comes from heartbeats)


class Backend(Protocol):
    name: str

    def list(self, group: str) -> list[Replica]:
        """Replicas of this group that the backend runs now, including ones still starting."""

    def start(self, group: str) -> Replica:
        """Start one replica; returns at once (readiness is seen through its heartbeat)."""

    def stop(self, replica: Replica) -> None:
        """Stop a replica the controller has drained. Must be a graceful (warm) stop."""


class BackendError(Exception):
    """The backend could not act (Docker API error, timeout...). The controller backs off."""
