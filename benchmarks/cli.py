"""``elastiq bench NAME [--json PATH] [--png PATH] [--smoke]``: run one benchmark.

Each benchmark module has ``run(smoke=False, **kw) -> dict`` and optionally
``plot(report, path)``. The report is printed as JSON (``--json -``, the default) or
written to a file, with the git commit of the code (``<sha>+dirty`` with local changes)
and the load average taken before the run started.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import time

from benchmarks.provenance import git_commit, load_avg

BENCHMARKS: dict[str, str] = {
    "efficiency": "pool jobs/s ÷ the in-process model limit (1- and 8-sentence jobs)",
    "batching":   "pool with micro-batching ÷ the same pool with --no-batching",
    "mixed":      "mixed lengths: length-sorted ÷ FIFO batches, and padded/real tokens",
    "overhead":   "no-op job round trip ÷ plain Celery ÷ raw Redis LPUSH/BRPOP",
    "coldstart":  "worker start → model loaded → first job done, and import share",
    "memory":     "RSS per worker and total for 1, 2 and 4 workers",
    "quantize":   "torch int8 / bf16 speed-up and cosine agreement with fp32",
    "engine":     "torch fp32 vs onnx fp32 vs onnx int8: texts/s, held-out cosine, RSS, spawn -> result",
    "reaction":   "autoscaler: burst → decision → new worker ready → consuming",
    "gateway":    "HTTP gateway ÷ Python client throughput, and added p50, concurrency 64",
    "cascade":    "edge/cloud cascade on the test split: accuracy, escalation, edge vs cloud CPU/text, frozen-LR baseline",
    "capacity":   "jobs/s of 1, 2 and 4 workers on this host, and a job alone (simulator calibration)",
    "sustained":  "a saturated pool for minutes as Redis fills with results: jobs/s during AOF rewrites ÷ otherwise",
}


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="elastiq bench", description=__doc__.splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="benchmarks:\n" + "\n".join(f"  {k:<11} {v}" for k, v in BENCHMARKS.items()))
    p.add_argument("name", choices=sorted(BENCHMARKS), metavar="NAME", help="benchmark to run")
    p.add_argument("--json", default="-", metavar="PATH", help="write the report here ('-' = stdout)")
    p.add_argument("--png", metavar="PATH", help="also draw a chart (benchmarks that have one)")
    p.add_argument("--smoke", action="store_true", help="a small fast run (CI): checks it works, not speed")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    module = importlib.import_module(f"benchmarks.{args.name}")
    start = {"git_commit": git_commit(), "load_avg_at_start": load_avg(),
             "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    report = {**start, **module.run(smoke=args.smoke)}
    report.setdefault("smoke", args.smoke)
    text = json.dumps(report, indent=2, default=str)
    if args.json == "-":
        print(text)
    else:
        with open(args.json, "w") as f:
            f.write(text + "\n")
        print(f"wrote {args.json}", file=sys.stderr)
    if args.png:
        if hasattr(module, "plot"):
            module.plot(report, args.png)
            print(f"wrote {args.png}", file=sys.stderr)
        else:
            print(f"{args.name} has no chart; --png ignored", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
