"""``elastiq bench batching``: the pool with micro-batching ÷ the same pool without.

Same workers (``workers`` × 1 torch thread × ``slots`` slots), same single-sentence jobs,
saturated. Baseline: ``--no-batching`` (one forward pass per job, the plain-Celery shape).
The two arms alternate over ``rounds`` rounds (fresh workers each time); the ratio is the
median of the per-round ratios, with their min and max. Target: ratio ≥ 3×. For context,
the model's own ceiling is measured in the same run, also alternating: in-process
batch-32 ÷ batch-1 texts/s (no queue at all). The batch-size histogram of the batching
run comes from the worker heartbeats (the same numbers the metrics exporter reads).
"""

from __future__ import annotations

import time

from benchmarks import harness as h

TARGET = 3.0


def _pool_run(st: h.Stack, model: str, texts: list[str], workers: int, slots: int,
              extra: list[str], progress: bool) -> dict:
    st.start_workers(model, workers, slots=slots, threads=1, extra=extra)
    with st.client() as client:
        h.run_jobs(client, model, [[t] for t in texts[: max(64, len(texts) // 10)]])   # warm-up
        result = h.run_jobs(client, model, [[t] for t in texts], progress=progress, stack=st)
    time.sleep(1.5)      # one more heartbeat, so the stats include the whole run
    result["batching_stats"] = {w: (hb.batching or {}).get(model) for w, hb in st.heartbeats().items()}
    result["engine"] = h.pool_engine(st, model)
    st.stop_workers()
    return result


KEYS = ("jobs_per_s", "texts_per_s", "mean_batch_size")


def run(*, smoke: bool = False, model: str = "minilm", workers: int = 2, slots: int = 32,
        jobs: int = 2000, rounds: int = h.ROUNDS) -> dict:
    if smoke:
        jobs = 200
    texts = h.sentences(jobs)
    report: dict = {"benchmark": "batching", "model": model, "machine": h.machine(), "target_ratio": TARGET,
                    "workers": workers, "slots": slots, "threads": 1, "jobs": jobs, "rounds": rounds}
    seconds = 1.0 if smoke else 5.0
    with h.stack() as st:
        h.stage(f"pool with and without batching: {workers} workers x {slots} slots, {jobs} jobs, {rounds} rounds")
        runs = h.alternate({
            "unbatched": lambda _: _pool_run(st, model, texts, workers, slots, ["--no-batching"], not smoke),
            "batched": lambda _: _pool_run(st, model, texts, workers, slots, [], not smoke)}, rounds)
        h.stage("ceiling: the model's own batch-32 / batch-1 speed-up, in-process")
        ceiling = h.alternate({
            "batch1": lambda _: h.inprocess_limit(model, texts, processes=workers, batch=1, group=32, seconds=seconds),
            "batch32": lambda _: h.inprocess_limit(model, texts, processes=workers, batch=32, seconds=seconds)},
            rounds)
    report["unbatched"] = h.summarize(runs["unbatched"], KEYS)
    report["batched"] = h.summarize(runs["batched"], KEYS)
    report["batched"]["batching_stats"] = runs["batched"][-1]["batching_stats"]
    report["inprocess_batch1"] = h.summarize(ceiling["batch1"], ("texts_per_s",))
    report["inprocess_batch32"] = h.summarize(ceiling["batch32"], ("texts_per_s", "padding_ratio"))
    report["model_batching_ceiling"] = h.ratio_spread(ceiling["batch32"], ceiling["batch1"], "texts_per_s")
    report["ratio_spread"] = h.ratio_spread(runs["batched"], runs["unbatched"], "jobs_per_s")
    report["ratio"] = report["ratio_spread"]["median"]
    report["engine"] = h.one_engine(r["engine"] for arm in (*runs.values(), *ceiling.values()) for r in arm)
    report["meets_target"] = report["ratio"] >= TARGET
    return report


def plot(report: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.2))
    vals = [report["unbatched"]["jobs_per_s"], report["batched"]["jobs_per_s"]]
    a.bar(["--no-batching", "micro-batching"], vals, color=["grey", "tab:blue"])
    a.set_ylabel("jobs/s")
    lo, hi = report["ratio_spread"]["min"], report["ratio_spread"]["max"]
    a.set_title(f"batching: {report['ratio']:.2f}x [{lo:.2f}-{hi:.2f}] ({report['machine']['cpus']} cores)")
    hist: dict[int, int] = {}
    for stats in report["batched"]["batching_stats"].values():
        for size, count in (stats or {}).get("sizes", {}).items():
            hist[int(size)] = hist.get(int(size), 0) + count
    if hist:
        b.bar(list(hist), list(hist.values()), color="tab:blue")
    b.set_xlabel("texts per forward pass")
    b.set_ylabel("passes")
    b.set_title("batch-size histogram (heartbeats)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
