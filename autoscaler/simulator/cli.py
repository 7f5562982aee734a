"""``elastiq simulate``: replay a trace against scaling policies and compare them.

    elastiq simulate --trace steady [--policies elastiq,keda,celery,ray,static]
                     [--json out.json] [--png out.png]
    elastiq simulate --all-traces --json out.json --png out.png   # out-<trace>.png each

Prints one table per trace: worker-seconds (cost), p50/p95/p99 queue wait, jobs over the
wait SLO, scale events and direction changes. The worker model's defaults are this
machine's measurements (see ``autoscaler.simulator.model``); every one is a flag.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path

from autoscaler.policy import PolicyConfig
from autoscaler.simulator.model import SimParams
from autoscaler.simulator.report import Summary, summarise, table
from autoscaler.simulator.runner import EXTRA, POLICIES, run_trace
from autoscaler.traces import BUILTIN, load
from elastiq.errors import ConfigError

RET_OK, RET_USAGE = 0, 2


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="elastiq simulate", description=__doc__.splitlines()[0])
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--trace", help=f"built-in ({', '.join(BUILTIN)}) or a CSV/JSON-lines/timeline file")
    src.add_argument("--all-traces", action="store_true", help="run every built-in trace")
    p.add_argument("--policies", default=",".join(POLICIES),
                   help=f"comma-separated, default {','.join(POLICIES)}; also {','.join(EXTRA)}")
    p.add_argument("--json", type=Path, help="write the summaries (and parameters) here")
    p.add_argument("--png", type=Path, help="draw queue depth and workers per policy")
    d = SimParams()
    p.add_argument("--cold-start-s", type=float, default=d.cold_start_s, help="start -> ready (measured 5.2 s)")
    p.add_argument("--throughput", type=float, default=d.throughput_per_worker,
                   help="jobs/s one worker serves (measured 108 with 16 slots)")
    p.add_argument("--slots", type=int, default=d.slots_per_worker, help="job slots per worker")
    p.add_argument("--service-cv", type=float, default=d.service_cv, help="spread of a job's service time")
    p.add_argument("--min-workers", type=int, default=d.min_workers)
    p.add_argument("--max-workers", type=int, default=d.max_workers)
    p.add_argument("--slo-wait-s", type=float, default=d.slo_wait_s)
    p.add_argument("--tick-s", type=float, default=d.tick_s)
    p.add_argument("--seed", type=int, default=d.seed, help="service-time draws")
    p.add_argument("--ray-target-ongoing", type=float, default=None,
                   help="Ray's target_ongoing_requests per worker (default 0.4 x slots; Ray's literal default is 2)")
    return p


def targets(summaries: list[Summary]) -> dict:
    """The ratios the project aims at (reported, not asserted)."""
    by = {s.policy: s for s in summaries}
    out: dict = {}
    e, k, st = by.get("elastiq"), by.get("keda"), by.get("static")
    if e and st and st.worker_seconds:
        out["elastiq_vs_static_worker_seconds"] = round(e.worker_seconds / st.worker_seconds, 3)
    if e and k:
        out["elastiq_vs_keda_worker_seconds"] = round(e.worker_seconds / k.worker_seconds, 3) if k.worker_seconds else None
        out["elastiq_vs_keda_p95_wait"] = round(e.wait_p95_s / k.wait_p95_s, 3) if k.wait_p95_s else None
    return out


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    policies = [x.strip() for x in args.policies.split(",") if x.strip()]
    unknown = [x for x in policies if x not in POLICIES + EXTRA]
    if unknown or not policies:
        print(f"elastiq simulate: unknown policy {unknown}; choose from {', '.join(POLICIES + EXTRA)}",
              file=sys.stderr)
        return RET_USAGE
    try:
        params = SimParams(slots_per_worker=args.slots, throughput_per_worker=args.throughput,
                           service_cv=args.service_cv, cold_start_s=args.cold_start_s, tick_s=args.tick_s,
                           min_workers=args.min_workers, max_workers=args.max_workers,
                           slo_wait_s=args.slo_wait_s, seed=args.seed)
        config = PolicyConfig.from_env()
        names = list(BUILTIN) if args.all_traces else [args.trace]
        traces = [load(n) for n in names]
    except (ConfigError, FileNotFoundError, ValueError) as exc:
        print(f"elastiq simulate: {exc}", file=sys.stderr)
        return RET_USAGE
    report: dict = {"params": asdict(params), "policy_config": asdict(config), "traces": {}}
    for trace in traces:
        started = time.perf_counter()
        results = run_trace(trace, policies, params, config, args.ray_target_ongoing)
        summaries = [summarise(r) for r in results]
        took = time.perf_counter() - started
        print(f"\ntrace {trace.name}: {trace.jobs} jobs over {trace.duration_s:.0f}s (simulated in {took:.1f}s)")
        print(table(summaries))
        goal = targets(summaries)
        if goal:
            print("  " + ", ".join(f"{k} {v}" for k, v in goal.items()))
        entry = {"jobs": trace.jobs, "duration_s": trace.duration_s, "summaries": [s.as_dict() for s in summaries],
                 "targets": goal}
        if args.png:
            png = args.png if len(traces) == 1 else args.png.with_name(f"{args.png.stem}-{trace.name}{args.png.suffix}")
            from autoscaler.simulator.plot import render
            entry["png"] = str(render(results, png))
            print(f"  wrote {png}")
        report["traces"][trace.name] = entry
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2))
        print(f"\nwrote {args.json}")
    return RET_OK


if __name__ == "__main__":
    raise SystemExit(main())
