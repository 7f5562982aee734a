"""``elastiq bench mixed``: mixed-length texts, length-sorted batches ÷ FIFO batches.

Jobs of 8 texts each whose lengths follow a lognormal mix (1 to 24 corpus sentences,
truncated at the model's 256 tokens). The same pool runs them twice: with the batcher's
length sort (default) and with ``--no-sort`` (arrival order). Reported: texts/s ratio
(target ≥ 2×) and the padded/real token ratio of each run, read from the worker
heartbeats' ``batching`` field (target ≤ 1.2 sorted).
"""

from __future__ import annotations

import time

from benchmarks import harness as h

TARGET_RATIO = 2.0
TARGET_PADDING = 1.2


def _padding(st: h.Stack, model: str) -> dict:
    time.sleep(1.5)      # one more heartbeat, so the stats include the whole run
    padded = real = batches = texts = 0
    for hb in st.heartbeats().values():
        s = (hb.batching or {}).get(model) or {}
        batches += s.get("batches", 0)
        texts += s.get("texts", 0)
        padded += s.get("padded_tokens", 0)
        real += s.get("real_tokens", 0)
    return {"padding_ratio": round(padded / real, 3) if real else None, "batches": batches,
            "mean_batch_size": round(texts / batches, 2) if batches else None}


def _pool_run(st: h.Stack, model: str, items, workers: int, slots: int, extra, progress) -> dict:
    st.start_workers(model, workers, slots=slots, threads=1, extra=extra)
    with st.client() as client:
        result = h.run_jobs(client, model, items, progress=progress)
    result.update(_padding(st, model))
    result["engine"] = h.pool_engine(st, model)
    st.stop_workers()
    return result


KEYS = ("texts_per_s", "jobs_per_s", "padding_ratio", "mean_batch_size")


def run(*, smoke: bool = False, model: str = "minilm", workers: int = 2, slots: int = 16,
        jobs: int = 120, per_job: int = 8, rounds: int = h.ROUNDS) -> dict:
    if smoke:
        jobs = 16
    texts = h.mixed_texts(jobs * per_job)
    items = [texts[i:i + per_job] for i in range(0, len(texts), per_job)]
    report: dict = {"benchmark": "mixed", "model": model, "machine": h.machine(),
                    "target_ratio": TARGET_RATIO, "target_padding_ratio": TARGET_PADDING,
                    "workers": workers, "slots": slots, "threads": 1, "jobs": jobs, "texts_per_job": per_job,
                    "rounds": rounds,
                    "text_chars": {"min": min(map(len, texts)), "median": sorted(map(len, texts))[len(texts) // 2],
                                   "max": max(map(len, texts))}}
    with h.stack() as st:
        h.stage(f"FIFO (--no-sort) and length-sorted batches: {jobs} jobs x {per_job} mixed-length texts")
        runs = h.alternate({"fifo": lambda _: _pool_run(st, model, items, workers, slots, ["--no-sort"], not smoke),
                            "sorted": lambda _: _pool_run(st, model, items, workers, slots, [], not smoke)}, rounds)
    report["fifo"] = h.summarize(runs["fifo"], KEYS)
    report["sorted"] = h.summarize(runs["sorted"], KEYS)
    report["engine"] = h.one_engine(r["engine"] for arm in runs.values() for r in arm)
    report["ratio_spread"] = h.ratio_spread(runs["sorted"], runs["fifo"], "texts_per_s")
    report["ratio"] = report["ratio_spread"]["median"]
    report["padding_ratio_sorted"] = report["sorted"]["padding_ratio"]
    report["padding_ratio_fifo"] = report["fifo"]["padding_ratio"]
    report["meets_target"] = (report["ratio"] >= TARGET_RATIO
                              and (report["padding_ratio_sorted"] or 99) <= TARGET_PADDING)
    return report


def plot(report: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(8, 3.2))
    a.bar(["FIFO", "length-sorted"], [report["fifo"]["texts_per_s"], report["sorted"]["texts_per_s"]],
          color=["grey", "tab:blue"])
    a.set_ylabel("texts/s")
    a.set_title(f"mixed lengths: {report['ratio']:.2f}x [{report['ratio_spread']['min']:.2f}-"
                f"{report['ratio_spread']['max']:.2f}]")
    b.bar(["FIFO", "length-sorted"], [report["padding_ratio_fifo"] or 0, report["padding_ratio_sorted"] or 0],
          color=["grey", "tab:blue"])
    b.axhline(TARGET_PADDING, color="red", ls="--", lw=1)
    b.set_ylabel("padded / real tokens")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
