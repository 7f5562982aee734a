"""``elastiq bench efficiency``: pool throughput ÷ the in-process model limit, same cores.

Baseline: ``processes`` bare model processes × 1 torch thread running fixed batches of 32
(tokenise + forward + normalise), no queue — measured before *and* after the pool in the
same run and averaged, because the machine is noisy. Pool: the same number of workers ×
1 torch thread, saturated (every job submitted up front) by one client on the same
machine, client → Redis → workers → results. Reported for single-sentence jobs and for
8-sentence jobs. Target: ratio ≥ 0.90.

Per-job cost (single-sentence jobs): the CPU each process spent per job, from ``/proc``:
the client, redis-server, the workers, and the workers' CPU *beyond the model* (their
total minus what their batchers spent tokenising and in forward passes). Targets: workers
beyond the model ≤ 0.8 ms, client ≤ 0.4 ms. And the same single-sentence jobs through
plain Celery (benchmarks/plain_celery.py: one forward pass per job, the same number of
worker processes x 1 thread) in the same run: elastiq's jobs/s over plain Celery's.
"""

from __future__ import annotations

from benchmarks import harness as h

TARGET = 0.90
TARGET_WORKER_BEYOND_MODEL_MS = 0.8
TARGET_CLIENT_MS = 0.4
TARGET_VS_PLAIN_CELERY = 3.0


def run(*, smoke: bool = False, model: str = "minilm", workers: int = 2, slots: int = 32,
        jobs: int = 3000, seconds: float = 6.0) -> dict:
    if smoke:
        jobs, seconds = 240, 2.0
    texts = h.sentences(jobs)
    eight = [texts[i:i + 8] for i in range(0, jobs, 8)]
    report: dict = {"benchmark": "efficiency", "model": model, "machine": h.machine(),
                    "target_ratio": TARGET, "workers": workers, "slots": slots, "threads": 1}
    with h.stack() as st:
        h.stage(f"in-process limit: {workers} processes x 1 thread, batch 32, {seconds}s")
        before = h.inprocess_limit(model, texts, processes=workers, seconds=seconds)
        h.stage(f"pool: {workers} workers x {slots} slots x 1 thread")
        st.start_workers(model, workers, slots=slots, threads=1)
        with st.client() as client:
            h.run_jobs(client, model, [[t] for t in texts[: max(64, jobs // 10)]])   # warm-up
            h.stage(f"{jobs} single-sentence jobs")
            single = h.run_jobs(client, model, [[t] for t in texts], progress=not smoke, stack=st)
            h.stage(f"{len(eight)} eight-sentence jobs")
            multi = h.run_jobs(client, model, eight, progress=not smoke, stack=st)
        report["heartbeat_batching"] = {w: hb.get("batching") for w, hb in st.heartbeats().items()}
        st.stop_workers()
        n_plain = min(len(texts), 1500)
        h.stage(f"plain Celery: {workers} processes x 1, one forward pass per job, {n_plain} jobs")
        plain = h.plain_celery_jobs(st, model, [[t] for t in texts[:n_plain]], workers=workers)
        h.stage("in-process limit again")
        after = h.inprocess_limit(model, texts, processes=workers, seconds=seconds)
    limit = (before["texts_per_s"] + after["texts_per_s"]) / 2
    report["inprocess_limit"] = {"before": before, "after": after, "texts_per_s": round(limit, 2)}
    report["single"] = {**single, "ratio": round(single["texts_per_s"] / limit, 3)}
    report["eight"] = {**multi, "ratio": round(multi["texts_per_s"] / limit, 3)}
    report["ratio_single"] = report["single"]["ratio"]
    report["ratio_eight"] = report["eight"]["ratio"]
    report["plain_celery"] = plain
    report["single_vs_plain_celery"] = round(single["jobs_per_s"] / plain["jobs_per_s"], 2)
    cpu = single["cpu_ms_per_job"]
    report["per_job_cpu_ms"] = {"workers_beyond_model": cpu["workers_beyond_model"], "client": cpu["client"],
                                "targets": {"workers_beyond_model": TARGET_WORKER_BEYOND_MODEL_MS,
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
