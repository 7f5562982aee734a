"""``elastiq bench efficiency``: pool throughput ÷ the in-process model limit, same cores.

Baseline: ``processes`` bare model processes × 1 torch thread, no queue, batching the way
a worker does -- groups of ``slots`` texts through the worker's own length-sorted
batcher and its post-processing (:mod:`benchmarks.inproc`, which reports its own padding).
Pool: the same number of workers × 1 torch thread, saturated (every job submitted up
front) by one client on the same machine, client → Redis → workers → results, for
single-sentence jobs and for 8-sentence jobs. The three arms alternate over ``rounds``
rounds (the pool's workers stay up, idle, while the baseline runs); each ratio is the
median of the per-round ratios pool ÷ baseline, with min and max. Target: ratio ≥ 0.90.

Per-job cost (single-sentence jobs): the CPU each process spent per job -- the client,
redis-server, the workers, and the workers' CPU *beyond the model* (their total minus what
their batchers spent tokenising and in forward passes, both from the same heartbeat).
Targets: workers beyond the model ≤ 0.8 ms, client ≤ 0.4 ms. And a fourth alternating
arm: the same single-sentence jobs through plain Celery (benchmarks/plain_celery.py: one
forward pass per job, the same number of worker processes x 1 thread): elastiq's jobs/s
over plain Celery's, per round.
"""

from __future__ import annotations

from benchmarks import harness as h

TARGET = 0.90
KEYS = ("texts_per_s", "jobs_per_s", "mean_batch_size")
TARGET_WORKER_BEYOND_MODEL_MS = 0.8
TARGET_CLIENT_MS = 0.4
TARGET_VS_PLAIN_CELERY = 3.0
CPU_KEYS = ("client", "redis", "workers", "workers_model", "workers_beyond_model")


def run(*, smoke: bool = False, model: str = "minilm", workers: int = 2, slots: int = 32,
        jobs: int = 3000, seconds: float = 6.0, rounds: int = h.ROUNDS) -> dict:
    if smoke:
        jobs, seconds = 240, 2.0
    texts = h.sentences(jobs)
    eight = [texts[i:i + 8] for i in range(0, jobs, 8)]
    report: dict = {"benchmark": "efficiency", "model": model, "machine": h.machine(), "target_ratio": TARGET,
                    "workers": workers, "slots": slots, "threads": 1, "rounds": rounds}
    with h.stack() as st:
        h.stage(f"pool: {workers} workers x {slots} slots x 1 thread")
        st.start_workers(model, workers, slots=slots, threads=1)
        with st.client() as client:
            h.run_jobs(client, model, [[t] for t in texts[: max(64, jobs // 10)]])   # warm-up

            def pool(items):
                def arm(_round):
                    return {**h.run_jobs(client, model, items, progress=not smoke, stack=st),
                            "engine": h.pool_engine(st, model)}
                return arm

            singles = [[t] for t in texts]
            n_plain = min(len(singles), 1500)
            runs = h.alternate({
                "inprocess": lambda _: h.inprocess_limit(model, texts, processes=workers, group=slots,
                                                         seconds=seconds),
                "single": pool(singles), "eight": pool(eight),
                "plain_celery": lambda _: h.plain_celery_jobs(st, model, singles[:n_plain], workers=workers)},
                rounds)
        report["heartbeat_batching"] = {w: hb.batching for w, hb in st.heartbeats().items()}
        st.stop_workers()
    report["inprocess_limit"] = h.summarize(runs["inprocess"], ("texts_per_s", "padding_ratio", "mean_pass_size"))
    for name in ("single", "eight"):
        spread = h.ratio_spread(runs[name], runs["inprocess"], "texts_per_s")
        report[name] = {**h.summarize(runs[name], KEYS), "ratio": spread["median"], "ratio_spread": spread}
        report[f"ratio_{name}"] = spread["median"]
    report["engine"] = h.one_engine(r.get("engine") for arm in runs.values() for r in arm)
    report["plain_celery"] = h.summarize(runs["plain_celery"], ("jobs_per_s", "client_cpu_ms_per_job"))
    vs_plain = h.ratio_spread(runs["single"], runs["plain_celery"], "jobs_per_s")
    report["single_vs_plain_celery"] = vs_plain["median"]
    report["single_vs_plain_celery_spread"] = vs_plain
    cpu = {k: h.spread([r["cpu_ms_per_job"][k] for r in runs["single"]])["median"] for k in CPU_KEYS}
    report["per_job_cpu_ms"] = {**cpu, "targets": {"workers_beyond_model": TARGET_WORKER_BEYOND_MODEL_MS,
                                                   "client": TARGET_CLIENT_MS}}
    report["meets_target"] = {
        "ratio_vs_inprocess": min(report["ratio_single"], report["ratio_eight"]) >= TARGET,
        "worker_beyond_model": cpu["workers_beyond_model"] <= TARGET_WORKER_BEYOND_MODEL_MS,
        "client": cpu["client"] <= TARGET_CLIENT_MS,
        "vs_plain_celery": report["single_vs_plain_celery"] >= TARGET_VS_PLAIN_CELERY}
    return report


def plot(report: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = ["in-process limit", "pool, 1 sentence/job", "pool, 8 sentences/job"]
    vals = [report["inprocess_limit"]["texts_per_s"], report["single"]["texts_per_s"],
            report["eight"]["texts_per_s"]]
    fig, ax = plt.subplots(figsize=(6, 3.2))
    ax.bar(names, vals, color=["grey", "tab:blue", "tab:green"])
    for i, v in enumerate(vals):
        ax.text(i, v, f"{v:.0f}" + ("" if i == 0 else f"\n({v / vals[0]:.2f}x)"), ha="center", va="bottom")
    ax.set_ylabel("texts/s")
    ax.set_title(f"efficiency, {report['model']}, {report['machine']['cpus']} cores")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
