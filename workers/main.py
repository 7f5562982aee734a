"""``elastiq worker``: load the models, then take jobs.

One worker process = one copy of each model it serves + ``--slots`` job slots (it holds
at most that many jobs, so it takes a job only when a slot is free) + one micro-batcher
thread per model (workers/worker.py assembles the rest). Models load *before* the first
reservation, so a worker never holds a job it cannot run yet.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import socket
import sys
import time
import uuid

from elastiq import contract
from elastiq.errors import ConfigError
from elastiq.registry import Registry
from elastiq.settings import Settings


def cpu_budget() -> int:
    """CPUs this process may use: its affinity, capped by a cgroup v2 quota if any."""
    cpus = len(os.sched_getaffinity(0))
    try:
        quota, period = open("/sys/fs/cgroup/cpu.max").read().split()
        if quota != "max":
            cpus = min(cpus, max(1, int(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return max(1, cpus)


def parse_args(argv):
    env = os.environ
    p = argparse.ArgumentParser(prog="elastiq worker", description=__doc__.splitlines()[0])
    p.add_argument("--models", default=env.get("ELASTIQ_WORKER_MODELS", "minilm"),
                   help="comma-separated model names from the registry (env ELASTIQ_WORKER_MODELS)")
    p.add_argument("--slots", type=int, default=int(env.get("ELASTIQ_WORKER_SLOTS", "16")),
                   help="job slots = messages held at once (env ELASTIQ_WORKER_SLOTS, default 16)")
    p.add_argument("--threads", type=int, default=int(env.get("ELASTIQ_WORKER_THREADS", "0")),
                   help="torch threads (env ELASTIQ_WORKER_THREADS; default: the CPUs this worker is given)")
    p.add_argument("--max-batch", type=int, default=int(env.get("ELASTIQ_MAX_BATCH", "32")))
    p.add_argument("--max-tokens", type=int, default=int(env.get("ELASTIQ_MAX_BATCH_TOKENS", "8192")))
    p.add_argument("--max-wait-ms", type=float, default=float(env.get("ELASTIQ_MAX_WAIT_MS", "0")))
    p.add_argument("--no-sort", action="store_true", help="batch in arrival order (benchmarks)")
    p.add_argument("--no-batching", action="store_true",
                   help="one forward pass per job (benchmarks: the plain-Celery baseline)")
    p.add_argument("--name", default=env.get("ELASTIQ_WORKER_ID"),
                   help="worker id (env ELASTIQ_WORKER_ID; default elastiq-<random>@<host>)")
    p.add_argument("--loglevel", default=env.get("ELASTIQ_LOG_LEVEL", "INFO"))
    p.add_argument("--max-rss-mb", type=float, default=_env_float("ELASTIQ_WORKER_MAX_RSS_MB"),
                   help="recycle past this RSS: drain, finish the running jobs, exit with "
                        "code 75 (env ELASTIQ_WORKER_MAX_RSS_MB; default: no limit)")
    args = p.parse_args(argv)
    if args.slots < 1:
        raise ConfigError("--slots must be >= 1")
    if args.max_rss_mb is not None and args.max_rss_mb <= 0:
        raise ConfigError("ELASTIQ_WORKER_MAX_RSS_MB must be > 0")
    return args


def _env_float(name: str) -> float | None:
    raw = os.environ.get(name)
    if not raw:
        return None
    try:
        return float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a number") from None


def training_limits(settings: Settings, specs) -> Settings:
    """A worker that only trains gets ``ELASTIQ_TRAIN_TIME_LIMIT_S`` (default 7200) as its job
    time limit (soft; hard = soft + 60): a fine-tune is one long forward pass."""
    if not specs or any(s.kind != "train" for s in specs):
        return settings
    limit = _env_float("ELASTIQ_TRAIN_TIME_LIMIT_S") or 7200.0
    if limit <= 0:
        raise ConfigError("ELASTIQ_TRAIN_TIME_LIMIT_S must be > 0")
    return dataclasses.replace(settings, job_soft_time_limit_s=limit, job_time_limit_s=limit + 60)


def main(argv=None) -> int:
    spawned = float(os.environ.get("ELASTIQ_SPAWNED_AT") or time.time())
    args = parse_args(argv)
    logging.basicConfig(level=args.loglevel.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = Settings.from_env()
    registry = Registry.from_env()
    names = [m.strip() for m in args.models.split(",") if m.strip()]
    specs = [registry.get(n) for n in names]
    settings = training_limits(settings, specs)
    budget = cpu_budget()
    threads = min(args.threads or budget, budget)      # never more threads than CPUs
    if args.threads > budget:
        logging.getLogger("elastiq.worker").warning(
            "--threads %d > the %d CPU(s) this worker is given: using %d", args.threads, budget, budget)
    worker_id = args.name or f"elastiq-{uuid.uuid4().hex[:8]}@{socket.gethostname()}"

    from workers import runtime as rt
    from workers.state import WorkerState
    from workers.worker import Worker

    runtimes = {s.name: rt.load(s, threads) for s in specs}
    state = WorkerState(worker_id, [contract.queue_for(n) for n in names], args.slots, threads,
                        started_at=spawned)
    batching = {"max_batch": 1 if args.no_batching else args.max_batch, "max_tokens": args.max_tokens,
                "max_wait_ms": args.max_wait_ms, "sort_by_length": not args.no_sort}
    return Worker(settings, registry, runtimes, state, batcher_options=batching,
                  max_rss_mb=args.max_rss_mb).run()


if __name__ == "__main__":
    sys.exit(main())
