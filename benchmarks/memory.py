"""``elastiq bench memory``: resident memory per worker, and in total for 1, 2 and 4 workers.

The model runs on the engine the registry selects (``engine`` in the report; onnx by
default, its graph exported before the pools start).

Each pool is started, warmed with a few hundred jobs (so inference buffers exist), then
measured from ``/proc``: RSS per worker (also in its heartbeat, ``rss_mb``) and PSS (RSS
with shared pages split between the processes that share them, so totals add up).
Ratio: total PSS for n workers ÷ n × one worker's PSS (1.0 = nothing shared).
"""

from __future__ import annotations

from benchmarks import harness as h
from benchmarks.engine import warm_engine


def _proc_mb(pid: int) -> dict:
    out = {}
    try:
        for line in open(f"/proc/{pid}/smaps_rollup"):
            key, _, rest = line.partition(":")
            if key in ("Rss", "Pss"):
                out[key.lower() + "_mb"] = round(int(rest.split()[0]) / 1024, 1)
    except OSError:
        pass
    return out


def run(*, smoke: bool = False, model: str = "minilm", counts: tuple[int, ...] = (1, 2, 4),
        jobs: int = 400) -> dict:
    if smoke:
        counts, jobs = (1, 2), 60
    report: dict = {"benchmark": "memory", "model": model, "machine": h.machine(), "pools": []}
    texts = h.mixed_texts(jobs)
    engines: list = []
    with h.stack() as st:
        report.update(warm_engine(model))      # the engine the registry selects; graph cached
        for n in counts:
            h.stage(f"{n} worker(s)")
            ids = st.start_workers(model, n, slots=16, threads=1)
            with st.client() as client:
                h.run_jobs(client, model, [[t] for t in texts])
            rows = [{"worker": w, **_proc_mb(st.workers[w].pid)} for w in ids]
            engines.append(h.pool_engine(st, model))
            report["pools"].append({
                "workers": n, "per_worker": rows,
                "rss_mb_per_worker": round(sum(r.get("rss_mb", 0) for r in rows) / n, 1),
                "total_rss_mb": round(sum(r.get("rss_mb", 0) for r in rows), 1),
                "total_pss_mb": round(sum(r.get("pss_mb", 0) for r in rows), 1)})
            st.stop_workers()
    one = report["pools"][0]["total_pss_mb"]
    for p in report["pools"]:
        p["pss_vs_n_times_one"] = round(p["total_pss_mb"] / (p["workers"] * one), 3) if one else None
    report["rss_mb_per_worker"] = report["pools"][0]["rss_mb_per_worker"]
    report["engine"] = h.one_engine(engines)
    return report


def plot(report: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ns = [p["workers"] for p in report["pools"]]
    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.plot(ns, [p["total_rss_mb"] for p in report["pools"]], "o-", label="total RSS")
    ax.plot(ns, [p["total_pss_mb"] for p in report["pools"]], "s-", label="total PSS")
    ax.set_xlabel("workers")
    ax.set_ylabel("MB")
    ax.set_xticks(ns)
    ax.set_title(f"worker memory, {report['model']}")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
