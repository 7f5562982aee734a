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
from elastiq.registry import Registry
from elastiq.settings import Settings
from workers.settings import WorkerSettings


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


def parse_args(argv) -> tuple[WorkerSettings, argparse.Namespace]:
    """Settings from the environment, each overridable on the command line; validated once."""
    env = WorkerSettings.from_env()
    p = argparse.ArgumentParser(prog="elastiq worker", description=__doc__.splitlines()[0])
    p.add_argument("--models", default=env.models,
                   help="comma-separated model names from the registry (env ELASTIQ_WORKER_MODELS)")
    p.add_argument("--slots", type=int, default=env.slots,
                   help=f"job slots = messages held at once (env ELASTIQ_WORKER_SLOTS, default {contract.DEFAULT_SLOTS})")
    p.add_argument("--threads", type=int, default=env.threads,
                   help="inference threads (env ELASTIQ_WORKER_THREADS; default: the CPUs this worker is given)")
    p.add_argument("--max-batch", type=int, default=env.max_batch, help="env ELASTIQ_MAX_BATCH")
    p.add_argument("--max-tokens", type=int, default=env.max_batch_tokens, help="env ELASTIQ_MAX_BATCH_TOKENS")
    p.add_argument("--max-wait-ms", type=float, default=env.max_wait_ms, help="env ELASTIQ_MAX_WAIT_MS")
    p.add_argument("--no-sort", action="store_true", help="batch in arrival order (benchmarks)")
    p.add_argument("--no-batching", action="store_true",
                   help="one forward pass per job (benchmarks: the plain-Celery baseline)")
    p.add_argument("--name", default=env.worker_id,
                   help="worker id (env ELASTIQ_WORKER_ID; default elastiq-<random>@<host>)")
    p.add_argument("--loglevel", default=env.log_level)
    p.add_argument("--max-rss-mb", type=float, default=env.max_rss_mb,
                   help="recycle past this RSS: drain, finish the running jobs, exit with "
                        "code 75 (env ELASTIQ_WORKER_MAX_RSS_MB; default: no limit)")
    p.add_argument("--exit-when-drained", action="store_true", default=env.exit_when_drained,
                   help="exit 0 once drained (finish the running jobs, give the others back): for "
                        "orchestrators that remove exited tasks, Swarm and Kubernetes "
                        "(env ELASTIQ_WORKER_EXIT_WHEN_DRAINED)")
    a = p.parse_args(argv)
    settings = WorkerSettings(models=a.models, slots=a.slots, threads=a.threads, max_batch=a.max_batch,
                              max_batch_tokens=a.max_tokens, max_wait_ms=a.max_wait_ms, worker_id=a.name or "",
                              log_level=a.loglevel, max_rss_mb=a.max_rss_mb, exit_when_drained=a.exit_when_drained)
    return settings, a


def training_limits(settings: Settings, specs, limit_s: float) -> Settings:
    """A worker that only trains gets ``ELASTIQ_TRAIN_TIME_LIMIT_S`` (default 7200) as its job
    time limit (soft; hard = soft + 60): a fine-tune is one long forward pass."""
    if not specs or any(s.kind != "train" for s in specs):
        return settings
    return dataclasses.replace(settings, job_soft_time_limit_s=limit_s, job_time_limit_s=limit_s + 60)


def main(argv=None) -> int:
    spawned = float(os.environ.get("ELASTIQ_SPAWNED_AT") or time.time())
    ws, flags = parse_args(argv)
    logging.basicConfig(level=ws.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = Settings.from_env()
    registry = Registry.from_env()
    names = ws.model_names
    specs = [registry.get(n) for n in names]
    settings = training_limits(settings, specs, ws.train_time_limit_s)
    budget = cpu_budget()
    threads = min(ws.threads or budget, budget)      # never more threads than CPUs
    if ws.threads > budget:
        logging.getLogger("elastiq.worker").warning(
            "--threads %d > the %d CPU(s) this worker is given: using %d", ws.threads, budget, budget)
    worker_id = ws.worker_id or f"elastiq-{uuid.uuid4().hex[:8]}@{socket.gethostname()}"

    from workers import runtime as rt
    from workers.state import WorkerState
    from workers.worker import Worker

    runtimes = {s.name: rt.load(s, threads) for s in specs}
    state = WorkerState(worker_id, [contract.queue_for(n) for n in names], ws.slots, threads,
                        started_at=spawned, engine_build_s=sum(r.build_s for r in runtimes.values()))
    batching = {"max_batch": 1 if flags.no_batching else ws.max_batch, "max_tokens": ws.max_batch_tokens,
                "max_wait_ms": ws.max_wait_ms, "sort_by_length": not flags.no_sort}
    return Worker(settings, registry, runtimes, state, batcher_options=batching,
                  max_rss_mb=ws.max_rss_mb, exit_when_drained=ws.exit_when_drained).run()


if __name__ == "__main__":
    sys.exit(main())
