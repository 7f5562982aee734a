"""Scale-in without interrupting a job: pick idle victims, ask them to drain, stop when idle.

The worker watches its drain key (workers/heartbeat.py): when set, it cancels its
consumers, finishes what it runs, and heartbeats ``draining`` with its busy count. The
controller stops a replica only once that count is zero (or its heartbeat is gone);
even then the stop is a warm shutdown, which lets a running job finish.
"""

from __future__ import annotations

from dataclasses import dataclass

from autoscaler.backends.base import Replica
from elastiq import contract
from elastiq.heartbeats import Heartbeat


def pick_victims(replicas: list[Replica], beats: dict[str, Heartbeat], n: int) -> list[Replica]:
    """``n`` replicas to remove: idle ready ones first, then the least busy, newest first.

    A replica with no heartbeat yet (still starting) is idle but costly to waste: it
    comes after idle ready ones.
    """
    def key(r: Replica):
        hb = beats.get(r.worker_id)
        busy = hb.busy if hb else 0
        starting = 1 if hb is None or not hb.ready else 0
        return (busy, starting, -(r.started_at or 0))

    return sorted(replicas, key=key)[:max(0, n)]


def request_drain(redis, worker_id: str, ttl_s: int = 3600) -> None:
    redis.set(contract.drain_key(worker_id), "1", ex=ttl_s)


def clear_drain(redis, worker_id: str) -> None:
    redis.delete(contract.drain_key(worker_id))


@dataclass(frozen=True)
class DrainStatus:
    done: bool
    busy: int | None        # None: no heartbeat (exited, or Redis unreadable)
    reason: str


def drain_status(hb: Heartbeat | None, requested_at: float, now: float, timeout_s: float) -> DrainStatus:
    """Pure: is a draining worker ready to be stopped?"""
    if hb is None:
        return DrainStatus(True, None, "no heartbeat: the worker has exited")
    busy = hb.busy
    if hb.draining and busy == 0:
        return DrainStatus(True, 0, "drained: consumer cancelled, no job running")
    if now - requested_at > timeout_s:
        return DrainStatus(True, busy, f"drain timeout after {timeout_s:.0f}s: warm shutdown "
                                       f"will let its {busy} running job(s) finish")
    return DrainStatus(False, busy, f"draining: {busy} job(s) running")
