"""Entry point of a compose-scaled worker container: give it a stable id, then exec.

``docker compose up --scale worker=N`` cannot template a per-container environment, so
a worker started by compose has no ``ELASTIQ_WORKER_ID``. This shim sets it to
``<first model>-<hostname>`` (the hostname is the container's short id unless the service
sets one) -- the same id ``autoscaler.backends.compose`` derives when it lists the
container -- and then *execs* ``elastiq worker``: the worker stays PID 1 of its
container and receives ``docker stop``'s SIGTERM itself (no shell in between).
"""

from __future__ import annotations

import os
import socket
import sys


def worker_id(env: dict, hostname: str) -> str:
    if env.get("ELASTIQ_WORKER_ID"):
        return env["ELASTIQ_WORKER_ID"]
    from elastiq.contract import container_worker_id

    first = (env.get("ELASTIQ_WORKER_MODELS") or "minilm").split(",")[0].strip() or "minilm"
    return container_worker_id(first, hostname)


def main() -> None:
    os.environ["ELASTIQ_WORKER_ID"] = worker_id(dict(os.environ), socket.gethostname())
    os.execvp("elastiq", ["elastiq", "worker", *sys.argv[1:]])


if __name__ == "__main__":
    main()
