"""``elastiq drain WORKER_ID``: ask one worker to drain and wait until it is idle or gone.

The worker stops taking jobs, finishes the ones it runs (a worker started with
``--exit-when-drained`` then exits 0). Used as a Kubernetes ``preStop`` hook, so a pod
being removed finishes its jobs before SIGTERM; exits 0 once the worker is drained
(heartbeat ``draining`` with nothing running) or gone, 1 if ``--wait-s`` runs out.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from autoscaler.drain import drain_status, request_drain
from elastiq import contract
from elastiq.heartbeats import Heartbeat
from elastiq.redisconn import redis_client
from elastiq.settings import Settings


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="elastiq drain", description=__doc__.splitlines()[0])
    p.add_argument("worker_id", nargs="?", default=os.environ.get("ELASTIQ_WORKER_ID"),
                   help="the worker's id (default: ELASTIQ_WORKER_ID, i.e. this container's worker)")
    p.add_argument("--wait-s", type=float, default=200.0, help="give up after this long (exit 1)")
    args = p.parse_args(argv)
    if not args.worker_id:
        p.error("name the worker (or set ELASTIQ_WORKER_ID)")
    redis = redis_client(Settings.from_env())
    request_drain(redis, args.worker_id)
    asked = time.time()
    while True:
        raw = redis.get(contract.heartbeat_key(args.worker_id))
        status = drain_status(Heartbeat.from_json(raw) if raw else None, asked, time.time(), args.wait_s)
        if status.done:
            print(f"{args.worker_id}: {status.reason}", file=sys.stderr)
            return 0 if status.busy in (None, 0) else 1
        time.sleep(0.5)
