"""``elastiq demo`` (``make demo``): the main job on the embedded default, end to end.

1. brings up the local stack (redis-server, one worker, Flower, the autoscaler);
2. submits a burst of real embedding jobs from a built-in corpus, with a progress bar;
3. prints throughput and latency percentiles (queue wait and end to end);
4. runs a small semantic search over the results;
5. waits while the autoscaler drains and removes the extra workers, then writes the
   scaling timeline as a PNG and prints its path;
6. takes the stack down again.
"""

from __future__ import annotations

import argparse
import os
import time
from importlib import resources
from pathlib import Path

from elastiq.heartbeats import read_heartbeats
from elastiq.local import stack
from elastiq.redisconn import redis_client
from elastiq.settings import Settings

DEMO_ENV = {  # a short stabilisation floor so the demo shows scale-in within a minute
    "ELASTIQ_AUTOSCALE_MIN_WORKERS": "1",
    "ELASTIQ_AUTOSCALE_MAX_WORKERS": "3",
    "ELASTIQ_AUTOSCALE_STABILISATION_MIN_S": "5",
    "ELASTIQ_WORKER_THREADS": "1",
}


def corpus() -> list[str]:
    text = resources.files("elastiq").joinpath("data/corpus.txt").read_text()
    return [line.strip() for line in text.splitlines() if line.strip()]


def percentiles(values: list[float], ps=(50, 95, 99)) -> dict[int, float]:
    ordered = sorted(values)
    return {p: ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))] for p in ps}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="elastiq demo", description=__doc__.splitlines()[0])
    p.add_argument("--jobs", type=int, default=1500, help="jobs in the burst (default 1500)")
    p.add_argument("--scale-down-timeout-s", type=float, default=120)
    p.add_argument("--keep", action="store_true", help="leave the stack running afterwards")
    a = p.parse_args(argv)
    for k, v in DEMO_ENV.items():
        os.environ.setdefault(k, v)
    home = Path(os.environ.get("ELASTIQ_HOME", ".elastiq/demo")).resolve()
    os.environ["ELASTIQ_HOME"] = str(home)
    stack.down(home, progress=lambda *_: None)      # a clean start if a previous demo was cut off

    print("== 1. local stack: redis-server + 1 worker + Flower + autoscaler (all on 127.0.0.1)")
    started, since = time.monotonic(), time.time()   # the timeline file keeps earlier runs' rows
    state = stack.up(home, workers=1, autoscale=True)
    print(f"   up in {time.monotonic() - started:.1f}s; Flower http://127.0.0.1:{state.flower_port}")
    try:
        run_burst(state, a.jobs)
        png = wait_for_scale_in(state, home, a.scale_down_timeout_s, since)
        print(f"\n== 5. scaling timeline written to {png}")
    finally:
        if not a.keep:
            stack.down(home, progress=lambda *_: None)
            print("== 6. stack stopped (elastiq down)")
    return 0


def run_burst(state, n_jobs: int) -> None:
    import numpy as np

    from producer import Client

    sentences = corpus()
    texts = [sentences[i % len(sentences)] for i in range(n_jobs)]
    print(f"\n== 2. a burst of {n_jobs} single-sentence embedding jobs (model minilm)")
    with Client(state.redis_url) as client:
        t0 = time.time()
        results = client.map("minilm", texts, progress=True, timeout=900)
        elapsed = time.time() - t0
        waits = [r.timings["queue_wait_ms"] for r in results]
        e2e = [(r.timings["finished_at"] - t0) * 1000 for r in results]
        workers = sorted({r.timings["worker"] for r in results})
        stored = stored_results(state.redis_url, [r.job_id for r in results])
        print(f"\n== 3. {len(results)} results, {stored} of {n_jobs} stored by the workers in Redis; "
              f"{len(results) / elapsed:.0f} jobs/s over {elapsed:.1f}s on {len(workers)} worker(s)")
        qw, ee = percentiles(waits), percentiles(e2e)
        print(f"   queue wait  p50 {qw[50]:8.0f} ms   p95 {qw[95]:8.0f} ms   p99 {qw[99]:8.0f} ms")
        print(f"   end to end  p50 {ee[50]:8.0f} ms   p95 {ee[95]:8.0f} ms   p99 {ee[99]:8.0f} ms")
        sizes = [r.timings["batch_size"] for r in results]
        print(f"   mean forward-pass batch size {sum(sizes) / len(sizes):.1f} texts")

        print("\n== 4. semantic search over the corpus (cosine similarity of the embeddings)")
        vectors = np.array([r.outputs[0] for r in results[: len(sentences)]])
        queries = ["pets and animals", "what is the economy doing", "cooking at home"]
        qv = np.array(client.submit("minilm", queries).result(timeout=60).outputs)
        for q, row in zip(queries, qv @ vectors.T):
            best = np.argsort(-row)[:2]
            hits = "; ".join(f"{sentences[i]!r} ({row[i]:.2f})" for i in best)
            print(f"   {q!r:32} -> {hits}")


def stored_results(redis_url: str, ids: list[str]) -> int:
    """How many of ``ids`` have a successful result stored in Redis (read there, not from
    what the client returned)."""
    import json

    r = redis_client(Settings.from_env(redis_url=redis_url))
    try:
        raw = r.mget([f"celery-task-meta-{i}" for i in ids]) if ids else []
    finally:
        r.close()
    return sum(1 for x in raw if x and json.loads(x).get("status") == "SUCCESS")


def wait_for_scale_in(state, home: Path, timeout_s: float, since: float = 0.0) -> Path:
    """Wait until the pool is back to one worker; print and plot this run's decisions (rows
    written from ``since``, UNIX seconds, on)."""
    from autoscaler.plot import render
    from autoscaler.timeline import read_timeline

    r = redis_client(Settings(redis_url=state.redis_url))
    print("\n   waiting for the autoscaler to drain and remove the extra workers ...")
    end = time.monotonic() + timeout_s
    try:
        while time.monotonic() < end:
            beats = read_heartbeats(r)
            if len(beats) <= 1 and not any(b.draining for b in beats.values()):
                break
            time.sleep(1)
    finally:
        r.close()
    time.sleep(2)
    rows = [x for x in read_timeline(Path(state.timeline)) if x.decided and x.t >= since]
    changes = [x for x in rows if x.changes_pool]
    peak = max((x.current for x in rows), default=0)
    print(f"   autoscaler: peak {peak} worker(s); decisions that changed the pool:")
    last = None
    for x in changes:
        key = (x.current, x.desired)
        if key != last:
            print(f"   t={x.t - rows[0].t:6.1f}s  {x.current} -> {x.desired}  {x.reason}")
            last = key
    return render(rows, home / "timeline.png", title="elastiq demo")
