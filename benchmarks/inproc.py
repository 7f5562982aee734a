"""The in-process model limit: one process, one model copy, fixed batches, no queue.

Run as a child process by :func:`benchmarks.harness.inprocess_limit`, several at once:
each loads the model, prints ``ready``, waits for ``go`` on stdin (so all children run
over the same window), then tokenises + runs + L2-normalises batches for ``--seconds``
and prints one JSON line ``{"texts": n, "seconds": s, "rss_mb": ..., "peak_rss_mb": ...}``.
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
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--texts", required=True, help="JSON file: a list of strings")
    args = p.parse_args(argv)

    from elastiq.registry import Registry
    from workers import runtime as rt

    texts = json.loads(open(args.texts).read())
    spec = Registry.from_env().get(args.model)
    model = rt.load(spec, args.threads)
    batches = [texts[i:i + args.batch] for i in range(0, len(texts), args.batch)] or [["x"]]
    run_batch(model, batches[0])                      # warm-up pass
    print("ready", flush=True)
    sys.stdin.readline()
    done, k = 0, 0
    started = time.perf_counter()
    end = started + args.seconds
    while time.perf_counter() < end:
        done += run_batch(model, batches[k % len(batches)])
        k += 1
    print(json.dumps({"texts": done, "seconds": time.perf_counter() - started, **memory_mb()}), flush=True)
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


def run_batch(model, texts: list[str]) -> int:
    """Tokenise, run and normalise one batch, as a library user would; returns its size."""
    import numpy as np

    ids = model.encode(texts)
    out = model.forward(ids)
    if model.kind == "embed":
        arr = np.stack(out)
        arr /= np.maximum(np.linalg.norm(arr, axis=1, keepdims=True), 1e-12)
    return len(texts)


if __name__ == "__main__":
    sys.exit(main())
