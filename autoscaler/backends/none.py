"""The ``none`` backend: decide only; someone else (KEDA, an HPA, a person) acts.

``list`` returns the workers that heartbeat on the group's queue, wherever they run (pods
of a Kubernetes Deployment, say), so the policy decides from the pool as it is. ``start``
and ``stop`` refuse: the CLI runs this backend in dry-run mode and serves the decision
over HTTP (:mod:`autoscaler.desired`) for the orchestrator's own scaler to read.
Workers still loading do not heartbeat yet and are not counted (no orchestrator API here).
"""

from __future__ import annotations

from autoscaler.backends.base import BackendError, Replica
from elastiq import contract
from elastiq.local.procs import read_heartbeats


class NoneBackend:
    name = "none"
    local_host = False          # the workers run elsewhere: this host's resources are no cap

    def __init__(self, redis):
        self.redis = redis

    @classmethod
    def from_env(cls, redis=None) -> NoneBackend:
        if redis is None:
            raise BackendError("the none backend reads heartbeats: it needs the Redis client")
        return cls(redis)

    def list(self, group: str) -> list[Replica]:
        queue = contract.queue_for(group)
        try:
            beats = read_heartbeats(self.redis)
        except Exception as exc:
            raise BackendError(f"cannot read heartbeats: {exc}") from exc
        return [Replica(wid, group, wid, hb.started_at, "running")
                for wid, hb in sorted(beats.items()) if hb.serves(queue) and not hb.draining]

    def start(self, group: str) -> Replica:
        raise BackendError("the none backend only decides: the orchestrator starts workers")

    def stop(self, replica: Replica) -> None:
        raise BackendError("the none backend only decides: the orchestrator stops workers")
