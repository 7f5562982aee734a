"""The in-process model limit: one process, one model copy, no queue -- batched the way a
worker batches.

Run as a child process by :func:`benchmarks.harness.inprocess_limit`, several at once:
each loads the model, prints ``ready``, waits for ``go`` on stdin (so all children run
over the same window), then hands groups of ``--group`` texts to the worker's own
micro-batcher (:class:`workers.batcher.Batcher`: length-sorted, cut into passes of at most
``--batch`` texts and ``--max-tokens`` padded tokens by the same cost rule) and
post-processes the outputs as a job would (``runtime.postprocess``), for ``--seconds``.
It prints one JSON line: texts done, seconds, the engine the runtime reports, the
batcher's own padding (padded / real tokens) and passes, and its memory (rss_mb, peak_rss_mb).
"""

from __future__ import annotations

import argparse
import json
import sys
import time


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.inproc")
    p.add_argument("--model", default="minilm")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--batch", type=int, default=32, help="max texts per forward pass (the worker's default)")
    p.add_argument("--max-tokens", type=int, default=8192, help="max padded tokens per pass (the worker's default)")
    p.add_argument("--group", type=int, default=32, help="texts handed to the batcher at once")
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--texts", required=True, help="JSON file: a list of strings")
    args = p.parse_args(argv)

    from elastiq.registry import Registry
    from workers import runtime as rt
    from workers.batcher import Batcher, BatchStats

    texts = json.loads(open(args.texts).read())
    spec = Registry.from_env().get(args.model)
    model = rt.load(spec, args.threads)
    batcher = Batcher(model, max_batch=args.batch, max_tokens=args.max_tokens)
    groups = [texts[i:i + args.group] for i in range(0, len(texts), args.group)] or [["x"]]
    run_group(batcher, model, groups[0])              # warm-up pass
    batcher.stats = BatchStats()
    print("ready", flush=True)
    sys.stdin.readline()
    done, k = 0, 0
    started = time.perf_counter()
    end = started + args.seconds
    while time.perf_counter() < end:
        done += run_group(batcher, model, groups[k % len(groups)])
        k += 1
    seconds = time.perf_counter() - started
    stats = batcher.stats.as_dict()
    batcher.close()
    print(json.dumps({"texts": done, "seconds": seconds, "engine": model.engine,
                      "padded_tokens": stats["padded_tokens"], "real_tokens": stats["real_tokens"],
                      "passes": stats["batches"], **memory_mb()}), flush=True)
    return 0


def memory_mb() -> dict:
    """This process' resident memory now and at its peak (``/proc/self/status``)."""
    out = {}
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(("VmRSS:", "VmHWM:")):
                    key = "rss_mb" if line.startswith("VmRSS") else "peak_rss_mb"
                    out[key] = round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return out


def run_group(batcher, model, texts: list[str]) -> int:
    """One group through the batcher and the job's post-processing; returns its size."""
    raw, _ = batcher.submit(texts).result()
    model.postprocess(raw, {})
    return len(texts)


if __name__ == "__main__":
    sys.exit(main())
