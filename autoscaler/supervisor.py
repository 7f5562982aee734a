"""``elastiq supervise``: keep N local workers per model running (``elastiq up`` without
``--autoscale``).

Each tick it lists the process backend's workers per model and starts the missing ones.
The backend reports every exit (Redis ``elastiq:exits``, shown by ``elastiq status``) and
backs off a model whose workers keep crashing; the supervisor publishes its own view
(desired, running, backoff reason) under ``elastiq:supervisor`` with a short TTL.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import time
from collections.abc import Callable

from autoscaler.backends.base import BackendError

log = logging.getLogger("elastiq.supervisor")


class Supervisor:
    def __init__(self, backend, desired: dict[str, int], *, publish: Callable[[dict], None] = lambda s: None):
        self.backend = backend
        self.desired = dict(desired)
        self.publish = publish
        self.errors: dict[str, str | None] = {g: None for g in desired}

    def tick(self) -> dict:
        """One pass: start what is missing; returns ``{group: {desired, running, error}}``."""
        view = {}
        for group, n in self.desired.items():
            running = len(self.backend.list(group))
            for _ in range(max(0, n - running)):
                try:
                    replica = self.backend.start(group)
                    running += 1
                    self.errors[group] = None
                    log.info("started %s (%d/%d)", replica.worker_id, running, n)
                except BackendError as exc:
                    if self.errors[group] != str(exc):
                        log.error("%s", exc)
                    self.errors[group] = str(exc)
                    break
            view[group] = {"desired": n, "running": running, "error": self.errors[group]}
        self.publish(view)
        return view

    def run(self, *, interval_s: float = 1.0, should_stop: Callable[[], bool] = lambda: False,
            sleep: Callable[[float], None] = time.sleep) -> None:
        while not should_stop():
            try:
                self.tick()
            except Exception:  # one bad tick must not end supervision
                log.exception("supervise tick failed")
            sleep(interval_s)


def main(argv=None) -> int:
    from autoscaler.backends.process import ProcessBackend
    from elastiq import contract
    from elastiq.exits import record_exit
    from elastiq.redisconn import redis_client
    from elastiq.settings import Settings

    p = argparse.ArgumentParser(prog="elastiq supervise", description=__doc__.splitlines()[0])
    p.add_argument("--models", default="minilm")
    p.add_argument("--workers", type=int, default=1, help="workers per model")
    p.add_argument("--interval-s", type=float, default=1.0)
    a = p.parse_args(argv)
    logging.basicConfig(level="INFO", format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    redis = redis_client(Settings.from_env())
    backend = ProcessBackend.from_env(on_exit=lambda e: record_exit(redis, e))
    sup = Supervisor(backend, {m: a.workers for m in a.models.split(",") if m},
                     publish=lambda v: redis.set(contract.SUPERVISOR_KEY, json.dumps(v), ex=10))
    stopping: list[int] = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(1))
    log.info("supervising %s x %d", sorted(sup.desired), a.workers)
    sup.run(interval_s=a.interval_s, should_stop=lambda: bool(stopping))
    return 0


if __name__ == "__main__":
    sys.exit(main())
