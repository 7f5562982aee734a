"""``elastiq simulate``: replay traces against scaling policies on a model of this machine.

    elastiq simulate --trace flash [--policies elastiq,keda,...] [--json F] [--png F]
    elastiq simulate --set heldout --out docs/sim     # heldout.json, heldout-<trace>.png, ...
    elastiq simulate --set dev --out docs/sim
    elastiq simulate readme [--dir docs/sim]          # docs/sim/README.md from the JSON
    elastiq simulate record ... / replay ... / calibrate ...   # a live run against the simulator

Prints one table per trace -- worker-seconds (cost), p50/p95/p99 queue wait, jobs over
the wait SLO, scale events, direction changes -- then elastiq's ratio to every baseline
and to the best one, and the issue #19 targets. The machine (CPU and memory shared by
workers, cold starts, service time) is calibrated from ``docs/bench/*.json``
(``--calibration`` for another directory or a calibration JSON); ``--idealised`` drops it.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

from autoscaler.policy import PolicyConfig
from autoscaler.simulator import machine
from autoscaler.simulator.model import SimParams
from autoscaler.simulator.report import provenance, summarise, table
from autoscaler.simulator.runner import EXTRA, POLICIES, run_trace, warm_pools
from autoscaler.simulator.scoring import score_trace
from autoscaler.traces import BUILTIN, DEV, FRESH, FRESH2, FRESH3, FRESH4, heldout, load
from elastiq.errors import ConfigError

RET_OK, RET_FAILED, RET_USAGE = 0, 1, 2
SETS = {"dev": lambda: DEV, "heldout": heldout, "fresh": lambda: FRESH, "fresh2": lambda: FRESH2,
        "fresh3": lambda: FRESH3, "fresh4": lambda: FRESH4,
        "all": lambda: DEV + heldout() + FRESH + FRESH2 + FRESH3 + FRESH4}
SUBCOMMANDS = {"readme": "autoscaler.simulator.docs", "record": "autoscaler.simulator.live",
               "replay": "autoscaler.simulator.live", "calibrate": "autoscaler.simulator.live"}


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="elastiq simulate", description=__doc__.splitlines()[0])
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--trace", help=f"built-in ({', '.join(BUILTIN)}) or a CSV/JSON-lines/timeline file")
    src.add_argument("--set", choices=sorted(SETS), help="a set of built-in traces (all: every one)")
    src.add_argument("--all-traces", action="store_true", help="same as --set all")
    p.add_argument("--policies", default=",".join(POLICIES),
                   help=f"comma-separated, default {','.join(POLICIES)}; also {','.join(EXTRA)}")
    p.add_argument("--json", type=Path, help="write the report here")
    p.add_argument("--png", type=Path, help="draw queue depth and workers per policy (one PNG per trace)")
    p.add_argument("--out", type=Path, help="with --set: write OUT/<set>.json and OUT/<set>-<trace>.png")
    p.add_argument("--require-targets", action="store_true", help="exit 1 unless every target is met")
    p.add_argument("--calibration", help="a bench-style directory or calibration JSON (default: docs/sim/calibration)")
    p.add_argument("--idealised", action="store_true",
                   help="no machine model: workers never share CPU, fixed cold start and slot time")
    p.add_argument("--cold-start-s", type=float, help="every cold start this long (instead of the measured ones)")
    p.add_argument("--throughput", type=float, help="jobs/s one worker alone serves (default: calibration)")
    p.add_argument("--slots", type=int, default=SimParams.slots_per_worker, help="job slots per worker")
    p.add_argument("--service-cv", type=float, default=SimParams.service_cv, help="spread of a job's slot time")
    p.add_argument("--min-workers", type=int, default=SimParams.min_workers)
    p.add_argument("--max-workers", type=int, default=SimParams.max_workers)
    p.add_argument("--slo-wait-s", type=float, default=SimParams.slo_wait_s)
    p.add_argument("--tick-s", type=float, default=SimParams.tick_s)
    p.add_argument("--seed", type=int, default=SimParams.seed, help="service-time and cold-start draws")
    p.add_argument("--ray-target-ongoing", type=float, default=None,
                   help="Ray's target_ongoing_requests per worker (default 0.4 x slots; Ray's literal default is 2)")
    return p


def make_params(args) -> tuple[SimParams, dict | None]:
    """The simulation parameters and the calibration they came from (None when idealised)."""
    common = dict(slots_per_worker=args.slots, service_cv=args.service_cv, tick_s=args.tick_s,
                  min_workers=args.min_workers, max_workers=args.max_workers,
                  slo_wait_s=args.slo_wait_s, seed=args.seed)
    if args.idealised:
        params, cal = SimParams(**common), None
    else:
        found = machine.calibration(args.calibration)
        params, cal = SimParams.for_machine(found, **common), found.as_dict()
    if args.throughput is not None:
        params = replace(params, throughput_per_worker=args.throughput)
    if args.cold_start_s is not None:
        params = replace(params, cold_start_s=args.cold_start_s, cold_start_samples=())
    return params, cal


def run_one(trace, policies, params, config, args, png: Path | None) -> dict:
    started = time.perf_counter()
    results = run_trace(trace, policies, params, config, args.ray_target_ongoing)
    summaries = [summarise(r) for r in results]
    lost = [s.policy for s in summaries if s.completed != s.jobs]
    if lost:
        raise RuntimeError(f"trace {trace.name}: jobs not completed under {lost}")
    entry = {"jobs": trace.jobs, "duration_s": trace.duration_s, "summaries": [s.as_dict() for s in summaries],
             "refused_starts": {r.policy: r.refused_starts for r in results if r.refused_starts},
             **score_trace(trace, params, summaries, pools=warm_pools(trace, params) if "elastiq" in policies else None)}
    print(f"\ntrace {trace.name}: {trace.jobs} jobs over {trace.duration_s:.0f}s, {entry['load_phases']} load "
          f"phase(s) (simulated in {time.perf_counter() - started:.1f}s)")
    print(table(summaries))
    for line in describe(entry):
        print("  " + line)
    if png:
        from autoscaler.simulator.plot import render
        entry["png"] = render(results, png).name
    return entry


def describe(entry: dict) -> list[str]:
    if "ratios" not in entry:
        return []
    r = entry["ratios"]
    vs = ", ".join(f"{n} {v['worker_seconds']}x/{v['p95_wait']}x" for n, v in r["vs"].items())
    lines = [f"elastiq vs (worker-s/p95): {vs}"]
    best = r["best"]
    lines.append("best baseline: " + ", ".join(f"{m} {b['baseline']} ({b['value']})" for m, b in best.items()))
    lines += [f"{'ok  ' if t['ok'] else 'MISS'} {k}: {t['detail']}" for k, t in entry["targets"].items()]
    return lines


def _paths(args, set_name: str | None) -> tuple[Path | None, Path | None]:
    if args.out and set_name:
        return args.out / f"{set_name}.json", args.out / f"{set_name}.png"
    return args.json, args.png


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] in SUBCOMMANDS:
        import importlib

        return importlib.import_module(SUBCOMMANDS[argv[0]]).main(argv)
    args = parser().parse_args(argv)
    policies = [x.strip() for x in args.policies.split(",") if x.strip()]
    unknown = [x for x in policies if x not in POLICIES + EXTRA]
    if unknown or not policies:
        print(f"elastiq simulate: unknown policy {unknown}; choose from {', '.join(POLICIES + EXTRA)}",
              file=sys.stderr)
        return RET_USAGE
    set_name = "all" if args.all_traces else args.set
    try:
        params, cal = make_params(args)
        config = PolicyConfig.from_env()
        names = list(SETS[set_name]()) if set_name else [args.trace]
        traces = [load(n) for n in names]
    except (ConfigError, FileNotFoundError, ValueError) as exc:
        print(f"elastiq simulate: {exc}", file=sys.stderr)
        return RET_USAGE
    args.json, args.png = _paths(args, set_name)
    report: dict = {"set": set_name or "trace", **provenance(argv), "calibration": cal, "params": asdict(params),
                    "policy_config": asdict(config), "traces": {}}
    for trace in traces:
        png = args.png
        if png and set_name:
            png = png.with_name(f"{png.stem}-{trace.name}{png.suffix}")
        report["traces"][trace.name] = run_one(trace, policies, params, config, args, png)
    met = [e.get("targets_met") for e in report["traces"].values() if "targets_met" in e]
    report["all_targets_met"] = bool(met) and all(met)
    if args.png and set_name:
        from autoscaler.simulator.plot import overview

        report["png"] = overview(report, args.png).name
        print(f"wrote {args.png}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")
        print(f"\nwrote {args.json}")
    if met:
        print(f"\ntargets met on {sum(met)}/{len(met)} trace(s)")
    return RET_FAILED if args.require_targets and not report["all_targets_met"] else RET_OK


if __name__ == "__main__":
    raise SystemExit(main())
