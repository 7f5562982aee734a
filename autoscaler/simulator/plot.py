"""PNGs (Agg backend): per trace, queue depth and workers over time, one panel per policy;
per set of traces, an overview of cost against p95 wait, one panel per trace."""

from __future__ import annotations

from pathlib import Path

from autoscaler.simulator.model import SimResult
from autoscaler.simulator.report import summarise

SMOOTH_S = 5.0


def _smoothed(t, values, window_s: float = SMOOTH_S):
    """Means over ``window_s`` blocks: the instantaneous demand flickers with every job."""
    if len(t) < 2:
        return t, values
    n = max(1, int(round(window_s / (t[1] - t[0]))))
    k = len(values) // n * n
    return t[:k:n], values[:k].reshape(-1, n).mean(axis=1)


def render(results: list[SimResult], png: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(results), 1, figsize=(11, 2.4 * len(results)), sharex=True, squeeze=False)
    top = max(int(r.workers.max()) for r in results) + 1
    for ax, r in zip(axes[:, 0], results):
        s = summarise(r)
        ax.fill_between(r.t, r.waiting, step="post", color="tab:blue", alpha=0.35, label="waiting jobs")
        ax.set_ylabel("waiting")
        ax2 = ax.twinx()
        ax2.step(r.t, r.workers, where="post", color="tab:green", linewidth=1.8, label="workers")
        ax2.step(r.t, r.ready, where="post", color="tab:olive", linewidth=1.0, linestyle="--", label="ready")
        if r.cpu_demand is not None and r.params.host_cpus and r.cpu_demand.any():
            t, cores = _smoothed(r.t, r.cpu_demand)
            ax2.plot(t, cores, color="tab:red", linewidth=0.8, alpha=0.7, label=f"cores wanted ({SMOOTH_S:.0f} s mean)")
            ax2.axhline(r.params.host_cpus, color="tab:red", linewidth=0.6, linestyle=":")
        ax2.set_ylim(0, top)
        ax2.set_ylabel("workers")
        ax.set_title(f"{r.policy}: {s.worker_seconds:.0f} worker-s, p95 wait {s.wait_p95_s:.2f}s, "
                     f"{s.over_slo} over SLO, {s.scale_events} scale events", fontsize=9, loc="left")
        h1, l1 = ax.get_legend_handles_labels()
        h2, l2 = ax2.get_legend_handles_labels()
        ax.legend(h1 + h2, l1 + l2, loc="upper right", fontsize=7)
    axes[-1, 0].set_xlabel("seconds")
    fig.suptitle(f"elastiq simulate: trace {results[0].trace}")
    return _save(fig, png, 72)


def overview(report: dict, png: Path) -> Path:
    """Worker-seconds against p95 wait, one panel per trace, one point per policy."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(report["traces"])
    cols = min(3, len(names))
    rows = (len(names) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.4 * rows), squeeze=False)
    for ax, name in zip(axes.flat, names):
        entry = report["traces"][name]
        met = entry.get("targets_met")
        for s in entry["summaries"]:
            main = s["policy"].startswith("elastiq")
            ax.scatter(s["worker_seconds"], s["wait_p95_s"], s=60 if main else 30,
                       color="tab:green" if main else "tab:grey", zorder=3)
            ax.annotate(s["policy"], (s["worker_seconds"], s["wait_p95_s"]), fontsize=7,
                        xytext=(3, 3), textcoords="offset points")
        ax.set_title(f"{name}" + ("" if met is None else (": targets met" if met else ": target missed")),
                     fontsize=9, loc="left")
        ax.set_xlabel("worker-seconds", fontsize=8)
        ax.set_ylabel("p95 wait s", fontsize=8)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    fig.suptitle(f"elastiq simulate: {report.get('set')} traces (lower-left is better)")
    return _save(fig, png, 100)


def fidelity(recording: dict, rows: list[dict], sim, comparison: dict, png: Path) -> Path:
    """A live run and its replay in the simulator: workers, queue and each job's wait over time."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    t0 = recording["t0"]
    t = np.array([r["t"] - t0 for r in rows])
    from autoscaler.simulator.compare import workers_alive

    live = workers_alive(rows)
    fig, (a1, a2, a3) = plt.subplots(3, 1, figsize=(11, 8), sharex=True)
    a1.step(t, live, where="post", color="tab:blue", label="live: workers (incl. draining)")
    a1.step(sim.t, sim.workers, where="post", color="tab:orange", linestyle="--", label="simulated: workers")
    a1.set_ylabel("workers")
    a1.legend(fontsize=8, loc="upper right")
    a2.plot(t, [r.get("waiting") or 0 for r in rows], color="tab:blue", label="live: waiting")
    a2.plot(sim.t, sim.waiting, color="tab:orange", linestyle="--", label="simulated: waiting")
    a2.set_ylabel("waiting jobs")
    a2.legend(fontsize=8, loc="upper right")
    jobs = [j for j in recording["jobs"] if "wait_s" in j]
    a3.scatter([j["submitted_s"] for j in jobs], [j["wait_s"] for j in jobs], s=2, color="tab:blue",
               label="live: job wait")
    a3.scatter(sim.arrivals, sim.waits, s=2, color="tab:orange", alpha=0.5, label="simulated: job wait")
    a3.set_ylabel("queue wait s")
    a3.set_xlabel("seconds from the first submit")
    a3.legend(fontsize=8, loc="upper right")
    rep, q, fid = comparison["replicas"], comparison["queue_wait"], comparison["fidelity"]
    fig.suptitle(f"live vs simulated, trace {recording['trace']}: worker-s {rep['worker_seconds_recorded']:.0f} vs "
                 f"{rep['worker_seconds_sim']:.0f} (x{fid['worker_seconds']['ratio']}), p95 wait "
                 f"{q.get('live_job_wait_p95_s')} vs {q['sim_job_wait_p95_s']} s "
                 f"(x{fid.get('p95_wait', {}).get('ratio')})", fontsize=10)
    return _save(fig, png, 100)


def _save(fig, png, dpi: int) -> Path:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    png = Path(png)
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=dpi)
    plt.close(fig)
    return png
