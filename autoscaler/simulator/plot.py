"""One PNG per trace: queue depth and workers over time, one panel per policy (Agg backend)."""

from __future__ import annotations

from pathlib import Path

from autoscaler.simulator.model import SimResult
from autoscaler.simulator.report import summarise


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
        ax2.set_ylim(0, top)
        ax2.set_ylabel("workers")
        ax.set_title(f"{r.policy}: {s.worker_seconds:.0f} worker-s, p95 wait {s.wait_p95_s:.2f}s, "
                     f"{s.over_slo} over SLO, {s.scale_events} scale events", fontsize=9, loc="left")
        h1, l1 = ax.get_legend_handles_labels()
        h2, l2 = ax2.get_legend_handles_labels()
        ax.legend(h1 + h2, l1 + l2, loc="upper right", fontsize=7)
    axes[-1, 0].set_xlabel("seconds")
    fig.suptitle(f"elastiq simulate: trace {results[0].trace}")
    fig.tight_layout()
    png = Path(png)
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=100)
    plt.close(fig)
    return png
