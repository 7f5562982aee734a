"""An in-memory backend for pure tests of the controller: replicas are records, nothing runs.

It keeps what a real backend would report (``list``) and a log of what it was asked
(``calls``), and can be told to fail, so ``Controller.reconcile_once(now)`` gets table tests
with an injected clock and no processes, containers or sleeps.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

from autoscaler.backends.base import BackendError, Replica


class StubBackend:
    name = "stub"

    def __init__(self, clock: Callable[[], float]):
        self.clock = clock
        self.replicas: dict[str, Replica] = {}
        self.calls: list[tuple[str, str]] = []      # ("start" | "stop", worker id)
        self.failing: str | None = None             # a message: every call raises BackendError
        self._ids = itertools.count(1)

    def list(self, group: str) -> list[Replica]:
        self._maybe_fail()
        return [r for r in self.replicas.values() if r.group == group]

    def start(self, group: str) -> Replica:
        self._maybe_fail()
        replica = Replica(f"{group}-{next(self._ids)}", group, f"stub-{len(self.calls)}", self.clock())
        self.replicas[replica.worker_id] = replica
        self.calls.append(("start", replica.worker_id))
        return replica

    def stop(self, replica: Replica) -> None:
        self._maybe_fail()
        self.replicas.pop(replica.worker_id, None)
        self.calls.append(("stop", replica.worker_id))

    def _maybe_fail(self) -> None:
        if self.failing:
            raise BackendError(self.failing)
