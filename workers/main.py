"""``elastiq worker``: load the models, then consume.

One worker process = one copy of each model it serves + ``--slots`` job slots (Celery's
threads pool, prefetch 1 per slot, so it takes a message only when a slot is free) + one
micro-batcher thread per model. Models load *before* the consumer starts, so a worker
never holds a message it cannot run yet.
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
import sys
import time
import uuid

from elastiq import contract
from elastiq.celeryconf import make_celery, redis_client
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
                   help="inference threads per model: onnxruntime intra-op / torch threads "
                        "(env ELASTIQ_WORKER_THREADS; default: the CPUs this worker is given)")
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


def main(argv=None) -> int:
    spawned = float(os.environ.get("ELASTIQ_SPAWNED_AT") or time.time())
    args = parse_args(argv)
    logging.basicConfig(level=args.loglevel.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    log = logging.getLogger("elastiq.worker")
    settings = Settings.from_env()
    registry = Registry.from_env()
    names = [m.strip() for m in args.models.split(",") if m.strip()]
    specs = [registry.get(n) for n in names]
    budget = cpu_budget()
    threads = min(args.threads or budget, budget)      # never more threads than CPUs
    if args.threads > budget:
        log.warning("--threads %d > the %d CPU(s) this worker is given: using %d", args.threads, budget, budget)
    worker_id = args.name or f"elastiq-{uuid.uuid4().hex[:8]}@{socket.gethostname()}"

    from elastiq import kombu_fast
    from workers import runtime as rt
    from workers.batcher import Batcher
    from workers.heartbeat import Heartbeat, Watchdog, WorkerState
    from workers.tasks import WorkerContext, install, register

    kombu_fast.install()     # one Redis client per kombu channel, not one per ack (perf, issue 5)
    from workers.consumer import install_envelope_guard

    install_envelope_guard()  # a queue item that is not a kombu message is dead-lettered

    runtimes = {s.name: rt.load(s, threads) for s in specs}
    max_batch = 1 if args.no_batching else args.max_batch
    batchers = {n: Batcher(r, max_batch=max_batch, max_tokens=args.max_tokens,
                           max_wait_ms=args.max_wait_ms, sort_by_length=not args.no_sort)
                for n, r in runtimes.items()}
    queues = [contract.queue_for(n) for n in names]
    state = WorkerState(worker_id, queues, args.slots, threads, started_at=spawned)
    redis = redis_client(settings)
    install(WorkerContext(settings, registry, runtimes, batchers, state, redis))

    app = make_celery(settings, name="elastiq-worker")
    # undecodable / unknown / malformed messages are dead-lettered, not logged and dropped
    app.conf.worker_consumer = "workers.consumer:Consumer"
    register(app)

    def drain() -> None:
        for q in queues:
            app.control.cancel_consumer(q, destination=[worker_id])

    heartbeat = Heartbeat(redis, state, interval_s=settings.heartbeat_interval_s,
                          ttl_s=settings.heartbeat_ttl_s, on_drain=drain,
                          extra=lambda: {"models": names, "batching": {
                              n: b.stats.as_dict() for n, b in batchers.items()},
                              "engines": {n: r.describe() for n, r in runtimes.items()},
                              "heavy_modules": rt.heavy_modules()})

    from celery import signals

    @signals.worker_ready.connect(weak=False)
    def _ready(**_):
        state.ready_at = time.time()
        heartbeat.beat()
        log.info("worker %s ready: models=%s slots=%d threads=%d cold_start=%.2fs",
                 worker_id, names, args.slots, threads, state.ready_at - state.started_at)

    @signals.worker_shutting_down.connect(weak=False)
    def _shutting_down(**_):
        state.draining = True

    watchdog = Watchdog(state, soft_s=settings.job_soft_time_limit_s, hard_s=settings.job_time_limit_s,
                        max_rss_mb=args.max_rss_mb, on_drain=drain)
    from workers.sweeper import LostJobSweeper, celery_sender

    sweeper = LostJobSweeper(redis, celery_sender(app), queues, owner=worker_id,
                             grace_s=settings.lost_grace_s, interval_s=settings.lost_sweep_interval_s)
    heartbeat.start()
    watchdog.start()
    sweeper.start()
    code = 0
    try:
        app.worker_main([
            "worker", "-P", "threads", "-c", str(args.slots), "-Q", ",".join(queues),
            "-n", worker_id, "-l", args.loglevel, "--without-mingle", "--without-gossip",
        ])
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    finally:
        sweeper.stop()
        watchdog.stop()
        heartbeat.stop()
    if state.exit_code is not None:
        log.warning("worker %s exits with %d: %s", worker_id, state.exit_code, state.stop_reason)
        return state.exit_code
    return code


if __name__ == "__main__":
    sys.exit(main())
