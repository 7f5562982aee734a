"""``elastiq autoscale``: run the controller against a backend.

    elastiq autoscale --once --dry-run --json      # one decision per queue, as JSON lines
    elastiq autoscale --backend process --timeline .elastiq/timeline.jsonl --metrics-port 9808
    elastiq autoscale --backend none --desired-port 9809   # decide only; KEDA reads /desired/<model>
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import time

from autoscaler.settings import AutoscalerSettings
from elastiq.decisions import DecisionRow
from elastiq.redisconn import redis_client
from elastiq.settings import Settings

BACKENDS = {
    "process": "autoscaler.backends.process:ProcessBackend",
    "docker": "autoscaler.backends.docker:DockerBackend",
    "compose": "autoscaler.backends.compose:ComposeBackend",
    "swarm": "autoscaler.backends.swarm:SwarmBackend",
    "none": "autoscaler.backends.none:NoneBackend",
}


def make_backend(name: str, redis=None):
    import importlib

    module, _, cls = BACKENDS[name].partition(":")
    kind = getattr(importlib.import_module(module), cls)
    if name == "process" and redis is not None:
        from elastiq.exits import record_exit

        return kind.from_env(on_exit=lambda e: record_exit(redis, e))
    if name == "none":
        return kind.from_env(redis)
    return kind.from_env()


def parse_args(argv):
    """AutoscalerSettings from ELASTIQ_AUTOSCALE_*, each overridable here; validated once."""
    env = AutoscalerSettings.from_env()
    p = argparse.ArgumentParser(prog="elastiq autoscale", description=__doc__.splitlines()[0])
    p.add_argument("--backend", choices=sorted(BACKENDS), default=env.backend)
    p.add_argument("--models", default=env.models,
                   help="comma-separated models; each model's queue is its own scaling group")
    p.add_argument("--once", action="store_true", help="one reconcile pass, then exit")
    p.add_argument("--dry-run", action="store_true", help="decide and report, start or stop nothing")
    p.add_argument("--json", action="store_true", help="print each decision as a JSON line")
    p.add_argument("--interval-s", type=float, default=env.interval_s)
    p.add_argument("--drain-timeout-s", type=float, default=env.drain_timeout_s)
    p.add_argument("--metrics-port", type=int, default=env.metrics_port,
                   help="serve Prometheus metrics on this port (0: off)")
    p.add_argument("--metrics-addr", default=env.metrics_addr)
    p.add_argument("--desired-port", type=int, default=env.desired_port,
                   help="serve desired workers per queue over HTTP, GET /desired/<model> (KEDA metrics-api); "
                        "0: off; default: 9809 with --backend none, else off")
    p.add_argument("--desired-addr", default=env.desired_addr)
    p.add_argument("--timeline", default=env.timeline or None,
                   help="append every decision to this JSON-lines file (render with `elastiq plot`)")
    p.add_argument("--start-workers", type=int, default=0,
                   help="start this many workers per model before the first decision (`elastiq up`)")
    args = p.parse_args(argv)
    AutoscalerSettings(backend=args.backend, models=args.models, interval_s=args.interval_s,   # validates
                       drain_timeout_s=args.drain_timeout_s, metrics_port=args.metrics_port,
                       metrics_addr=args.metrics_addr, desired_port=args.desired_port,
                       desired_addr=args.desired_addr, timeline=args.timeline or "")
    if args.backend == "none":
        args.dry_run = True            # decide only: the orchestrator acts on /desired
    return args


def make_recorder(args, board=None):
    """Where each decision row goes: the /desired board, the timeline file (if asked) and
    stdout as JSON (--json)."""
    writer = None
    if args.timeline:
        from autoscaler.timeline import TimelineWriter

        writer = TimelineWriter(args.timeline)

    def record(row: dict) -> None:
        if board:
            board.update(row)
        if writer:
            writer(row)
        if args.json:
            keys = ("queue", "current", "desired", "reason", "waiting", "in_flight", "oldest_age_s")
            print(json.dumps(row if not args.once else {k: row.get(k) for k in keys}), flush=True)

    return record, writer


def make_reaper(args, settings: Settings, redis):
    """The reaper pass the controller runs each tick: a dead worker's held jobs back to its
    queue. Always safe, so it runs with --backend none too (only a dry run skips it)."""
    if args.dry_run and args.backend != "none":
        return None
    from elastiq.reservations import Reservations, reap_dead

    store = Reservations(redis)
    grace = settings.heartbeat_ttl_s + settings.heartbeat_interval_s
    return lambda: reap_dead(store, redis, grace_s=grace)


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=os.environ.get("ELASTIQ_LOG_LEVEL", "INFO"),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    from autoscaler.controller import Controller
    from autoscaler.policy import PolicyConfig

    settings, config = Settings.from_env(), PolicyConfig.from_env()
    redis = redis_client(settings)
    backend = make_backend(args.backend, redis)
    record, writer = make_recorder(args, _desired_board(args))
    metrics = None
    if args.metrics_port:
        from autoscaler.metrics import Metrics

        metrics = Metrics(args.metrics_port, args.metrics_addr)
    groups = [m.strip() for m in args.models.split(",") if m.strip()]
    controller = Controller(redis=redis, backend=backend, groups=groups, config=config,
                            drain_timeout_s=args.drain_timeout_s, dry_run=args.dry_run,
                            record=record, metrics=metrics, reap=make_reaper(args, settings, redis))
    if args.start_workers and not args.dry_run:
        controller.start_workers(args.start_workers)
    if args.once:
        rows = controller.reconcile_once(time.time())
        if not args.json:
            for r in map(DecisionRow.from_dict, rows):
                print(f"{r.queue}: {r.current} -> {r.desired} workers ({r.reason})")
        return 0
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(1))
    logging.getLogger("elastiq.autoscaler").info(
        "autoscaling %s with the %s backend every %.1fs (min %d, max %d)",
        groups, args.backend, args.interval_s, config.min_workers, config.max_workers)
    try:
        controller.run(interval_s=args.interval_s, should_stop=lambda: bool(stopping))
    finally:
        if writer:
            writer.close()
    return 0


def _desired_board(args):
    port = args.desired_port if args.desired_port >= 0 else (9809 if args.backend == "none" else 0)
    if not port:
        return None
    from autoscaler.desired import DesiredBoard, serve

    board = DesiredBoard(stale_s=max(30.0, 10 * args.interval_s))
    server = serve(board, args.desired_addr, port)
    logging.getLogger("elastiq.autoscaler").info(
        "desired workers served on http://%s:%d/desired/<model>", *server.server_address[:2])
    return board


if __name__ == "__main__":
    sys.exit(main())
